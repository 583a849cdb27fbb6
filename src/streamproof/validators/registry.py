"""Rules as small registered checks: one check per catalogue id, found by the id.

A *check* is the code of one rule. It is registered with :func:`check` under the rule's id and
says what it listens to:

* **stream checks** (``on=``) listen to the transitions of an API's stream model
  (``openai_model.py``, ``anthropic_model.py``; each lists its transitions): a hook is called
  as ``hook(stream, at, subject)`` — the model, the event it happened at (None at ``end``)
  and the transition's subject (a choice, a block, a value) — and flags with
  ``stream.flag(...)``. A check listening to several transitions is a class whose functions
  are named after them.
* **answer checks** (``on="answer"``) judge the HTTP answer as a whole (status, headers, the
  decoder's and the transport's observations, the SDK replay): ``hook(answer)``, see
  ``answers.py``.

A rule is *checked* (it passes when nothing was flagged) when its precondition held: ``when``
is that precondition as a predicate on the model at the end of the stream; without one, a rule
is checked when one of its hooks ran and did not return ``False`` (``False``: "nothing for me
here"). A hook that raises is a tool error, never the endpoint's finding (the model keeps it
in ``crashes``).

Adding a rule is one catalogue entry, one check function here-abouts, one fault in the
reference server and one row of the trips test (README, "Add a rule").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

from ..rules import catalogue

__all__ = ["ANSWER", "Check", "Plan", "check", "checks", "plan"]

ANSWER: Final = "answer"
# The modules that hold checks, imported once on first use (order: the catalogue's areas).
CHECK_MODULES: Final = (
    "answers",
    "openai_framing",
    "openai_choices",
    "openai_tools",
    "openai_usage",
    "anthropic_framing",
    "anthropic_blocks",
    "anthropic_stop",
    "responses_framing",
    "responses_items",
    "responses_final",
    "responses_resume",
)

Hook = Callable[..., Any]
_REGISTRY: dict[str, Check] = {}


@dataclass(frozen=True, slots=True)
class Check:
    """One rule's code: its hooks by transition name, and its precondition."""

    rule: str
    hooks: Mapping[str, Hook]
    when: Callable[[Any], object] | None
    where: str  # module.name, for tool errors and the registry test
    apis: tuple[str, ...] = ()  # the rule's APIs (from the catalogue)


def check(
    rule: str, on: str | tuple[str, ...] = (), when: Callable[[Any], object] | None = None
) -> Callable[[Any], Any]:
    """Register the decorated function (hooks ``on``) or class (its functions are the hooks,
    named after their transitions) as the check of ``rule``."""

    def register(obj: Any) -> Any:
        if rule not in catalogue():
            raise ValueError(f"check {obj.__qualname__}: {rule!r} is not in the catalogue")
        if isinstance(obj, type):
            hooks = {k: v for k, v in vars(obj).items() if callable(v) and not k.startswith("_")}
        else:
            hooks = dict.fromkeys((on,) if isinstance(on, str) else on, obj)
        if not hooks:
            raise ValueError(f"check of {rule} listens to nothing")
        where = f"{obj.__module__}.{obj.__qualname__}"
        if rule in _REGISTRY and _REGISTRY[rule].where != where:
            raise ValueError(f"{rule} has two checks: {_REGISTRY[rule].where} and {where}")
        _REGISTRY[rule] = Check(rule, hooks, when, where, catalogue()[rule].apis)
        return obj

    return register


@cache
def checks() -> dict[str, Check]:
    """Every registered check by rule id (the check modules are imported on first use)."""
    for name in CHECK_MODULES:
        importlib.import_module(f"{__package__}.{name}")
    return dict(_REGISTRY)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a stream model of one API calls: per transition, the (rule, hook) pairs, and
    the checks' preconditions. The empty plan runs the model with no rule attached."""

    on: Mapping[str, tuple[tuple[str, Hook], ...]]
    checks: tuple[Check, ...]


EMPTY_PLAN: Final = Plan({}, ())


@cache
def plan(api: str, transitions: frozenset[str]) -> Plan:
    """The stream checks of ``api``; a hook on a transition the model does not have is a bug
    of the check (caught here, at the first stream, not by a silent never-firing hook)."""
    on: dict[str, list[tuple[str, Hook]]] = {}
    mine = []
    for c in checks().values():
        if api not in c.apis or ANSWER in c.hooks:
            continue
        unknown = set(c.hooks) - transitions
        if unknown:
            raise ValueError(f"{c.where} listens to unknown {api} transition(s) {unknown}")
        mine.append(c)
        for name, hook in c.hooks.items():
            on.setdefault(name, []).append((c.rule, hook))
    return Plan({k: tuple(v) for k, v in on.items()}, tuple(mine))


@cache
def answer_checks(api: str) -> tuple[Check, ...]:
    """The answer checks that apply to ``api``."""
    return tuple(c for c in checks().values() if api in c.apis and ANSWER in c.hooks)
