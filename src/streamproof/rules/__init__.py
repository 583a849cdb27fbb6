"""The rule catalogue, loaded once from ``catalogue.toml``.

Rules are data so that reports, waivers and the ``rules`` command read the same source as
the validators; code refers to a rule only by its stable id.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

__all__ = ["LEVELS", "Level", "Rule", "catalogue", "rule"]

Level = Literal["MUST", "SHOULD", "INFO"]
LEVELS: tuple[Level, ...] = ("MUST", "SHOULD", "INFO")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    level: Level
    group: str
    apis: tuple[str, ...]
    title: str
    source: str

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "level": self.level,
            "group": self.group,
            "apis": list(self.apis),
            "title": self.title,
            "source": self.source,
        }


@cache
def catalogue() -> dict[str, Rule]:
    """All rules by id, in catalogue order."""
    raw = tomllib.loads(resources.files(__package__).joinpath("catalogue.toml").read_text("utf-8"))
    rules: dict[str, Rule] = {}
    for entry in raw["rule"]:
        if entry["level"] not in LEVELS:
            raise ValueError(f"rule {entry['id']}: unknown level {entry['level']!r}")
        if entry["id"] in rules:
            raise ValueError(f"rule {entry['id']} is listed twice")
        rules[entry["id"]] = Rule(
            id=entry["id"],
            level=entry["level"],
            group=entry["group"],
            apis=tuple(entry["apis"]),
            title=entry["title"],
            source=entry["source"],
        )
    return rules


def rule(rule_id: str) -> Rule:
    """The rule with this id; a KeyError names an id that is not in the catalogue."""
    return catalogue()[rule_id]
