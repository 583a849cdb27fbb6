"""The load client's CPU per event, in one process and without a network.

    python benchmarks/bench_client_cpu.py [--api openai|anthropic] [--validate on|off]
        [--requests 300] [--callgrind]

One request is what a load worker does for a 100-token stream from the reference server
(send stamps included), minus the network: ``StreamClient.stream`` on a socket that returns
one event per read, the model the load user builds (``model_for``), then ``record()``.
Prints the CPU µs per event (best of 7 rounds). On a shared machine that figure moves by
10-20% between runs; ``--callgrind`` instead counts the instructions per event under
``valgrind --tool=callgrind`` (a run of ``--requests`` requests minus a run of none, hash seed
fixed), which repeat to within ~0.2% and so compare two trees (``PYTHONPATH=<tree>/src``) on
any machine. ``bench_load.py`` measures the same under Locust, with the network.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

from streamproof.engine import model_for
from streamproof.load.stream import StreamClient

TOKENS = 100
REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def event_lines(api: str) -> list[bytes]:
    def sse(data: dict[str, Any], name: str | None = None) -> bytes:
        head = f"event: {name}\n" if name else ""
        return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    if api == "openai":
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        return [
            chunk({"role": "assistant", "content": ""}),
            *(chunk({"content": f" word{i}"}) for i in range(TOKENS)),
            chunk({}, "stop"),
            b"data: [DONE]\n\n",
        ]
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 5, "output_tokens": 1}}  # fmt: skip
    return [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse({"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}}, "content_block_start"),
        *(sse({"type": "content_block_delta", "index": 0,
               "delta": {"type": "text_delta", "text": f" word{i}"}}, "content_block_delta")
          for i in range(TOKENS)),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": TOKENS}}, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]  # fmt: skip


def socket_reads(api: str) -> list[bytes]:
    """The HTTP response, one stamped event per chunk (as the reference server sends it)."""
    reads = [
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    ]
    for i, event in enumerate(event_lines(api)):
        event = f": t={i}\n".encode() + event
        reads.append(b"%x\r\n%s\r\n" % (len(event), event))
    return [*reads, b"0\r\n\r\n"]


class FakeSocket:
    """Answers every request with the same reads, one per ``recv``."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = iter(reads)

    def sendall(self, data: bytes) -> None:
        pass

    def settimeout(self, timeout: float) -> None:
        pass

    def recv(self, size: int) -> bytes:
        return next(self.reads, b"")

    def close(self) -> None:
        pass


def requester(api: str, validate: bool) -> tuple[Any, int]:
    """A function doing one request, and the events of one."""
    reads = socket_reads(api)
    client = StreamClient("http://127.0.0.1:9/v1")

    def connect(deadline: int) -> FakeSocket:
        client._sock = FakeSocket(reads)
        return client._sock

    client._connect = connect  # type: ignore[method-assign]
    body = json.dumps(REQUEST).encode()

    def one() -> dict[str, Any]:
        client._sock = None  # a new connection each time (no idle-socket probe)
        model = model_for(api, REQUEST, rules=validate, content_t=[])
        return client.stream(api, body, {}, model).record(0.0)

    rec = one()
    if not rec["ok"] or rec["tokens"] != TOKENS:
        sys.exit(f"the stream was not read as intended: {rec}")
    return one, rec["events"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", choices=("openai", "anthropic"), default="openai")
    ap.add_argument("--validate", choices=("on", "off"), default="off")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--only", type=int, help=argparse.SUPPRESS)  # one run under valgrind
    args = ap.parse_args()
    one, events = requester(args.api, args.validate == "on")
    if args.only is not None:
        for _ in range(args.only):
            one()
        return
    label = f"{args.api}, validation {args.validate}"
    if args.callgrind:
        counts = [instructions(args, n) for n in (0, args.requests)]
        per_event = (counts[1] - counts[0]) / (args.requests * events)
        print(f"{label}: {per_event:,.0f} instructions an event (callgrind)")
        return
    best = float("inf")
    for _ in range(7):
        t0 = time.process_time()
        for _ in range(args.requests):
            one()
        best = min(best, (time.process_time() - t0) / (args.requests * events))
    print(f"{label}: {best * 1e6:.2f} µs of CPU an event (best of 7)")


def instructions(args: argparse.Namespace, requests: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           __file__, "--api", args.api, "--validate", args.validate,
           "--only", str(requests)]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stderr
    found = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if found is None:
        sys.exit(f"no instruction count from valgrind:\n{out[-500:]}")
    return int(found.group(1).replace(",", ""))


if __name__ == "__main__":
    main()
