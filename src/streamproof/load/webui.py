"""The web UI extension: a "Streaming" tab in Locust's own page (a table: the latencies'
percentiles from raw samples, output tokens/s, goodput, client lateness, violations) and a
linked page, ``/streamproof/``, with live charts of the percentiles of the ``live`` metrics
(TTFT and inter-token latency) and output tokens per second (uPlot, MIT, vendored in
``static/`` so it works offline). The metrics, their labels and units come from
``metric_defs``; the page reads them from ``/streamproof/metrics``.

Why two parts: Locust 2.x's React UI takes extra tabs only as tables (``extended_tabs`` /
``extended_tables`` fed through ``/stats/requests``, as in its ``extend_web_ui.py``
example); charts need a page of their own, served by a Flask blueprint and linked from the
tab's table and from "Download Data".

The tab's percentiles are computed from at most 20,000 of the raw samples, drawn uniformly,
so that a page refresh never stalls the process that is taking stamps; ``summary.json`` uses
all of them. Serving the UI shares the master's (or the single process's) core: a page load
can delay a few reads by tens of ms, and the client lateness figures show it — for exact
numbers under heavy load, run headless or with ``--processes``.

Also here, because only the web UI needs them: the API key is never sent to the browser
(Locust would put an option's default, here the key from the environment, into the page: it
is blanked, and an empty field means "from the environment"), and a run started from the UI
picks its user classes from the ``api`` field of the form.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from flask import Blueprint, request, send_from_directory

from ..redact import redact
from .metric_defs import (
    CLIENT_LAG,
    GOODPUT,
    LATENCIES,
    LIVE,
    OUTPUT_TOKENS_PER_S,
)
from .metrics import percentiles
from .user_classes import select_user_classes

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["PAGE", "install"]

STATIC: Final = Path(__file__).resolve().parent / "static"
PAGE: Final = "/streamproof/"
_TAB: Final = "streamproof"
LIVE_SAMPLE: Final = 20_000
_LINK_SCRIPT: Final = '<script src="./streamproof/static/tab-link.js"></script>'


def _sample(values: Sequence[float]) -> Sequence[float]:
    """At most ``LIVE_SAMPLE`` of the raw samples, uniformly: the live table must not stall
    the process that is taking stamps (the summary uses every sample)."""
    if len(values) <= LIVE_SAMPLE:
        return values
    return random.Random(len(values)).sample(values, LIVE_SAMPLE)


def _table(rt: Runtime) -> list[dict[str, Any]]:
    agg = rt.collector.agg
    rows: list[dict[str, Any]] = []

    def fmt(v: Any) -> str:
        return "" if v is None else f"{v:.2f}"

    for d in LATENCIES:
        p = percentiles(_sample(agg.samples[d.name].values))
        rows.append(
            {
                "metric": f"{d.label} ({d.unit})",
                "p50": fmt(p["p50"]),
                "p90": fmt(p["p90"]),
                "p99": fmt(p["p99"]),
                "max": fmt(p["max"]),
                "count": str(agg.samples[d.name].count),
            }
        )
    thr = agg.throughput()
    rows.append(
        {
            "metric": OUTPUT_TOKENS_PER_S.label,
            "p50": fmt(thr[OUTPUT_TOKENS_PER_S.path[-1]]),
            "p90": "",
            "p99": "",
            "max": "",
            "count": str(agg.tokens),
        }
    )
    good = agg.goodput()
    if good is not None:
        rows.append(
            {
                "metric": f"{GOODPUT.label} ({GOODPUT.unit}, fraction)",
                "p50": fmt(good["requests_per_s"]),
                "p90": fmt(good["fraction"]),
                "p99": "",
                "max": "",
                "count": str(agg.good),
            }
        )
    lag = agg.lag.summary()
    if lag is not None:
        rows.append(
            {
                "metric": f"{CLIENT_LAG.label} ({CLIENT_LAG.unit})",
                "p50": fmt(lag["p50"]),
                "p90": "",
                "p99": fmt(lag["p99"]),
                "max": fmt(lag["max"]),
                "count": str(agg.lag.count),
            }
        )
    for rule_id, seen in sorted(agg.violations.items()):
        rows.append(
            {
                "metric": f"violation {rule_id} ({seen['level']})",
                "p50": "",
                "p90": "",
                "p99": "",
                "max": "",
                "count": str(seen["requests"]),
            }
        )
    rows.append(
        {"metric": f"live charts: {PAGE}", "p50": "", "p90": "", "p99": "", "max": "", "count": ""}
    )
    return rows


def metrics() -> dict[str, Any]:
    """The metrics the chart page shows (``/streamproof/metrics``): it has no list of its own.
    ``live``: the ones charted, whose points carry ``<name>_p50``, ``_p90`` and ``_p99``."""
    return {
        "live": [d.as_json() for d in LIVE],
        "throughput": OUTPUT_TOKENS_PER_S.as_json(),
    }


def data(rt: Runtime) -> dict[str, Any]:
    """What the chart page polls."""
    agg = rt.collector.agg
    # the last seconds are still filling up (a worker reports every 3 s): leave them out
    settle = 1 if rt.role == "local" else 5
    cutoff = int(time.time()) - settle
    tokens = [point for point in agg.token_series()[-600:] if point[0] < cutoff]
    return {
        "series": list(rt.collector.series),
        "tokens": tokens,
        "goodput": agg.goodput(),
        "throughput": agg.throughput(),
        "completed": agg.completed,
        "failed": agg.failed,
        "violations": agg.violations,
        "client_lag_ms": agg.lag.summary(),
        "api": rt.settings.api,
        "state": getattr(rt.env.runner, "state", None),
    }


def install(environment: Any, rt: Runtime) -> None:
    web_ui = environment.web_ui
    app = web_ui.app
    rt.collector.live = True
    blueprint = Blueprint(
        "streamproof",
        __name__,
        static_folder=str(STATIC),
        static_url_path="/static",
        url_prefix="/streamproof",
    )

    @blueprint.route("/")
    def page() -> Any:
        return send_from_directory(STATIC, "streamproof.html")

    @blueprint.route("/metrics")
    def page_metrics() -> Any:
        return app.response_class(json.dumps(metrics()), mimetype="application/json")

    @blueprint.route("/data")
    def page_data() -> Any:
        return app.response_class(redact(json.dumps(data(rt))), mimetype="application/json")

    app.register_blueprint(blueprint)

    @app.after_request
    def extend_stats(response: Any) -> Any:
        if request.path.endswith("/stats/requests") and response.is_json:
            body = response.get_json()
            body["extended_stats"] = [{"key": _TAB, "data": _table(rt)}]
            response.set_data(redact(json.dumps(body)))
        elif response.mimetype == "text/html" and not request.path.startswith(PAGE):
            # Locust's page: the tab's "live charts" row becomes a link (tables are text)
            page = response.get_data(as_text=True)
            if "</body>" in page and _LINK_SCRIPT not in page:
                response.direct_passthrough = False
                response.set_data(page.replace("</body>", f"{_LINK_SCRIPT}</body>", 1))
        return response

    @app.before_request
    def api_from_form() -> None:
        if request.method == "POST" and request.path.endswith("/swarm"):
            api = request.form.get("api")
            if api:
                interrupt = request.form.get("interrupt_users")
                select_user_classes(environment, api, int(float(interrupt or 0)))

    web_ui.template_args["extended_tabs"] = [{"title": "Streaming", "key": _TAB}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": _TAB,
            "structure": [
                {"key": "metric", "title": "Metric"},
                {"key": "p50", "title": "p50"},
                {"key": "p90", "title": "p90"},
                {"key": "p99", "title": "p99"},
                {"key": "max", "title": "max"},
                {"key": "count", "title": "samples"},
            ],
        }
    ]
    live = ", ".join(d.label for d in LIVE)
    web_ui.template_args["extended_csv_files"] = [
        {
            "href": "./streamproof/",
            "title": f"Streaming charts (live {live}, tokens/s)",
        }
    ]
    original = web_ui.update_template_args

    def update_template_args() -> None:
        original()
        extra = web_ui.template_args.get("extra_options") or {}
        if "api_key" in extra:
            extra["api_key"] = {**extra["api_key"], "default_value": ""}

    web_ui.update_template_args = update_template_args
    update_template_args()
