"""The fault registry: every way the reference server can be told to be wrong, as data.

``FAULTS`` maps a name to its :class:`Fault` (the rules it trips, the scenario where it shows,
its effect). An API adds its faults by listing them in ``_ALL`` below.
"""

from __future__ import annotations

from typing import Final

from .anthropic_messages import ANTHROPIC_FAULTS
from .base import Fault, FaultSet
from .hostile import HOSTILE_FAULTS
from .openai_chat import OPENAI_FAULTS
from .wire import HUGE_EVENT_BYTES, WIRE_FAULTS

__all__ = ["FAULTS", "HUGE_EVENT_BYTES", "Fault", "FaultSet", "fault_table"]

_ALL: Final = (*WIRE_FAULTS, *HOSTILE_FAULTS, *OPENAI_FAULTS, *ANTHROPIC_FAULTS)
FAULTS: Final[dict[str, Fault]] = {f.name: f for f in _ALL}
if len(FAULTS) != len(_ALL):
    raise ValueError("two faults share a name")


def fault_table() -> list[dict[str, str]]:
    """One row per fault, for ``streamproof serve --list-faults``."""
    return [
        {
            "name": f.name,
            "api": f.api,
            "rules": ", ".join(f.rules),
            "scenario": f.scenario,
            "layer": "+".join(f.layers),
            "description": f.description,
        }
        for f in FAULTS.values()
    ]
