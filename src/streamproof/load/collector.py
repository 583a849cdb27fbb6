"""The per-request records of a run and the client's lateness, one collector per process.

Why two modes: a worker only holds what its users measured and ships it to the master with
every stats report (bounded, cleared after each report); the master, or a single local
process, aggregates every record (``Aggregate``), appends ``requests.jsonl`` as they come
and keeps the live chart points of the web UI."""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import Any, Final

from .args import Settings
from .metric_defs import LIVE
from .metrics import Aggregate, LagHistogram, RequestMetrics, percentiles
from .summary import RecordWriter

__all__ = ["Collector"]

log = logging.getLogger("streamproof.load")
MAX_PENDING: Final = 50_000  # records a worker holds between two reports (3 s)
LIVE_WINDOW_S: Final = 10.0
LIVE_MAX: Final = 20_000  # samples kept per live metric (within the window)
SERIES_MAX: Final = 3600


class Collector:
    """Per-request records and lateness: shipped (worker) or aggregated (master, local)."""

    def __init__(self, aggregating: bool) -> None:
        self.aggregating = aggregating
        self.pending: list[dict[str, Any]] = []
        self.dropped = 0
        self.lag = LagHistogram()  # worker: since the last report
        self.agg = Aggregate()
        self.writer: RecordWriter | None = None
        self.worker_cpu: dict[str, float] = {}
        # per live metric (``metric_defs.LIVE``): (when, value) over the last seconds
        self.live_samples: dict[str, deque[tuple[float, float]]] = {
            d.name: deque(maxlen=LIVE_MAX) for d in LIVE
        }
        self.live = False
        self.series: deque[dict[str, Any]] = deque(maxlen=SERIES_MAX)
        self.first_failure: str | None = None  # what the first failed request said

    def begin(self, settings: Settings, summary_path: Path) -> None:
        self.pending = []
        self.dropped = 0
        self.first_failure = None
        self.lag = LagHistogram()
        self.worker_cpu = {}
        for dq in self.live_samples.values():
            dq.clear()
        self.series.clear()
        if self.aggregating:
            self.agg = Aggregate(slo=settings.slo)
            if self.writer is not None:
                self.writer.close()
            self.writer = RecordWriter(summary_path.parent / "requests.jsonl")

    def add(self, rec: dict[str, Any], lag_ns: list[int] | None) -> RequestMetrics | None:
        """Take one request; its metrics when this process computed them (aggregating)."""
        if self.aggregating:
            if lag_ns:
                self.agg.lag.add_ns(lag_ns)
            return self._take(rec)
        if lag_ns:
            self.lag.add_ns(lag_ns)
        if len(self.pending) < MAX_PENDING:
            self.pending.append(rec)
        else:
            self.dropped += 1
        return None

    def _take(self, rec: dict[str, Any]) -> RequestMetrics | None:
        m = self.agg.add(rec)
        if self.first_failure is None and not rec.get("ok") and not rec.get("aborted"):
            self.first_failure = f"{rec.get('error')}: {rec.get('detail') or ''}".strip(": ")
        if self.writer is not None:
            self.writer.write(rec, m)
        if self.live and m is not None:
            self._live(m)
        return m

    def _live(self, m: RequestMetrics) -> None:
        now = time.monotonic()
        for d in LIVE:
            value = getattr(m, d.name)
            if d.pooled:
                self.live_samples[d.name].extend((now, v) for v in value)
            elif value is not None:
                self.live_samples[d.name].append((now, value))

    # -- worker → master -------------------------------------------------------------------

    def report(self, data: dict[str, Any], cpu: float) -> None:
        lag = self.lag.take()
        lag["buckets"] = {str(k): v for k, v in lag["buckets"].items()}  # msgpack: str keys
        data["streamproof"] = {
            "records": self.pending,
            "lag": lag,
            "cpu": cpu,
            "dropped": self.dropped,
        }
        self.pending = []
        if self.dropped:
            log.warning(
                "%d request records were dropped (more than %d between two reports)",
                self.dropped,
                MAX_PENDING,
            )
            self.dropped = 0

    def receive(self, client_id: str, data: dict[str, Any]) -> None:
        part = data.get("streamproof")
        if not part:
            return
        for rec in part.get("records", ()):
            self._take(rec)
        self.agg.lag.merge(part.get("lag") or {})
        cpu = float(part.get("cpu") or 0.0)
        self.worker_cpu[client_id] = max(cpu, self.worker_cpu.get(client_id, 0.0))

    # -- live view (web UI) --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A point of the live charts: the live metrics' percentiles over the last 10 s
        (``<name>_p50``, ``_p90``, ``_p99``)."""
        horizon = time.monotonic() - LIVE_WINDOW_S
        point: dict[str, Any] = {"t": time.time()}
        for name, dq in self.live_samples.items():
            while dq and dq[0][0] < horizon:
                dq.popleft()
            values = percentiles(v for _, v in dq)
            for p in ("p50", "p90", "p99"):
                point[f"{name}_{p}"] = values[p]
        self.series.append(point)
        return point
