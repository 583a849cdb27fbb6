"""A JSON value that fits a JSON Schema: tool-call arguments and ``json_schema`` replies.

Deterministic, like every answer of the reference server: the same schema gives the same
value. Covers what tool and response schemas use in practice — objects (every declared
property, nested), arrays within ``minItems``/``maxItems``, ``enum``/``const``, strings within
their length bounds, numbers within their bounds, nullable type lists, ``anyOf``/``oneOf``
(the first branch), ``allOf`` (merged objects) and local ``$ref`` (``#/$defs/...``,
``#/definitions/...``). Keywords outside that (``pattern``, ``format``) are not honoured: the
value is then a plain string, which a schema with a pattern may refuse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["instance_for"]

CITIES: Final = ("Paris", "Tokyo", "Lima", "Oslo")
_DEPTH: Final = 32  # a self-referencing schema stops here (an empty object)
_STRING: Final = "example"


def instance_for(schema: Any, call: int = 0) -> Any:
    """A value valid against ``schema``; a property named ``city`` gets a city (Paris for the
    first call, Tokyo for the second...), so that parallel calls differ."""
    root = schema if isinstance(schema, Mapping) else {}
    return _value(root, root, call, "", _DEPTH)


def _value(schema: Any, root: Mapping[str, Any], call: int, name: str, depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth <= 0:
        return {}
    if isinstance(ref := schema.get("$ref"), str):
        return _value(_resolve(ref, root), root, call, name, depth - 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(enum := schema.get("enum"), list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        if isinstance(branches := schema.get(key), list) and branches:
            return _value(branches[0], root, call, name, depth - 1)
    if isinstance(parts := schema.get("allOf"), list) and parts:
        merged: dict[str, Any] = {}
        for part in parts:
            value = _value(part, root, call, name, depth - 1)
            if not isinstance(value, dict):
                return value
            merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return {}
        return {key: _value(sub, root, call, key, depth - 1) for key, sub in props.items()}
    if kind == "array":
        low = _bound(schema.get("minItems"), 0)
        high = _bound(schema.get("maxItems"), max(low, 1))
        count = min(max(low, 1), high)
        return [_value(schema.get("items"), root, call, name, depth - 1) for _ in range(count)]
    if kind == "string":
        return _string(schema, CITIES[call % len(CITIES)] if name == "city" else _STRING)
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return True
    return None


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    """A local reference (``#/...``); anything else resolves to an empty schema."""
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in filter(None, ref[1:].split("/")):
        if not isinstance(node, Mapping):
            return {}
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node


def _bound(value: Any, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )


def _string(schema: Mapping[str, Any], text: str) -> str:
    low = _bound(schema.get("minLength"), 0)
    high = _bound(schema.get("maxLength"), max(low, len(text)))
    if len(text) < low:
        text += "x" * (low - len(text))
    return text[:high]


def _number(schema: Mapping[str, Any], kind: str) -> int | float:
    value: int | float = 1 if kind == "integer" else 1.5
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if isinstance(low, int | float) and not isinstance(low, bool) and value <= low:
        value = low if "minimum" in schema else low + 1
        value = math.ceil(value) if kind == "integer" else value
    if isinstance(high, int | float) and not isinstance(high, bool) and value >= high:
        value = high if "maximum" in schema else high - 1
        value = math.floor(value) if kind == "integer" else value
    return int(value) if kind == "integer" else value
