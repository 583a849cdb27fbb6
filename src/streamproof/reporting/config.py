"""Which rules a run checks, and the known deviations it waives: ``streamproof.toml`` or
``[tool.streamproof]`` in ``pyproject.toml``.

.. code-block:: toml

    # streamproof.toml (in pyproject.toml: the same keys under [tool.streamproof])
    select = ["openai", "http", "sse.*"]       # only these rules (ids, groups, glob patterns)
    ignore = ["openai.tool-id-length"]          # never these

    [waivers]                                   # rule id = why it is a known deviation
    "openai.usage-unrequested" = "the gateway always appends usage (GW-123)"

A token in ``select``/``ignore`` is a rule id, a rule group (``http``, ``tools``, ...), an API
(``openai``, ``anthropic``: its own rules) or a glob over ids (``openai.usage-*``); a token
that matches no rule is an error, so a typo never silently selects nothing. A waived rule that
fails or warns is reported as ``waived`` with its reason in every format and does not fail
the verdict; it is never reported as passed. A waiver whose rule passes is reported as
``stale`` so that it can be removed.

The file is ``--config PATH`` (``STREAMPROOF_CONFIG``), else ``streamproof.toml`` in the
current directory, else ``pyproject.toml`` there when it has a ``[tool.streamproof]`` table.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rules import Rule, catalogue

__all__ = ["ConfigError", "RunConfig", "load_config", "match_rules", "selected_rules"]

_KEYS = {"select", "ignore", "waivers"}


class ConfigError(ValueError):
    """The configuration names a rule that does not exist or has the wrong shape."""


@dataclass(frozen=True)
class RunConfig:
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    waivers: Mapping[str, str] = field(default_factory=dict)
    path: str | None = None

    def with_overrides(
        self, select: Iterable[str] | None = None, ignore: Iterable[str] | None = None
    ) -> RunConfig:
        """The command line's ``--select`` replaces the file's; ``--ignore`` adds to it."""
        return RunConfig(
            select=tuple(select) if select else self.select,
            ignore=self.ignore + tuple(t for t in ignore or () if t not in self.ignore),
            waivers=self.waivers,
            path=self.path,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "select": list(self.select),
            "ignore": list(self.ignore),
            "waivers": dict(self.waivers),
        }


def split_tokens(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b,c"]`` → ``("a", "b", "c")``."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    return tuple(t.strip() for v in values for t in v.split(",") if t.strip())


def _matches(rule: Rule, token: str) -> bool:
    return (
        token == rule.id
        or token == rule.group
        or (token in ("openai", "anthropic", "responses") and rule.id.startswith(token + "."))
        or (any(c in token for c in "*?[") and fnmatch.fnmatchcase(rule.id, token))
    )


def match_rules(tokens: Iterable[str], what: str = "select") -> set[str]:
    """The ids of every rule some token matches; a token that matches none is an error."""
    out: set[str] = set()
    for token in tokens:
        found = {r.id for r in catalogue().values() if _matches(r, token)}
        if not found:
            groups = sorted({r.group for r in catalogue().values()})
            raise ConfigError(
                f"{what}: {token!r} is no rule id, group ({', '.join(groups)}), API or pattern "
                "matching a rule (see `streamproof rules`)"
            )
        out |= found
    return out


def selected_rules(config: RunConfig) -> set[str]:
    """The rule ids a run checks: ``select`` (default every rule) minus ``ignore``."""
    chosen = match_rules(config.select, "select") if config.select else set(catalogue())
    return chosen - match_rules(config.ignore, "ignore")


def _table(path: Path) -> dict[str, Any] | None:
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if path.name == "pyproject.toml":
        return raw.get("tool", {}).get("streamproof")
    return raw


def _parse(table: Mapping[str, Any], where: str) -> RunConfig:
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    lists = {}
    for key in ("select", "ignore"):
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key} must be a list of strings")
        lists[key] = split_tokens(value)
        match_rules(lists[key], f"{where}: {key}")
    waivers = table.get("waivers", {})
    if not isinstance(waivers, dict):
        raise ConfigError(f'{where}: [waivers] must be a table of rule id = "reason"')
    for rule_id, reason in waivers.items():
        if rule_id not in catalogue():
            raise ConfigError(f"{where}: waiver for unknown rule {rule_id!r}")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{where}: the waiver of {rule_id} needs a reason (a string)")
    return RunConfig(
        select=lists["select"],
        ignore=lists["ignore"],
        waivers={k: v.strip() for k, v in waivers.items()},
        path=where,
    )


def load_config(path: str | Path | None = None, cwd: Path | None = None) -> RunConfig:
    """The run configuration (see the module docstring for where it is looked for)."""
    if path:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"--config: no such file: {file}")
        table = _table(file)
        if table is None:
            raise ConfigError(f"{file}: no [tool.streamproof] table")
        return _parse(table, str(file))
    here = cwd or Path.cwd()
    for name in ("streamproof.toml", "pyproject.toml"):
        file = here / name
        if file.is_file():
            table = _table(file)
            if table is not None:
                return _parse(table, str(file))
    return RunConfig()
