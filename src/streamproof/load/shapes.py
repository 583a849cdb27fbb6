"""Load shapes as a stages table: ``(until second, users, spawn rate)`` rows built from the
options, and one ``tick()`` that walks them (Locust's ``examples/custom_shape/stages.py``).

``--shape step``: ``--step-users`` more users every ``--step-time`` seconds up to ``--users``;
``ramp``: from 1 to ``--users`` evenly over ``--ramp-time``; ``spike``: ``--users`` (the
baseline), ``--spike-users`` from ``--spike-at`` for ``--spike-time`` seconds, then the
baseline again. Every shape holds its last level until ``--run-time`` and then ends the run.
A locustfile holds one :class:`StreamproofShape`; ``--shape none`` (the default) turns it off.
"""

from __future__ import annotations

from locust import LoadTestShape

from .stages import Stage, stages

__all__ = ["Stage", "StreamproofShape", "stages"]


class StreamproofShape(LoadTestShape):
    """The ``--shape`` option as a Locust load shape (the stages are built on the first tick
    of each run, from the options in force then)."""

    abstract = True
    use_common_options = True
    _table: list[Stage] | None = None

    def reset_time(self) -> None:
        super().reset_time()
        self._table = None

    def tick(self) -> tuple[int, float] | None:
        if self._table is None:
            options = self.runner.environment.parsed_options if self.runner else None
            self._table = stages(options)
        now = self.get_run_time()
        for until, users, rate in self._table:
            if now < until:
                return users, rate
        return None
