"""A finding: one observation that a rule was broken (or, for INFO rules, noted)."""

from __future__ import annotations

from dataclasses import dataclass

from .rules import Level, rule

__all__ = ["Finding", "excerpt"]

EXCERPT_CHARS = 240


def excerpt(text: str | bytes, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable excerpt: bytes decoded with replacement, cut with an ellipsis."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", "replace")
    if len(text) > limit:
        return text[: limit - 1] + "\u2026"
    return text


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
