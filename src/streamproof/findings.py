"""A finding: one observation that a rule was broken (or, for INFO rules, noted)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from .rules import LEVELS, Level, rule

__all__ = ["Finding", "at_api_level", "excerpt"]

EXCERPT_CHARS = 240


def excerpt(text: str | bytes, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable excerpt: bytes decoded with replacement, control characters shown
    escaped (a hostile body must not drive the reader's terminal), cut with an ellipsis."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "replace")
    text = text[: limit * 4].translate(_ESCAPES)
    if len(text) > limit:
        return text[: limit - 1] + "\u2026"
    return text


# C0 and C1 control characters and DEL, as \xNN (tab and newline too: an excerpt is one line)
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule id with what was seen and where.

    ``event`` is the 0-based index of the offending SSE event in the stream (None when the
    finding is about the exchange as a whole, e.g. the HTTP status). ``level_as`` lowers the
    rule's level for this one finding where the spec excuses a known real-world edge (e.g.
    an Anthropic block left open by a ``max_tokens`` cut is a warning, not a failure).
    """

    rule: str
    message: str
    event: int | None = None
    excerpt: str = ""
    level_as: Level | None = None

    @property
    def level(self) -> Level:
        return self.level_as or rule(self.rule).level

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "level": self.level,
            "message": self.message,
            "event": self.event,
            "excerpt": self.excerpt,
        }

    def __str__(self) -> str:
        where = f" at event {self.event}" if self.event is not None else ""
        text = f"[{self.level}] {self.rule}{where}: {self.message}"
        return f"{text}\n    | {self.excerpt}" if self.excerpt else text


def at_api_level(findings: Iterable[Finding], api: str) -> list[Finding]:
    """The wire findings of one API's stream, each at its rule's level for that API (e.g. an
    id-only event breaks the openai SDK's decoder, not the anthropic SDK's)."""
    out = []
    for f in findings:
        weaker = rule(f.rule).level_for(api)
        if LEVELS.index(weaker) > LEVELS.index(f.level):
            f = replace(f, level_as=weaker)
        out.append(f)
    return out
