"""How many concurrent streams one reference-server process serves on time.

    python benchmarks/bench_server.py [--streams 250,500,1000,1500] [--gap-ms 20] [--events 300]

For each N: N clients (one separate process, raw asyncio sockets that only drain the bytes,
so the client is not what limits) open streams spread over a ramp, each of ``--events``
events at ``--gap-ms``; the server records, per frame, how late it was written compared with
its schedule. Steady-state lateness (after the ramp) is reported; the goal is the largest N
whose p99 stays under 2 ms.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
import time

from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer

CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    try:
        import uvloop
        run = uvloop.run
    except ImportError:
        run = asyncio.run

    async def one(port, path, body):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"POST {path} HTTP/1.1\\r\\nhost: bench\\r\\n"
                      f"authorization: Bearer {KEY}\\r\\ncontent-type: application/json\\r\\n"
                      f"content-length: {len(body)}\\r\\n\\r\\n").encode() + body)
        tail = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            tail = (tail + chunk)[-5:]
            if tail == b"0\\r\\n\\r\\n":
                break
        writer.close()

    async def main(port, n, ramp, path, body):
        async def later(i):
            await asyncio.sleep(i * ramp / n)
            await one(port, path, body)
        await asyncio.gather(*(later(i) for i in range(n)))

    port, n, ramp, path, body = sys.argv[1:6]
    run(main(int(port), int(n), float(ramp), path, body.encode()))
    """
)


def measure(n: int, gap_ms: float, events: int, ramp_s: float) -> tuple[dict, dict]:
    # tokens are words of a counting answer: "Count from 1 to N" gives N events
    body = (
        f'{{"model":"{DEFAULT_MODEL}","stream":true,'
        f'"messages":[{{"role":"user","content":"Count from 1 to {events}"}}]}}'
    )
    with ReferenceServer() as srv:
        path = f"/timing/ttft_ms=20,gap_ms={gap_ms:g}/v1/chat/completions"
        code = CLIENT.replace("{KEY}", DEFAULT_API_KEY)
        client = subprocess.Popen(
            [sys.executable, "-c", code, str(srv.port), str(n), str(ramp_s), path, body]
        )
        time.sleep(ramp_s + 0.5)
        ramp = srv.stats.snapshot()
        srv.stats.reset()  # steady state from here on
        client.wait(timeout=ramp_s + events * gap_ms / 1000 + 60)
        return ramp, srv.stats.snapshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="250,500,1000,1500")
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--ramp-s", type=float, default=2.0)
    args = parser.parse_args()
    print(f"gap {args.gap_ms:g} ms, {args.events} events per stream, ramp {args.ramp_s:g} s")
    print(
        f"{'streams':>8} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'ramp p99':>9}"
    )
    best = 0
    for n in (int(x) for x in args.streams.split(",")):
        ramp, steady = measure(n, args.gap_ms, args.events, args.ramp_s)
        rate = n * 1000 / args.gap_ms
        print(
            f"{n:8d} {rate:9,.0f} {steady['p50_ms']:7.2f} {steady['p99_ms']:7.2f} "
            f"{steady['max_ms']:7.1f} {ramp['p99_ms']:9.2f}"
        )
        if steady["p99_ms"] < 2.0:
            best = max(best, n)
    print(f"largest N with steady-state p99 lateness < 2 ms: {best}")


if __name__ == "__main__":
    main()
