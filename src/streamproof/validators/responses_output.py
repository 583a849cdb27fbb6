"""The Responses output as plain data, one shape for both sides of the SDK comparison: an
item as the stream built it (``streamed_item``: what the deltas joined) and an item of a final
response (``normalized_item``: as the SDK returns it). Only what a client reads is kept:
ids, types, texts, arguments; ``encrypted_content``, logprobs and statuses are left out (they
legitimately differ between the stream and the final response)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .responses_model import Item

__all__ = ["normalized_item", "streamed_item"]


def streamed_item(item: Item) -> dict[str, Any]:
    """One item as its events built it (normalised as ``normalized_item``)."""
    added = item.added
    out: dict[str, Any] = {"type": item.kind, "id": item.id}
    if item.kind == "message":
        out["role"] = added.get("role")
        content = []
        for _, part in sorted(item.parts.items()):
            field = "refusal" if part.kind == "refusal" else "text"
            content.append({"type": part.kind, field: part.text})
        out["content"] = content
    elif item.kind in ("function_call", "custom_tool_call"):
        family = "input" if item.kind == "custom_tool_call" else "arguments"
        out["call_id"] = added.get("call_id")
        out["name"] = added.get("name")
        out[family] = item.joined(family) or ""
    elif item.kind == "reasoning":
        out["summary"] = [p.text for _, p in sorted(item.summary.items())]
        out["content"] = [p.text for _, p in sorted(item.parts.items())]
    return out


def normalized_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An output item of a final response in the shape ``message()`` gives its items."""
    kind = item.get("type")
    out: dict[str, Any] = {"type": kind, "id": item.get("id")}
    if kind == "message":
        out["role"] = item.get("role")
        content = []
        for part in item.get("content") or []:
            field = "refusal" if part.get("type") == "refusal" else "text"
            content.append({"type": part.get("type"), field: part.get(field)})
        out["content"] = content
    elif kind in ("function_call", "custom_tool_call"):
        family = "input" if kind == "custom_tool_call" else "arguments"
        out["call_id"] = item.get("call_id")
        out["name"] = item.get("name")
        out[family] = item.get(family)
    elif kind == "reasoning":
        out["summary"] = [p.get("text") for p in item.get("summary") or []]
        out["content"] = [p.get("text") for p in item.get("content") or []]
    return out
