"""The Locust side of a streamproof load run, registered on Locust's events when this module
is imported (``users`` imports it, so a locustfile needs nothing else):

* our options on Locust's parser (``init_command_line_parser``);
* per process a :class:`Runtime`: settings, the open-loop arrivals, a CPU monitor, and a
  :class:`Collector` of per-request records and client lateness. A worker ships what it
  collected to the master with every stats report (``report_to_master``; bounded, cleared
  after each report); the master (or a single local process) aggregates them
  (``worker_report``), appends ``requests.jsonl`` as they come and writes ``summary.json``
  when a run stops and, complete, when Locust quits;
* on the master / local process only: the ``--api`` selection of user classes, the
  ``--shape`` choice, the end of the run once every user sent ``--requests-per-user``, and
  the web UI extension (``webui``).
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections import deque
from pathlib import Path
from typing import Any, Final

import gevent
import psutil
from locust import events
from locust.runners import STATE_RUNNING, WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from ..redact import redact
from ..server.endpoint import DEFAULT_API_KEY
from .args import Settings, add_locust_arguments, run_folder
from .metrics import Aggregate, LagHistogram, RequestMetrics, percentiles
from .summary import CPU_WARN_PERCENT, LAG_WARN_MS, RecordWriter, build_summary, write_outputs

__all__ = ["Arrivals", "Collector", "Runtime", "runtime", "select_user_classes"]

log = logging.getLogger("streamproof.load")
_ATTR: Final = "streamproof_runtime"
_WORKERS_OPTION: Final = "streamproof_workers"  # set by the master, shipped to workers
MAX_PENDING: Final = 50_000  # records a worker holds between two reports (3 s)
LIVE_WINDOW_S: Final = 10.0
LIVE_ITL_MAX: Final = 20_000
SERIES_MAX: Final = 3600
GC_THRESHOLDS: Final = (50_000, 20, 1000)
CSV_SETTLE_S: Final = 1.5
FAIL_FAST_S: Final = 3.0  # a run whose requests all failed this long ...
FAIL_FAST_MIN: Final = 8  # ... and this many times ends (exit status 2)
_pc = time.perf_counter_ns
_current: Runtime | None = None


def runtime(environment: Any) -> Runtime:
    """The process's runtime (created on Locust's ``init`` event)."""
    rt = getattr(environment, _ATTR, None)
    if rt is None:  # Locust used as a library without its init event: make one now
        rt = Runtime(environment)
        rt.start()
    return rt


class Arrivals:
    """Open-loop schedule shared by a process's users: ``take()`` hands out the next
    arrival time (``perf_counter_ns``), Poisson or evenly spaced at ``rate`` per second."""

    def __init__(self, rate: float, process: str, seed: int = 0) -> None:
        self.rate = rate
        self.poisson = process == "poisson"
        self._rng = random.Random(seed)
        self._next: int | None = None

    def take(self) -> int:
        now = _pc()
        if self._next is None:
            self._next = now
        t = self._next
        gap = self._rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate
        self._next = t + int(gap * 1e9)
        return t


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
        self.live_ttft: deque[tuple[float, float]] = deque()
        self.live_itl: deque[tuple[float, float]] = deque(maxlen=LIVE_ITL_MAX)
        self.live = False
        self.series: deque[dict[str, Any]] = deque(maxlen=SERIES_MAX)
        self.first_failure: str | None = None  # what the first failed request said

    def begin(self, settings: Settings, summary_path: Path) -> None:
        self.pending = []
        self.dropped = 0
        self.first_failure: str | None = None
        self.lag = LagHistogram()
        self.worker_cpu = {}
        self.live_ttft.clear()
        self.live_itl.clear()
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
        if m.ttft is not None:
            self.live_ttft.append((now, m.ttft))
        self.live_itl.extend((now, gap) for gap in m.itl)

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
        """A point of the live charts: TTFT and ITL percentiles over the last 10 s."""
        horizon = time.monotonic() - LIVE_WINDOW_S
        for dq in (self.live_ttft, self.live_itl):
            while dq and dq[0][0] < horizon:
                dq.popleft()
        ttft = percentiles(v for _, v in self.live_ttft)
        itl = percentiles(v for _, v in self.live_itl)
        point = {
            "t": time.time(),
            "ttft_p50": ttft["p50"],
            "ttft_p90": ttft["p90"],
            "ttft_p99": ttft["p99"],
            "itl_p50": itl["p50"],
            "itl_p90": itl["p90"],
            "itl_p99": itl["p99"],
        }
        self.series.append(point)
        return point


class Runtime:
    """One process's state for a run (see the module docstring)."""

    log = log

    def __init__(self, environment: Any) -> None:
        self.env = environment
        runner = environment.runner
        self.role = (
            "master"
            if isinstance(runner, MasterRunner)
            else "worker"
            if isinstance(runner, WorkerRunner)
            else "local"
        )
        self.settings = Settings.from_options(environment.parsed_options)
        self.collector = Collector(aggregating=self.role != "worker")
        self.arrivals: Arrivals | None = None
        self.cpu_max = 0.0
        self.cpu_since_report = 0.0
        self.users_max = 0
        self.saw_users = False
        self.warned: set[str] = set()
        self.ending = False  # this plugin ends the run (--requests-per-user, or failing fast)
        self.stopped: str | None = None  # why the run ended early (every request failed)
        self.interrupted = False  # stopped (Ctrl-C, SIGTERM) before its --run-time was over
        self.started_at = 0.0
        self.stopped_at = None
        self.summary_path = Path(self.settings.summary_json or "summary.json")
        self._process = psutil.Process()
        self._process.cpu_percent(None)
        self._monitor: gevent.Greenlet | None = None
        self._pending_write: gevent.Greenlet | None = None
        setattr(environment, _ATTR, self)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def worker_index(self) -> int:
        return int(getattr(self.env.runner, "worker_index", 0) or 0)

    def start(self) -> None:
        """``test_start``: settings from the (possibly master-sent) options, a fresh run."""
        options = self.env.parsed_options
        self.settings = Settings.from_options(options)
        keyless = options is not None and not any(self.settings.keys.values())
        if self.role != "worker" and keyless and _is_reference_server(self.env.host or ""):
            # the built-in server (streamproof serve) and no key given: its own key
            options.api_key = DEFAULT_API_KEY
            self.settings = Settings.from_options(options)
        if self._pending_write is not None:  # the previous run's late summary write
            self._pending_write.kill(block=False)
            self._pending_write = None
        if self.role == "master" and options is not None:
            setattr(options, _WORKERS_OPTION, max(1, self.env.runner.worker_count))
        given = self.settings.summary_json
        self.summary_path = Path(given) if given else run_folder() / "summary.json"
        self.collector.begin(self.settings, self.summary_path)
        self.arrivals = None
        if self.settings.arrival_rate > 0 and self.role != "master":
            workers = 1
            if self.role == "worker":
                workers = int(getattr(options, _WORKERS_OPTION, 1) or 1)
            index = getattr(self.env.runner, "worker_index", 0) or 0
            self.arrivals = Arrivals(
                self.settings.arrival_rate / workers, self.settings.arrival_process, seed=index
            )
        if self.role != "master":
            self._prepare()
        self.cpu_max = self.cpu_since_report = 0.0
        self.users_max = 0
        self.saw_users = False
        self.warned.clear()
        self.ending = False
        self.stopped = None
        self.interrupted = False
        self.started_at = time.monotonic()
        self.stopped_at: float | None = None
        if self._monitor is None or self._monitor.dead:
            self._monitor = gevent.spawn(self._watch)

    def _prepare(self) -> None:
        """Before the first request: do the one-time work (validator schemas, prompts) now,
        and keep the garbage collector from stalling the stamps: what exists now is frozen
        out of collections, and young collections run rarely (a full collection over a
        Locust process's objects takes tens of ms, every stamp taken meanwhile is late)."""
        from ..engine import validator_for
        from .apis import APIS
        from .prompts import load_prompts

        for api in APIS:
            validator_for(api, {})
        s = self.settings
        try:
            load_prompts(s.prompts, s.prompt_words, s.prompt_file)
        except (OSError, ValueError) as exc:
            log.error("prompts: %s", exc)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    def stop(self) -> None:
        """``test_stop``: write the summary (on the master once the workers' last reports
        are in; the final write happens again when Locust quits)."""
        if self.role == "worker":
            return
        run_time = self.settings.run_time
        self.stopped_at = time.monotonic()
        elapsed = self.stopped_at - self.started_at
        self.interrupted = bool(run_time) and not self.ending and elapsed < run_time - 1.0
        if self.role == "master":
            self._pending_write = gevent.spawn_later(
                WORKER_REPORT_INTERVAL + 1.0, self.write_summary
            )
        else:
            self.write_summary()

    def final(self) -> None:
        """Locust quits (after the workers' final reports): the complete summary."""
        if self._monitor is not None:
            self._monitor.kill(block=False)
        if self.role != "worker" and (self.collector.agg.completed or self.collector.agg.failed):
            self.write_summary()
        if self.collector.writer is not None:
            self.collector.writer.close()

    # -- outputs ---------------------------------------------------------------------------

    def cpu_worst(self) -> float:
        if self.role == "master":
            return max(self.collector.worker_cpu.values(), default=0.0)
        return self.cpu_max

    def summary(self) -> dict[str, Any]:
        users = self.users_max
        if not users and self.env.parsed_options is not None:
            users = int(getattr(self.env.parsed_options, "num_users", 0) or 0)
        return build_summary(
            self.collector.agg,
            api=self.settings.api,
            host=self.env.host or "",
            users=users,
            cpu_max=self.cpu_worst(),
            run_s=(self.stopped_at or time.monotonic()) - self.started_at,
            interrupted=self.interrupted,
            stopped=self.stopped,
        )

    def write_summary(self) -> dict[str, Any]:
        summary = self.summary()
        path = self.summary_path
        write_outputs(path, summary, self.collector.agg)
        if self.collector.writer is not None:
            self.collector.writer.flush()
        lag = summary["client_lag_ms"]
        if lag and lag.get("warning"):
            self._warn_once("lag", lag["warning"])
        elif self.cpu_worst() > CPU_WARN_PERCENT:
            self._warn_once(
                "cpu",
                f"a load generator process reached {self.cpu_worst():.0f}% CPU: its stamps may "
                "be late (no send stamps to measure by how much)",
            )
        log.info("streamproof summary written to %s", path)
        return summary

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            log.warning(redact(message))

    # -- monitoring --------------------------------------------------------------------------

    def _watch(self) -> None:
        """Every second: CPU, peak users, lateness warnings, the live chart point, and the
        end of a run whose users all sent ``--requests-per-user``."""
        tick = 0
        while True:
            gevent.sleep(1.0)
            tick += 1
            try:
                self._tick(tick)
            except Exception:  # monitoring must never end the run
                log.exception("streamproof monitor")

    def _tick(self, tick: int) -> None:
        runner = self.env.runner
        if self.role != "master":
            cpu = self._process.cpu_percent(None)
            self.cpu_max = max(self.cpu_max, cpu)
            self.cpu_since_report = max(self.cpu_since_report, cpu)
            if cpu > CPU_WARN_PERCENT and runner.state == STATE_RUNNING:
                self._warn_once(
                    "cpu-live",
                    f"this load generator process is at {cpu:.0f}% CPU: its stamps may be "
                    "late (add --processes)",
                )
        if self.role == "worker" or runner is None:
            return
        count = runner.user_count
        self.users_max = max(self.users_max, count)
        if count:
            self.saw_users = True
        if self.collector.live and tick % 2 == 0:
            self.collector.snapshot()
        if tick % 5 == 0:
            lag = self.collector.agg.lag.quantile_ms(0.99)
            if lag is not None and lag > LAG_WARN_MS:
                self._warn_once(
                    "lag-live",
                    f"client lateness p99 is {lag:.1f} ms (> {LAG_WARN_MS:g} ms): TTFT and "
                    "ITL include the load generator's own delay",
                )
        if runner.state == STATE_RUNNING and not self.ending:
            self._fail_fast(runner)
        if (
            self.settings.requests_per_user
            and (self.saw_users or (getattr(runner, "target_user_count", 0) or 0) > 0)
            and not self.ending
            and runner.state == STATE_RUNNING
            and count == 0
        ):
            self.ending = True
            log.info("every user sent --requests-per-user requests: ending the run")
            options = self.env.parsed_options
            headless = bool(options is not None and getattr(options, "headless", False))
            # Locust writes --csv once a second and not at exit: let it catch the last ones
            gevent.spawn_later(CSV_SETTLE_S, runner.quit if headless else runner.stop)

    def _fail_fast(self, runner: Any) -> None:
        """End a run in which every request so far failed (a dead host, a refused key, a
        wrong path): after FAIL_FAST_S and FAIL_FAST_MIN requests, not one completed.
        Exit status 2, and the summary says why (``stopped``)."""
        agg = self.collector.agg
        if agg.completed or agg.total - agg.aborted < FAIL_FAST_MIN:
            return
        if time.monotonic() - self.started_at < FAIL_FAST_S:
            return
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(agg.by_error.items()))
        self.stopped = redact(
            f"every request failed ({kinds}); the first said: {self.collector.first_failure}"
        )[:500]
        self.ending = True
        self.env.process_exit_code = 2
        log.error("streamproof: stopping the run: %s", self.stopped)
        options = self.env.parsed_options
        headless = bool(options is not None and getattr(options, "headless", False))
        gevent.spawn_later(CSV_SETTLE_S, runner.quit if headless else runner.stop)


def _is_reference_server(host: str) -> bool:
    """Whether ``host`` is streamproof's reference server (``server: streamproof`` on its
    GET /models answer); a quick look, bounded by 2 s."""
    if not host.startswith(("http://", "https://")):
        return False
    import httpx

    try:
        with httpx.Client(trust_env=False, verify=False, timeout=2.0) as client:
            answer = client.get(host.rstrip("/") + "/models")
    except httpx.HTTPError:
        return False
    return answer.headers.get("server", "") == "streamproof"


def select_user_classes(environment: Any, api: str, interrupt_users: int) -> None:
    """Keep the user classes of ``api`` (``mixed``: both) and the interrupting user only
    when ``--interrupt-users`` asks for it. Classes named on the command line win."""
    options = environment.parsed_options
    if options is not None and getattr(options, "user_classes", None):
        return
    everything = getattr(environment, "streamproof_all_user_classes", None)
    if everything is None:
        everything = list(environment.user_classes)
        environment.streamproof_all_user_classes = everything
    keep = []
    for cls in everything:
        cls_api = getattr(cls, "api", None)
        if getattr(cls, "interrupt", False):
            if interrupt_users > 0:
                cls.fixed_count = interrupt_users
                keep.append(cls)
        elif cls_api is None or api == "mixed" or cls_api in (api, "mixed"):
            keep.append(cls)
    if keep:
        environment.user_classes[:] = keep


# -- listeners -----------------------------------------------------------------------------------


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_kw: Any) -> None:
    add_locust_arguments(parser)


@events.init.add_listener
def _on_init(environment: Any, runner: Any = None, web_ui: Any = None, **_kw: Any) -> None:
    global _current
    rt = Runtime(environment)
    _current = rt
    options = environment.parsed_options
    if rt.role != "worker":
        select_user_classes(environment, rt.settings.api, rt.settings.interrupt_users)
        if options is not None and getattr(options, "shape", "none") in ("none", "", None):
            environment.shape_class = None
    if web_ui is not None:
        from .webui import install

        install(environment, rt)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    runtime(environment).start()


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kw: Any) -> None:
    rt = getattr(environment, _ATTR, None)
    if rt is not None:
        rt.stop()


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    rt = _current
    if rt is not None and rt.role == "worker":
        cpu = rt.cpu_since_report
        rt.cpu_since_report = 0.0
        rt.collector.report(data, cpu)


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    rt = _current
    if rt is not None and rt.role == "master":
        rt.collector.receive(client_id, data)


@events.reset_stats.add_listener
def _on_reset_stats(**_kw: Any) -> None:
    rt = _current
    if rt is not None:
        rt.collector.begin(rt.settings, rt.summary_path)


@events.quit.add_listener
def _on_quit(**_kw: Any) -> None:
    rt = _current
    if rt is not None:
        rt.final()
