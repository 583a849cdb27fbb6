"""The fault registry: every way the reference server can be told to be wrong, as data.

``FAULTS`` maps a name to its :class:`Fault` (the rules it trips, the scenario where it shows,
its effect). An API adds its faults by listing them in ``_ALL`` below.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from .anthropic_messages import ANTHROPIC_FAULTS
from .base import Fault, FaultSet
from .hostile import HOSTILE_FAULTS
from .openai_chat import OPENAI_FAULTS
from .responses import RESPONSES_FAULTS
from .wire import HUGE_EVENT_BYTES, PARAMETRIC, WIRE_FAULTS

__all__ = ["FAULTS", "HUGE_EVENT_BYTES", "Fault", "FaultSet", "fault_table", "find_fault"]

_ALL: Final = (*WIRE_FAULTS, *HOSTILE_FAULTS, *OPENAI_FAULTS, *ANTHROPIC_FAULTS, *RESPONSES_FAULTS)
FAULTS: Final[dict[str, Fault]] = {f.name: f for f in _ALL}
if len(FAULTS) != len(_ALL):
    raise ValueError("two faults share a name")


def find_fault(name: str) -> Fault:
    """The fault of a name, or of ``name=value`` for a fault that takes a value
    (``drop-rate=0.2``); a KeyError or ValueError says why there is none."""
    if "=" in name:
        base, value = name.split("=", 1)
        if base not in PARAMETRIC:
            raise KeyError(name)
        return PARAMETRIC[base](value)
    return FAULTS[name]


def fault_table() -> list[dict[str, str]]:
    """One row per fault, for ``streamproof serve --list-faults`` (``name=P`` for a fault
    that takes a value)."""
    examples = [replace(make("1"), name=f"{name}=P") for name, make in PARAMETRIC.items()]
    return [
        {
            "name": f.name,
            "api": f.api,
            "rules": ", ".join(f.rules),
            "scenario": f.scenario,
            "layer": "+".join(f.layers),
            "description": f.description,
        }
        for f in (*FAULTS.values(), *examples)
    ]
