"""Where prompts come from: built-in short or long prompts, synthetic prompts of N words, a
JSONL file, or a ShareGPT-format JSON file. Each source is read once per process; ``pick``
walks it round-robin from a per-user offset, so runs are repeatable."""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path
from typing import Any, Final

__all__ = ["MAX_PROMPTS", "PromptSource", "load_prompts"]

MAX_PROMPTS: Final = 100_000  # a ShareGPT dump can hold far more; the first ones are enough
SHORT: Final = (
    "Tell me a short story about a lighthouse keeper.",
    "Write a story about the sea at dusk.",
    "Describe a small boat finding its way home in the dark.",
    "Tell a calm bedtime story about a lighthouse.",
)
_TEXT: Final = (
    "the lighthouse keeper climbed spiral stairs at dusk as she had done every evening for "
    "thirty years below her sea rolled grey and patient against rocks lit lamp wound clockwork "
    "watched beam sweep across water once twice thousand times far out small boat turned toward "
    "light found its way home harbour wind salt rope lantern gull tide shore night star"
)
_WORDS: Final = tuple(_TEXT.split())


def _synthetic(words: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "Continue this story: " + " ".join(rng.choice(_WORDS) for _ in range(max(1, words)))
        for _ in range(count)
    ]


def _from_messages(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
    return None


def _jsonl(path: Path) -> list[str]:
    out: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
            text = item if isinstance(item, str) else None
            if isinstance(item, dict):
                text = (
                    item.get("prompt") or item.get("text") or _from_messages(item.get("messages"))
                )
            if isinstance(text, str) and text:
                out.append(text)
            if len(out) >= MAX_PROMPTS:
                break
    return out


def _sharegpt(path: Path) -> list[str]:
    """The first human turn of each conversation (``from: human`` / ``role: user``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out: list[str] = []
    for item in data if isinstance(data, list) else []:
        turns = item.get("conversations") or item.get("conversation") or []
        for turn in turns if isinstance(turns, list) else []:
            if not isinstance(turn, dict):
                continue
            who = turn.get("from") or turn.get("role")
            text = turn.get("value") or turn.get("content")
            if who in ("human", "user") and isinstance(text, str) and text:
                out.append(text)
                break
        if len(out) >= MAX_PROMPTS:
            break
    return out


@cache
def load_prompts(kind: str, words: int = 200, file: str = "") -> tuple[str, ...]:
    """All prompts of a source (cached per process)."""
    if kind == "short":
        prompts: list[str] = list(SHORT)
    elif kind == "long":
        prompts = _synthetic(2000, 8, seed=2)
    elif kind == "synthetic":
        prompts = _synthetic(words, 64, seed=1)
    elif kind in ("jsonl", "sharegpt"):
        if not file:
            raise ValueError(f"--prompts {kind} needs --prompt-file")
        path = Path(file)
        prompts = _jsonl(path) if kind == "jsonl" else _sharegpt(path)
    else:
        raise ValueError(f"unknown prompt source {kind!r}")
    if not prompts:
        raise ValueError(f"the {kind} prompt source {file} holds no prompt")
    return tuple(prompts)


class PromptSource:
    """Round-robin over a source's prompts, starting at ``offset`` (one per user)."""

    __slots__ = ("_i", "_prompts")

    def __init__(self, prompts: tuple[str, ...], offset: int = 0) -> None:
        self._prompts = prompts
        self._i = offset % len(prompts)

    def pick(self) -> str:
        prompt = self._prompts[self._i]
        self._i = (self._i + 1) % len(self._prompts)
        return prompt
