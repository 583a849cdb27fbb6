"""The files a load run leaves, and the table the CLI prints. No Locust here.

``summary.json`` (exact keys below), ``requests.jsonl`` beside it (one record per request with
its metrics, see ``metrics``) and ``tokens_per_s.json`` (output tokens per wall-clock second,
for charts). Every string goes through :func:`redact`: no API key reaches a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Final

import orjson

from ..redact import redact
from .metric_defs import CLIENT_LAG, LATENCIES, OUTPUT_TOKENS, RECORD, label_of
from .metrics import Aggregate, RequestMetrics

__all__ = [
    "LAG_WARN_MS",
    "SUMMARY_KEYS",
    "RecordWriter",
    "build_summary",
    "format_table",
    "write_outputs",
]

SUMMARY_KEYS: Final = (
    "api",
    "host",
    "embedded",
    "users",
    "run_s",
    "duration_s",
    "interrupted",
    "stopped",
    "requests",
    *(d.key for d in LATENCIES),
    OUTPUT_TOKENS.key,
    "throughput",
    "goodput",
    CLIENT_LAG.key,
    "violations",
)
LAG_WARN_MS: Final = 10.0
CPU_WARN_PERCENT: Final = 80.0


def _round(value: Any, digits: int = 3) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    return value


def lag_warning(lag: dict[str, Any] | None, cpu_max: float | None) -> str | None:
    """Why the measurement may be late, or None."""
    reasons = []
    if lag is not None and lag.get("p99") is not None and lag["p99"] > LAG_WARN_MS:
        reasons.append(
            f"client lateness p99 {lag['p99']:.1f} ms > {LAG_WARN_MS:g} ms: TTFT and ITL "
            "include the load generator's own delay; add worker processes (--processes)"
        )
    if cpu_max is not None and cpu_max > CPU_WARN_PERCENT:
        reasons.append(
            f"a load generator process reached {cpu_max:.0f}% CPU (> {CPU_WARN_PERCENT:g}%): "
            "its stamps may be late"
        )
    return "; ".join(reasons) or None


def build_summary(
    agg: Aggregate,
    *,
    api: str,
    host: str,
    users: int,
    cpu_max: float | None = None,
    run_s: float | None = None,
    interrupted: bool = False,
    stopped: str | None = None,
) -> dict[str, Any]:
    """The summary. ``run_s``: the run's wall time (start to stop); ``duration_s``: the
    window the requests spanned (first send to last end), which the rates are over;
    ``interrupted``: stopped before its planned end; ``stopped``: why the run ended early."""
    lag = agg.lag.summary()
    if lag is not None:
        lag = {**lag, "warning": lag_warning(lag, cpu_max)}
    out: dict[str, Any] = {
        "api": api,
        "host": redact(host or ""),
        "embedded": False,  # streamproof load sets it: against a built-in server of its own
        "users": users,
        "run_s": None if run_s is None else round(run_s, 3),
        "duration_s": round(agg.window_s, 3),
        "interrupted": interrupted,
        "stopped": redact(stopped) if stopped else None,
        "requests": {
            "total": agg.total,
            "completed": agg.completed,
            "failed": agg.failed,
            "aborted": agg.aborted,
            "retried": agg.retried,
            "by_error": dict(sorted(agg.by_error.items())),
        },
    }
    for d in LATENCIES:
        out[d.key] = _round(agg.samples[d.name].percentiles())
    out[OUTPUT_TOKENS.key] = {"total": agg.tokens, "source": agg.source}
    out["throughput"] = _round(agg.throughput())
    out["goodput"] = _round(agg.goodput())
    out[CLIENT_LAG.key] = _round(lag)
    out["violations"] = {k: dict(v) for k, v in sorted(agg.violations.items())}
    assert tuple(out) == SUMMARY_KEYS
    return out


class RecordWriter:
    """``requests.jsonl``: each record with its metrics, appended as it arrives."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh: IO[bytes] | None = path.open("wb")
        self.count = 0

    def write(self, rec: dict[str, Any], m: RequestMetrics | None) -> None:
        if self._fh is None:
            return
        line = dict(rec)
        if line.get("detail"):
            line["detail"] = redact(str(line["detail"]))
        if m is not None:
            line["metrics"] = {d.key: getattr(m, d.name) for d in RECORD}
        self._fh.write(orjson.dumps(line) + b"\n")
        self.count += 1

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_outputs(summary_path: Path, summary: dict[str, Any], agg: Aggregate) -> None:
    """``summary.json`` and ``tokens_per_s.json`` (``requests.jsonl`` is written as it goes)."""
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    text = redact(json.dumps(summary, indent=2))
    tmp = summary_path.with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(summary_path)
    series = {
        "bucket_s": 1,
        "unit": "output tokens per wall-clock second (epoch seconds)",
        "series": agg.token_series(),
    }
    (summary_path.parent / "tokens_per_s.json").write_text(json.dumps(series), encoding="utf-8")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a short plain-text table (``streamproof load``)."""
    req = summary["requests"]
    run_s = summary.get("run_s")
    took = f"{run_s:.1f} s run, " if run_s is not None else ""
    lines = [
        f"streamproof load: {summary['api']} at {summary['host']}, {summary['users']} user(s), "
        f"{took}requests over {summary['duration_s']:.1f} s"
        + (" — INTERRUPTED before its end" if summary.get("interrupted") else ""),
        f"requests: {req['total']} sent, {req['completed']} completed, {req['failed']} failed"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in req['by_error'].items())})"
            if req["by_error"]
            else ""
        )
        + (f", {req['retried']} retried on a stale connection" if req["retried"] else "")
        + (f", {req['aborted']} aborted on purpose" if req["aborted"] else ""),
        "",
        f"{'metric (ms)':12} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8} {'min':>8} {'max':>8} "
        f"{'mean':>8}",
    ]
    for d in LATENCIES:
        p = summary[d.key]
        cells = [p["p50"], p["p90"], p["p99"], p["p999"], p["min"], p["max"], p["mean"]]
        lines.append(f"{d.label:12} " + " ".join(f"{_fmt(c):>8}" for c in cells))
    tok = summary[OUTPUT_TOKENS.key]
    thr = summary["throughput"]
    lines += [
        "",
        f"output tokens: {tok['total']} (from {tok['source'] or '-'}); "
        f"{thr['output_tokens_per_s']:.1f} tok/s, {thr['requests_per_s']:.2f} req/s, "
        f"achieved concurrency {thr['achieved_concurrency']:.2f}",
    ]
    good = summary["goodput"]
    if good is not None:
        slo = ", ".join(f"{label_of(k)} <= {v:g} ms" for k, v in good["slo"].items())
        lines.append(
            f"goodput ({slo}): {good['requests_per_s']:.2f} req/s, "
            f"{good['fraction']:.1%} of requests"
        )
    lag = summary[CLIENT_LAG.key]
    if lag is not None:
        lines.append(
            f"client lateness: p50 {lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms, "
            f"max {lag['max']:.2f} ms"
        )
        if lag.get("warning"):
            lines.append(f"WARNING: {lag['warning']}")
    violations = summary["violations"]
    lines.append(
        "violations: "
        + (
            ", ".join(f"{k} ({v['level']}) x{v['requests']}" for k, v in violations.items())
            if violations
            else "none"
        )
    )
    return redact("\n".join(lines))
