"""The rule catalogue, loaded once from ``catalogue.toml``.

Rules are data so that reports, waivers and the ``rules`` command read the same source as
the validators; code refers to a rule only by its stable id. The catalogue's header says what
each level means; every MUST rule names what breaks (``breaks``), starting with who.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

__all__ = ["BREAKS_KINDS", "LEVELS", "Level", "Rule", "catalogue", "rule"]

Level = Literal["MUST", "SHOULD", "INFO"]
LEVELS: tuple[Level, ...] = ("MUST", "SHOULD", "INFO")
# Who or what breaks when a MUST rule is broken (the prefix of ``breaks``, before the colon).
BREAKS_KINDS = ("openai SDK", "anthropic SDK", "SDKs", "framing", "request", "transport", "bound")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    level: Level
    group: str
    apis: tuple[str, ...]
    title: str
    source: str
    seen_in: tuple[str, ...]  # the scenarios that can observe it: a kind or scenario names
    breaks: str = ""  # MUST rules: "<kind>: what breaks"
    api_levels: dict[str, Level] = field(default_factory=dict)  # a weaker level for one API

    @property
    def breaks_kind(self) -> str:
        return self.breaks.split(":", 1)[0] if self.breaks else ""

    def level_for(self, api: str) -> Level:
        """The rule's level for one API (where the other API's SDK copes with the break)."""
        return self.api_levels.get(api, self.level)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "level": self.level,
            "group": self.group,
            "apis": list(self.apis),
            "seen_in": list(self.seen_in),
            "title": self.title,
            "source": self.source,
            "breaks": self.breaks or None,
        }
        if self.api_levels:
            out["api_levels"] = dict(self.api_levels)
        return out


def _check(entry: dict) -> None:
    rid = entry["id"]
    if entry["level"] not in LEVELS:
        raise ValueError(f"rule {rid}: unknown level {entry['level']!r}")
    breaks = entry.get("breaks", "")
    if entry["level"] == "MUST":
        if breaks.split(":", 1)[0] not in BREAKS_KINDS or ":" not in breaks:
            raise ValueError(
                f"rule {rid}: a MUST rule says what breaks ({', '.join(BREAKS_KINDS)})"
            )
    elif breaks:
        raise ValueError(f"rule {rid}: only MUST rules have breaks")
    if not entry.get("seen_in"):
        raise ValueError(f"rule {rid}: seen_in names the scenarios that can observe it")
    for api, level in entry.get("api_levels", {}).items():
        if api not in entry["apis"] or level not in LEVELS:
            raise ValueError(f"rule {rid}: bad api_levels entry {api} = {level!r}")


@cache
def catalogue() -> dict[str, Rule]:
    """All rules by id, in catalogue order."""
    raw = tomllib.loads(resources.files(__package__).joinpath("catalogue.toml").read_text("utf-8"))
    rules: dict[str, Rule] = {}
    for entry in raw["rule"]:
        _check(entry)
        if entry["id"] in rules:
            raise ValueError(f"rule {entry['id']} is listed twice")
        rules[entry["id"]] = Rule(
            id=entry["id"],
            level=entry["level"],
            group=entry["group"],
            apis=tuple(entry["apis"]),
            title=entry["title"],
            source=entry["source"],
            seen_in=tuple(entry["seen_in"]),
            breaks=entry.get("breaks", ""),
            api_levels=dict(entry.get("api_levels", {})),
        )
    return rules


def rule(rule_id: str) -> Rule:
    """The rule with this id; a KeyError names an id that is not in the catalogue."""
    return catalogue()[rule_id]
