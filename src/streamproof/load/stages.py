"""The stages table of ``--shape`` (pure: no Locust; ``shapes`` walks it)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Stage", "stages"]

Stage = tuple[float, int, float]  # (until, users, spawn rate per second)
_FOREVER = math.inf


def stages(options: Any) -> list[Stage]:
    """The stages table of the selected shape (pure: reads plain attributes)."""
    get = lambda name, default: getattr(options, name, default) or default  # noqa: E731
    shape = get("shape", "none")
    users = max(1, int(get("num_users", 1)))
    run_time = float(get("run_time", 0) or 0) or _FOREVER
    if shape == "step":
        step = max(1, int(get("step_users", 1)))
        hold = max(0.1, float(get("step_time", 10.0)))
        out: list[Stage] = []
        level, until = 0, 0.0
        while level < users:
            level = min(users, level + step)
            until += hold
            out.append((until, level, float(step * 10)))
        out[-1] = (run_time, out[-1][1], out[-1][2])
        return out
    if shape == "ramp":
        ramp = max(0.1, float(get("ramp_time", 10.0)))
        rate = max(0.1, users / ramp)
        return [(ramp, users, rate), (run_time, users, rate)]
    if shape == "spike":
        spike = max(users, int(get("spike_users", 0)) or users * 4)
        at = max(0.0, float(get("spike_at", 5.0)))
        length = max(0.1, float(get("spike_time", 5.0)))
        fast = float(max(spike, 1) * 10)
        return [(at, users, fast), (at + length, spike, fast), (run_time, users, fast)]
    return [(run_time, users, float(get("spawn_rate", users) or users))]
