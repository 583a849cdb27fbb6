"""Anthropic Messages checks of the message_start and the content blocks: the start's shape,
block indices, one open block at a time, every block stopped, the block starts' shape, deltas
that fit their block, and the tool input. Each function or class is the one check of its rule
(``registry.py``) and listens to the transitions of ``anthropic_model.py``.

Problems are told once per block (a block with a thousand misfit deltas is one finding with
its count); the block rules are checked when the stream had a block.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..findings import excerpt
from ..schemas import schema
from ..sse import Event
from .anthropic_model import (
    ERRORED,
    FITS,
    TAIL,
    TOOL_KINDS,
    AnthropicMessagesModel,
    Block,
    Delta,
)
from .base import event_json, short
from .registry import check

M = AnthropicMessagesModel


def _had_blocks(s: M) -> bool:
    return bool(s.blocks)


def _explain(name: str, at: Event) -> str:
    """Why the event's payload fails ``schemas/anthropic/{name}.json``."""
    return f"{name}: {schema('anthropic', name).explain(event_json(at))}"


@check("anthropic.start-shape", on="message_start", when=lambda s: s.started)
def start_shape(s: M, at: Event, obj: dict[str, Any]) -> None:
    if not schema("anthropic", "message_start").is_valid(obj):
        s.flag("anthropic.start-shape", None, at, lambda: _explain("message_start", at))


@check("anthropic.block-index", on="block_start", when=_had_blocks)
def block_index(s: M, at: Event, block: Block) -> None:
    index = block.index
    expected = block.position
    if type(index) is not int or index != expected:
        s.flag(
            "anthropic.block-index",
            expected,
            at,
            f"content_block_start has index {index!r}, expected {expected} (indices are "
            "0, 1, 2 ... in order; the SDK appends blocks and looks deltas up by index)",
        )


def _not_open(s: M, at: Event, what: str, block: Block) -> None:
    """A delta or stop of ``block``, which is not the open one."""
    current = s.open
    if block.late and s.phase == TAIL:
        return  # already told as block-closed / block-nesting
    if current is None:
        s.flag(
            "anthropic.block-nesting",
            (what, block.position),
            at,
            f"{what} for {block.describe()} after its content_block_stop",
        )
    else:
        s.flag(
            "anthropic.block-nesting",
            (what, block.position, current.position),
            at,
            f"{what} for {block.describe()} while {current.describe()} is open",
        )


@check("anthropic.block-nesting", when=_had_blocks)
class BlockNesting:
    """One block is open at a time, and deltas and stops name it."""

    def block_start(s: M, at: Event, block: Block) -> None:
        current = s.open
        if current is not None:
            s.flag(
                "anthropic.block-nesting",
                ("start", block.position),
                at,
                f"content_block_start of block {block.index!r} while {current.describe()} is "
                "still open",
            )

    def unknown_block(s: M, at: Event, index: Any) -> None:
        what = event_json(at)["type"]
        if type(index) is not int:
            s.flag(
                "anthropic.block-nesting",
                (what, short(index)),
                at,
                f"{what} without an integer index ({index!r})",
            )
        else:
            s.flag(
                "anthropic.block-nesting",
                (what, index),
                at,
                f"{what} names block {index}, which was never started",
            )

    def delta(s: M, at: Event, d: Delta) -> None:
        if d.block is not s.open:
            _not_open(s, at, "content_block_delta", d.block)

    def block_stop(s: M, at: Event, block: Block) -> None:
        if block is not s.open:
            _not_open(s, at, "content_block_stop", block)


@check("anthropic.block-closed")
class BlockClosed:
    """Every started block is stopped before message_delta. The real API skips the stop of a
    tool block cut mid-input by max_tokens: then a warning. Checked at a message_delta after
    a block, or at a message_stop that finds a block open."""

    def message_delta(s: M, at: Event, obj: dict[str, Any]) -> bool:
        if not s.blocks:
            return False
        current = s.open
        if current is not None:
            text = f"{current.describe()} has no content_block_stop before message_delta"
            if s.stop_reason == "max_tokens":
                s.flag(
                    "anthropic.block-closed",
                    current.position,
                    at,
                    text + " (stop_reason max_tokens: a known edge of the real API)",
                    level_as="SHOULD",
                )
            else:
                s.flag("anthropic.block-closed", current.position, at, text)
        return True

    def message_stop(s: M, at: Event, obj: dict[str, Any]) -> bool:
        current = s.open
        if current is None:
            return False
        s.flag(
            "anthropic.block-closed",
            current.position,
            at,
            f"{current.describe()} has no content_block_stop before message_stop",
        )
        return True


@check("anthropic.block-start-shape", on="block_start", when=_had_blocks)
def block_start_shape(s: M, at: Event, block: Block) -> None:
    if not schema("anthropic", "content_block_start").is_valid(event_json(at)):
        s.flag(
            "anthropic.block-start-shape",
            block.position,
            at,
            lambda: _explain("content_block_start", at),
        )


@check("anthropic.delta-type", on="delta", when=_had_blocks)
def delta_type(s: M, at: Event, d: Delta) -> None:
    block, fit, rule = d.block, d.fit, "anthropic.delta-type"
    key = (block.position, fit, d.type if type(d.type) is str else None)
    if fit == "untyped":
        s.flag(rule, key, at, f"{block.describe()}: the delta has no string type")
    elif fit == "unjudged":
        if block.kind is not None and block.kind.endswith("_tool_result"):
            s.flag(
                rule,
                key,
                at,
                f"{d.type} in {block.describe()}: server tool results arrive whole in "
                "content_block_start",
            )
    elif fit == "misfit":
        allowed = " or ".join(sorted(FITS.get(block.kind or "", ()))) or "no delta at all"
        s.flag(rule, key, at, f"{d.type} in {block.describe()}, which takes {allowed}")
    elif fit == "malformed":
        s.flag(rule, key, at, lambda: _explain("content_block_delta", at))
    elif fit == "ok":
        if d.type == "signature_delta" and block.signatures == 2:
            s.flag(
                rule,
                (block.position, "signatures"),
                at,
                f"a second signature_delta for {block.describe()}: the SDK keeps only the last "
                "one, so a signature sent in pieces is lost",
            )
        elif d.type == "thinking_delta" and block.signatures:
            s.flag(
                rule,
                (block.position, "thinking after signature"),
                at,
                f"a thinking_delta after the signature_delta of {block.describe()}",
            )


@check("anthropic.tool-input-json")
class ToolInputJson:
    """The joined ``partial_json`` of a tool block parses as a JSON object. Judged when the
    block ends (not when the message was cut at its size bound: the input is not whole) and
    told once the stop reason is known, so that ``max_tokens`` excuses a cut input; with no
    stop reason at all (the stream ended early by itself) a broken input stands."""

    def block_end(s: M, at: Event, block: Block) -> bool:
        if block.kind not in TOOL_KINDS or s.message_cut:
            return False
        joined = "".join(block.parts)
        if not joined:
            return True  # a tool without arguments: input stays {}
        try:
            value = orjson.loads(joined)
        except orjson.JSONDecodeError:
            s.held_tool_input.append(
                (
                    block,
                    f"the joined partial_json of {block.describe()} is not JSON: "
                    f"{excerpt(joined, 120)!r}",
                    at,
                )
            )
            return True
        if type(value) is not dict:
            s.held_tool_input.append(
                (
                    block,
                    f"the joined partial_json of {block.describe()} is a JSON "
                    f"{type(value).__name__}, not an object",
                    at,
                )
            )
        return True

    def conclude(s: M, at: Event | None, _: None) -> bool:
        if s.stop_reason != "max_tokens":  # the one excuse for unparsable tool input
            _tell_held(s)
        s.held_tool_input.clear()
        return False

    def end(s: M, at: None, _: None) -> bool:
        if not s.truncated and s.phase != ERRORED and not s.concluded:
            _tell_held(s)
        return False


def _tell_held(s: M) -> None:
    for block, text, at in s.held_tool_input:
        s.flag("anthropic.tool-input-json", block.position, at, text)
