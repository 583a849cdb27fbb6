"""The JSON Schemas in ``schemas/``, compiled once, checked fast, explained in detail.

The hot path asks ``is_valid`` of jsonschema-rs (about 100x the pure-Python validator's speed
on a chunk); only an instance that failed goes through ``jsonschema`` to produce the readable
error (path, expected vs found). Both read the same schema files.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs

__all__ = ["Schema", "schema", "schema_dir"]


def schema_dir() -> Path:
    """``schemas/`` of a source checkout, or the copy packaged into the wheel."""
    packaged = Path(str(resources.files("streamproof"))) / "_schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "schemas"


class Schema:
    """One schema: ``is_valid`` for the hot path, ``explain`` for the finding's message."""

    __slots__ = ("_detail", "is_valid", "name", "raw")

    def __init__(self, name: str, raw: dict[str, Any]) -> None:
        self.name = name
        self.raw = raw
        self.is_valid = jsonschema_rs.Draft202012Validator(raw).is_valid
        self._detail = jsonschema.Draft202012Validator(raw)

    def explain(self, instance: Any) -> str:
        """The most relevant error as one line: where, what was expected, what was found."""
        error = jsonschema.exceptions.best_match(self._detail.iter_errors(instance))
        if error is None:
            return ""
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        found = json.dumps(error.instance, default=str)
        if len(found) > 80:
            found = found[:79] + "\u2026"
        what = error.message if len(error.message) < 160 else f"fails {error.validator!r}"
        return f"{where}: {what} (found {found})"


@cache
def schema(api: str, name: str) -> Schema:
    """``schemas/{api}/{name}.json`` compiled."""
    path = schema_dir() / api / f"{name}.json"
    return Schema(f"{api}/{name}", json.loads(path.read_text("utf-8")))
