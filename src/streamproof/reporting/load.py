"""Reading what a load run left (``<report-dir>/load/``) for the reports, tolerantly.

``summary.json`` is required; ``requests.jsonl`` (one record per request) and
``tokens_per_s.json`` (output tokens per wall-clock second) are used when present. Unknown or
missing fields are skipped, never an error: the load run's files may come from another
version of streamproof.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..load.metric_defs import LATENCIES, by_key
from ..load.metrics import request_metrics

__all__ = [
    "LoadData",
    "find_load_dir",
    "load_section",
    "read_load",
    "same_target",
    "violations_of",
]

MAX_RECORDS = 200_000  # enough for any chart; a bigger file is sampled by its first lines


@dataclass
class LoadData:
    """A load run's summary and, when present, its per-request samples (``samples``: every
    latency of ``metric_defs`` by name, in ms; ``data.ttft_ms`` reads one by its key) and
    token series."""

    summary: dict[str, Any]
    directory: Path
    samples: dict[str, list[float]] = field(default_factory=lambda: {d.name: [] for d in LATENCIES})
    tokens_per_s: list[tuple[float, float]] = field(default_factory=list)  # (s from start, tok)
    records: int = 0
    files: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, attr: str) -> list[float]:
        """``data.ttft_ms``: a latency's samples by its key (``samples["ttft"]``)."""
        d = by_key(attr)
        if d is None or d not in LATENCIES or "samples" not in self.__dict__:
            raise AttributeError(attr)
        return self.samples[d.name]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for n, line in enumerate(fh):
            if n >= MAX_RECORDS:
                return
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


def _series_from_file(path: Path) -> list[tuple[float, float]]:
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    points = raw.get("series") if isinstance(raw, dict) else raw
    out = []
    for point in points if isinstance(points, list) else ():
        if isinstance(point, list | tuple) and len(point) >= 2:
            t, v = _num(point[0]), _num(point[1])
            if t is not None and v is not None:
                out.append((t, v))
    if out:
        t0 = out[0][0]
        out = [(t - t0, v) for t, v in out]
    return out


def read_load(directory: Path) -> LoadData | None:
    """The load run in ``directory`` (``summary.json`` + siblings), or None without a summary."""
    summary_path = directory / "summary.json"
    try:
        summary = json.loads(summary_path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    data = LoadData(summary=summary, directory=directory, files={"summary": "summary.json"})
    buckets: dict[int, float] = {}
    requests = directory / "requests.jsonl"
    if requests.is_file():
        data.files["requests"] = "requests.jsonl"
        for rec in _records(requests):
            data.records += 1
            if rec.get("completed", rec.get("ok")) is False or rec.get("aborted"):
                continue  # a stream that did not complete has no figures
            _add_record(data, rec, buckets)
    series = directory / "tokens_per_s.json"
    if series.is_file():
        data.files["tokens_per_s"] = "tokens_per_s.json"
        data.tokens_per_s = _series_from_file(series)
    if not data.tokens_per_s and buckets:
        first, last = min(buckets), max(buckets)
        data.tokens_per_s = [(s - first, buckets.get(s, 0.0)) for s in range(first, last + 1)]
    return data


def _add_record(data: LoadData, rec: Mapping[str, Any], buckets: dict[int, float]) -> None:
    """A record's latencies: those its writer stored (``metrics``), else computed from its
    stamps by the load engine's own definitions (``request_metrics``); junk is skipped."""
    stored = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    content = [c for c in rec.get("content_us") or () if _num(c) is not None]
    stamps = {k: _num(rec.get(k)) for k in ("ttfb_us", "visible_us", "end_us", "last_us")}
    tokens = _num(rec.get("tokens"))
    m = request_metrics({**stamps, "content_us": content, "tokens": max(0, int(tokens or 0))})
    for d in LATENCIES:
        if d.pooled:
            data.samples[d.name].extend(getattr(m, d.name))
            continue
        value = _num(stored.get(d.key))
        if value is None:
            value = getattr(m, d.name)
        if value is not None:
            data.samples[d.name].append(value)
    wall = _num(rec.get("wall"))
    if wall is not None and tokens and content:
        share = tokens / len(content)
        for us in content:
            second = math.floor(wall + us / 1e6)
            buckets[second] = buckets.get(second, 0.0) + share


def find_load_dir(base: Path) -> Path | None:
    """The load run to merge: ``base`` itself when it holds a ``summary.json`` (the load run
    of ``streamproof run``), else its newest ``run-*`` folder that holds one."""
    if (base / "summary.json").is_file():
        return base
    runs = sorted(
        (p for p in base.glob("run-*") if (p / "summary.json").is_file()),
        key=lambda p: (p / "summary.json").stat().st_mtime,
    )
    return runs[-1] if runs else None


_SELECTION = re.compile(r"^/(?:(?:fault|timing)/[^/]*/|stamps/)*")


def _root(url: str) -> str:
    """An API root without the built-in server's selection prefixes (faults, timing)."""
    parts = urlsplit(url.strip())
    path = _SELECTION.sub("/", parts.path).rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def same_target(report: Mapping[str, Any], summary: Mapping[str, Any]) -> str | None:
    """None when the load run ran against the suite's endpoint (both against a built-in
    server counts), else why not, in words."""
    target = report.get("target") or {}
    if target.get("embedded") and summary.get("embedded"):
        return None
    suite, load = str(target.get("base_url") or ""), str(summary.get("host") or "")
    if suite and load and _root(suite) == _root(load):
        return None
    return f"it ran against {load or 'an unknown host'}, the suite against {suite or '?'}"


def violations_of(summary: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """``(rule, level, streams)`` of a summary's ``violations``, strongest first. Older
    summaries held MUST rules only, as ``rule: streams``."""
    raw = summary.get("violations")
    out = []
    for rule, value in raw.items() if isinstance(raw, dict) else ():
        if isinstance(value, dict):
            level, n = str(value.get("level", "MUST")), _num(value.get("requests"))
        else:
            level, n = "MUST", _num(value)
        if n is not None:
            out.append((str(rule), level, int(n)))
    return sorted(out, key=lambda v: (v[1] != "MUST", v[0]))


def load_section(data: LoadData, report_dir: Path, **run: Any) -> dict[str, Any]:
    """The ``load`` key of ``compliance.json``: the summary as the load run wrote it, where
    its files are (relative to the report directory) and how it was run."""
    try:
        rel = data.directory.resolve().relative_to(report_dir.resolve())
        prefix = rel.as_posix().rstrip("/") + "/" if str(rel) != "." else ""
    except ValueError:
        prefix = data.directory.as_posix().rstrip("/") + "/"
    return {
        "summary": data.summary,
        "files": {k: prefix + v for k, v in data.files.items()},
        "run": dict(run),
    }
