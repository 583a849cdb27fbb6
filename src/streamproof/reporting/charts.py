"""The load section's charts, drawn by matplotlib as inline SVG.

Why matplotlib to SVG rather than plotly: the page must open from disk with no network and
stay light enough to attach to every CI run. plotly's JavaScript alone is ~3.5 MB inlined into
each report; matplotlib's SVGs weigh a few tens of KB together, need no script at all (they
render with JavaScript disabled, in a PDF print, in a mail client), and matplotlib is as
well kept as plotting libraries get. Text stays text (``svg.fonttype = none``: smaller and
selectable), each chart gets its own id salt so that clip paths of two charts on one page
cannot collide, and no pyplot global state is touched (``Figure`` objects only).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

from ..load.metrics import percentile

__all__ = ["cdf_chart", "histogram_chart", "series_chart"]

_COLORS = ("#2563eb", "#d97706", "#059669", "#7c3aed")
_MAX_POINTS = 400
_RC = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.6,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": "#374151",
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "legend.frameon": False,
}


def _style(salt: str) -> Any:
    """matplotlib's settings for one chart (a context manager; restored afterwards)."""
    import matplotlib

    return matplotlib.rc_context({**_RC, "svg.hashsalt": f"streamproof-{salt}"})


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.9), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig: Any, label: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    # ids nothing points to (figure_1, axes_1, ...) would repeat across charts: drop them
    used = set(re.findall(r'(?:url\(#|href="#)([^)"]+)', text))
    text = re.sub(r' id="([^"]+)"', lambda m: m.group(0) if m.group(1) in used else "", text)
    # scale with the page: keep the viewBox, let CSS set the size
    text = re.sub(r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r"<svg\1", text, count=1)
    return text.replace("<svg", f'<svg role="img" aria-label="{label}" class="chart"', 1)


def _downsample(ordered: Sequence[float]) -> tuple[list[float], list[float]]:
    """ECDF points: at most ``_MAX_POINTS`` evenly spaced ranks, first and last kept."""
    n = len(ordered)
    if n <= _MAX_POINTS:
        idx = list(range(n))
    else:
        step = (n - 1) / (_MAX_POINTS - 1)
        idx = sorted({round(i * step) for i in range(_MAX_POINTS)})
    return [ordered[i] for i in idx], [(i + 1) / n for i in idx]


def cdf_chart(
    series: dict[str, Sequence[float]], *, title: str, xlabel: str, salt: str
) -> str | None:
    """Empirical CDFs of one or more sample sets (ms); None if every set is empty."""
    series = {k: sorted(v) for k, v in series.items() if v}
    if not series:
        return None
    with _style(salt):
        fig, ax = _figure()
        for color, (name, values) in zip(_COLORS, series.items(), strict=False):
            xs, ys = _downsample(values)
            ax.step(xs, ys, where="post", color=color, linewidth=1.6,
                    label=f"{name} (n={len(values)})")  # fmt: skip
        ax.set_ylim(0, 1.02)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 0.9, 1.0])
        ax.set_yticklabels(["0", "25%", "50%", "75%", "90%", "100%"])
        ax.set_ylabel("requests at or below")
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left", fontsize=10, color="#111827")
        ax.legend(loc="lower right")
        return _svg(fig, title)


def histogram_chart(
    values: Sequence[float], *, title: str, xlabel: str, salt: str, bins: int = 40
) -> str | None:
    """A histogram of samples (ms), the top 0.5% folded into the last bin; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    cap = ordered[min(len(ordered) - 1, int(len(ordered) * 0.995))]
    clipped = [min(v, cap) for v in ordered]
    median = percentile(ordered, 0.5)  # as the summary's p50
    with _style(salt):
        fig, ax = _figure()
        ax.hist(clipped, bins=bins, color=_COLORS[0], alpha=0.85, edgecolor="white",
                linewidth=0.4)  # fmt: skip
        ax.axvline(median, color=_COLORS[1], linewidth=1.2, linestyle="--",
                   label=f"p50 {median:.1f} ms")  # fmt: skip
        ax.set_xlabel(xlabel + (" (top 0.5% in the last bin)" if cap < ordered[-1] else ""))
        ax.set_ylabel("samples")
        ax.set_title(title, loc="left", fontsize=10, color="#111827")
        ax.legend(loc="upper right")
        return _svg(fig, title)


def series_chart(
    points: Sequence[tuple[float, float]], *, title: str, ylabel: str, salt: str
) -> str | None:
    """A value per second over the run (e.g. output tokens/s); None if empty."""
    if not points:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    with _style(salt):
        fig, ax = _figure()
        ax.step(xs, ys, where="post", color=_COLORS[2], linewidth=1.6)
        ax.fill_between(xs, ys, step="post", color=_COLORS[2], alpha=0.15)
        ax.set_xlabel("seconds since the first request")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(title, loc="left", fontsize=10, color="#111827")
        return _svg(fig, title)
