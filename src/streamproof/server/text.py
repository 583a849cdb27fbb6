"""The deterministic content every endpoint generates: words as tokens, fixed texts.

Same request, same answer, so tests can predict every token. A "token" is a word with its
leading space (``["Hello", " —", " I", ...]``); prompt tokens are the words of the messages.
The texts hold one non-ASCII character (an em dash) so that clients' UTF-8 handling is
exercised by every clean stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

__all__ = [
    "answer_text",
    "cut_at_stop",
    "message_text",
    "named_tool",
    "prompt_tokens",
    "question",
    "split_pieces",
    "tokens_of",
]

STORY: Final = (
    "The lighthouse keeper climbed the spiral stairs at dusk, as she had done every evening "
    "for thirty years. Below her the sea rolled grey and patient against the rocks. She lit "
    "the lamp, wound the clockwork and watched the beam sweep across the water — once, "
    "twice, a thousand times. Far out, a small boat turned toward the light and found its "
    "way home."
)
GREETING: Final = "Hello — I am the streamproof reference server, and this is one short sentence."
_COUNT: Final = re.compile(r"from\s+(\d+)\s+to\s+(\d+)")
_MAX_COUNT: Final = 1000


def message_text(content: Any) -> str:
    """The text of a message ``content``: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def question(messages: Iterable[Mapping[str, Any]]) -> str:
    """The text of the last user message that has text: what a generated answer answers
    (after a tool result, the question that led to the tool call)."""
    texts = [message_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return next((t for t in reversed(texts) if t), "")


def prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    return sum(len(message_text(m.get("content")).split()) for m in messages)


def answer_text(prompt: str, choice: int = 0) -> str:
    """The answer to ``prompt``: counting when asked to count ("from A to B", else 1..20),
    a greeting when greeted, otherwise a short story. Choice ``k > 0`` is marked as such."""
    lowered = prompt.lower()
    if "count" in lowered:
        match = _COUNT.search(lowered)
        first, last = (int(match[1]), int(match[2])) if match else (1, 20)
        text = " ".join(str(n) for n in range(first, min(last, first + _MAX_COUNT) + 1))
    elif "hello" in lowered:
        text = GREETING
    else:
        text = STORY
    return text if choice == 0 else f"Choice {choice + 1}: {text}"


def tokens_of(text: str) -> list[str]:
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


def cut_at_stop(tokens: list[str], stops: Sequence[str]) -> tuple[list[str], str | None]:
    """The tokens before the earliest stop sequence (the match itself is not sent), and the
    sequence that matched (None: none did; on a tie the first listed). A token the match
    starts in is cut to its part before the match."""
    text = "".join(tokens)
    hits = [(i, s) for s in stops if s and (i := text.find(s)) >= 0]
    if not hits:
        return tokens, None
    end, matched = min(hits, key=lambda hit: hit[0])
    kept: list[str] = []
    size = 0
    for token in tokens:
        if size + len(token) > end:
            if end > size:
                kept.append(token[: end - size])
            break
        kept.append(token)
        size += len(token)
    return kept, matched


def named_tool(names: Sequence[str], prompt: str) -> str:
    """The tool a prompt asks for: the first whose name (or its name with spaces for
    underscores) the prompt contains, ignoring case; else the first tool."""
    lowered = prompt.lower()
    for name in names:
        if name.lower() in lowered or name.lower().replace("_", " ") in lowered:
            return name
    return names[0]


def split_pieces(text: str, size: int) -> list[str]:
    """``text`` in pieces of ``size`` characters (tool arguments stream this way)."""
    return [text[i : i + size] for i in range(0, len(text), size)]
