"""The Locust side of a streamproof load run, registered on Locust's events when this module
is imported (``users`` imports it, so a locustfile needs nothing else):

* our options on Locust's parser (``init_command_line_parser``);
* on ``init``, one :class:`~.runtime.Runtime` per process, attached to the environment; on
  the master / local process also the ``--api`` selection of user classes, the ``--shape``
  choice and the web UI extension (``webui``);
* ``test_start`` / ``test_stop`` start a run and write its summary;
* the events Locust fires without the environment (``report_to_master``, ``worker_report``,
  ``reset_stats``, ``quit``) get listeners bound to the runtime at ``init``, on that
  environment's own events: a worker ships its records with every stats report, the master
  aggregates them, a stats reset begins the records again, quitting writes the summary.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gevent
from locust import events

from .args import add_locust_arguments
from .runtime import Runtime, attached_runtime, runtime
from .user_classes import select_user_classes

__all__: list[str] = []


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_kw: Any) -> None:
    add_locust_arguments(parser)


@events.init.add_listener
def _on_init(environment: Any, runner: Any = None, web_ui: Any = None, **_kw: Any) -> None:
    rt = Runtime(environment)
    _bind(environment.events, rt)
    options = environment.parsed_options
    if rt.role != "worker":
        select_user_classes(environment, rt.settings.api, rt.settings.interrupt_users)
        if options is not None and getattr(options, "shape", "none") in ("none", "", None):
            environment.shape_class = None
    if web_ui is not None:
        from .webui import install

        install(environment, rt)
    # The event loop's clock is only read when the loop turns, and it has not turned since
    # gevent started, before the locustfile's imports: Locust's --run-time timer, set next,
    # would count from then and end the run that much early (seen: a 2 s run stopped after
    # 0.4 s on a slow machine). Read the clock now.
    gevent.get_hub().loop.update_now()


def _bind(hooks: Any, rt: Runtime) -> None:
    """Listen, for ``rt``, to the events whose listeners Locust calls without the
    environment (Locust fires ``init`` once per process, so they are bound once)."""
    if rt.role == "worker":
        hooks.report_to_master.add_listener(partial(_on_report_to_master, rt))
    if rt.role == "master":
        hooks.worker_report.add_listener(partial(_on_worker_report, rt))
    hooks.reset_stats.add_listener(partial(_on_reset_stats, rt))
    hooks.quit.add_listener(partial(_on_quit, rt))


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    runtime(environment).start()


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kw: Any) -> None:
    rt = attached_runtime(environment)
    if rt is not None:
        rt.stop()


def _on_report_to_master(rt: Runtime, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    cpu = rt.cpu_since_report
    rt.cpu_since_report = 0.0
    rt.collector.report(data, cpu)


def _on_worker_report(rt: Runtime, client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    rt.collector.receive(client_id, data)


def _on_reset_stats(rt: Runtime, **_kw: Any) -> None:
    rt.collector.begin(rt.settings, rt.summary_path)


def _on_quit(rt: Runtime, **_kw: Any) -> None:
    rt.final()
