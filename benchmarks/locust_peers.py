"""Peers for ``bench_load.py``: stock Locust users reading the same streams the way their
documentation shows, measured the same way (receive stamp of each event minus the reference
server's send stamp, the ``: t=`` comment line before it).

    HttpLines   HttpUser (requests) ``response.iter_lines(chunk_size=None)``
    FastLines   FastHttpUser ``client.iter_lines(...)`` (reads 1 KiB blocks)

Each data line is parsed with ``json.loads`` (what a user of these clients does to find the
content). Results go to the JSON file named by ``BENCH_OUT`` when the run stops. Select a
user with ``locust -f benchmarks/locust_peers.py HttpLines ...``.
"""

from __future__ import annotations

import json
import os
import random
import time

from locust import FastHttpUser, HttpUser, constant, events, task

PATH = "/chat/completions"
KEY = os.environ.get("STREAMPROOF_API_KEY", "sk-streamproof-local")
HEADERS = {"authorization": f"Bearer {KEY}", "accept": "text/event-stream"}
BODY = {
    "model": "streamproof-1",
    "messages": [{"role": "user", "content": "Tell me a short story about a lighthouse keeper."}],
    "max_tokens": int(os.environ.get("BENCH_MAX_TOKENS", "200")),
    "stream": True,
}
_pc = time.perf_counter_ns
LAG: list[int] = []
TTFT_ERR: list[int] = []
STATE = {"events": 0, "first": None, "last": None}


def _line(line: bytes | str, t: int, state: dict) -> None:
    if isinstance(line, str):
        line = line.encode()
    if line.startswith(b": t="):
        state["stamp"] = int(line[4:])
        return
    if not line.startswith(b"data:"):
        return
    data = line[5:].strip()
    content = None
    if data != b"[DONE]":
        obj = json.loads(data)
        choices = obj.get("choices")
        if choices:
            content = choices[0].get("delta", {}).get("content")
    stamp = state.pop("stamp", None)
    STATE["events"] += 1
    STATE["first"] = STATE["first"] or t
    STATE["last"] = t
    if stamp is not None:
        LAG.append(t - stamp)
        if content and not state.get("seen"):
            state["seen"] = True
            TTFT_ERR.append(t - stamp)


class HttpLines(HttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        if os.environ.get("REQUESTS_CA_BUNDLE"):  # bench_load.py --tls: its private CA
            self.client.verify = os.environ["REQUESTS_CA_BUNDLE"]
        time.sleep(random.uniform(0.0, 1.0))  # as streamproof's --start-jitter 1 (gevent-patched)

    @task
    def stream(self) -> None:
        state: dict = {}
        with self.client.post(
            PATH, json=BODY, headers=HEADERS, stream=True, catch_response=True
        ) as resp:
            for line in resp.iter_lines(chunk_size=None):
                _line(line, _pc(), state)
            resp.success()


class FastLines(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        time.sleep(random.uniform(0.0, 1.0))

    @task
    def stream(self) -> None:
        state: dict = {}
        for line in self.client.iter_lines(PATH, method="POST", json=BODY, headers=HEADERS):
            _line(line, _pc(), state)


@events.quitting.add_listener
def _dump(environment, **_kw) -> None:
    out = os.environ.get("BENCH_OUT")
    if not out:
        return
    window = (STATE["last"] - STATE["first"]) / 1e9 if STATE["first"] else 0.0
    lag = sorted(LAG)
    ttft = sorted(TTFT_ERR)

    def q(xs: list[int], p: float) -> float | None:
        return xs[min(len(xs) - 1, int(p * len(xs)))] / 1e6 if xs else None

    result = {
        "events": STATE["events"],
        "window_s": window,
        "lag_p50_ms": q(lag, 0.5),
        "lag_p99_ms": q(lag, 0.99),
        "ttft_err_p50_ms": q(ttft, 0.5),
        "ttft_err_p99_ms": q(ttft, 0.99),
    }
    with open(out, "w") as fh:
        json.dump(result, fh)
