"""One process's state for a load run, owned by Locust's ``Environment``: a user reaches it
with ``runtime(self.environment)``, the event listeners (``plugin``) with the environment
Locust hands them or the runtime they were bound to.

It holds the settings (from the options the master may have sent), the open-loop
:class:`Arrivals`, the :class:`Collector` of per-request records, a once-a-second monitor
(CPU, peak users, lateness warnings, the live chart points, the end of a run that is done
or failing), and writes ``summary.json`` when a run stops and, complete, when Locust quits.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any, Final

import gevent
import psutil
from locust.runners import STATE_RUNNING, WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from ..redact import redact
from ..server.endpoint import DEFAULT_API_KEY
from .args import Settings, run_folder
from .arrivals import Arrivals
from .collector import Collector
from .summary import CPU_WARN_PERCENT, LAG_WARN_MS, build_summary, write_outputs

__all__ = ["Runtime", "attached_runtime", "runtime"]

log = logging.getLogger("streamproof.load")
_ATTR: Final = "streamproof_runtime"
_WORKERS_OPTION: Final = "streamproof_workers"  # set by the master, shipped to workers
GC_THRESHOLDS: Final = (50_000, 20, 1000)
CSV_SETTLE_S: Final = 1.5
FAIL_FAST_S: Final = 3.0  # a run whose requests all failed this long ...
FAIL_FAST_MIN: Final = 8  # ... and this many times ends (exit status 2)


def attached_runtime(environment: Any) -> Runtime | None:
    """The runtime ``environment`` holds, if any (stopping a run must not make one)."""
    return getattr(environment, _ATTR, None)


def runtime(environment: Any) -> Runtime:
    """The process's runtime (created on Locust's ``init`` event)."""
    rt = attached_runtime(environment)
    if rt is None:  # Locust used as a library without its init event: make one now
        rt = Runtime(environment)
        rt.start()
    return rt


class Runtime:
    """One process's state for a run (see the module docstring); attaches itself to
    ``environment``."""

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
        self.stopped_at: float | None = None
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
        self.stopped_at = None
        if self._monitor is None or self._monitor.dead:
            self._monitor = gevent.spawn(self._watch)

    def _prepare(self) -> None:
        """Before the first request: do the one-time work (the checks, schemas, prompts) now,
        and keep the garbage collector from stalling the stamps: what exists now is frozen
        out of collections, and young collections run rarely (a full collection over a
        Locust process's objects takes tens of ms, every stamp taken meanwhile is late)."""
        from ..engine import model_for
        from .apis import APIS
        from .prompts import load_prompts

        for api in APIS:
            model_for(api, {})
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
