"""A longer fuzz campaign: the decoder, both stream models, the body checks and check_capture.

Runs the property tests' strategies (``tests/test_fuzz_robustness.py``) with many more
examples, bounded by ``--minutes``, on every core (``--workers``: one process each, each
with its own seed), and reports the inputs tried, the crashes (an exception escaping a
target, a check that raised — a tool error, kept in the model's ``crashes`` —, or
the decoder disagreeing with itself across splits) and memory: every 20th input is traced,
and its peak must stay under ``--input-bound`` MiB.
Hypothesis drives generation and shrinks any crash to a minimal input, printed at the end.

    python benchmarks/fuzz_campaign.py --minutes 3
    python benchmarks/fuzz_campaign.py --minutes 60 --workers 2 --json fuzz.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_fuzz_robustness as F

from streamproof.capture import Capture, replay
from streamproof.engine import check_capture, model_for
from streamproof.sse import decode_body
from streamproof.validators.answers import json_answer, refusal

TARGETS = ("decoder", "validators", "bodies", "capture")
SAMPLE = 20  # every 20th input runs under tracemalloc: the targets' own peak per input
_peak = [0]


@contextmanager
def measured(counter: list[int]):
    """Trace allocations of every SAMPLE-th input (tracing all would slow the campaign 3x;
    the process RSS mostly measures hypothesis's own bookkeeping)."""
    if counter[0] % SAMPLE:
        yield
        return
    tracemalloc.start()
    try:
        yield
    finally:
        _peak[0] = max(_peak[0], tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


class Budget(BaseException):
    """The campaign's time is up for this target (a BaseException: hypothesis lets it
    through at once instead of shrinking it as a failure)."""


def _target(name: str, deadline: float, counter: list[int]):
    def tick() -> None:
        counter[0] += 1
        if time.monotonic() > deadline:
            raise Budget

    if name == "decoder":

        @given(
            st.one_of(st.binary(max_size=4000), F.events_body()),
            st.lists(st.integers(0, 1 << 16), max_size=40),
        )
        def run(body, cuts):
            tick()
            with measured(counter):
                whole, _ = decode_body(body)
                split, _ = F._decode_pieces(F._split(body, cuts))
                assert split == whole, "the decoder gives different events for another split"

    elif name == "validators":

        @given(F.events_body(), st.sampled_from(F.APIS), st.one_of(st.none(), F.json_value))
        def run(body, api, request):
            tick()
            with measured(counter):
                events, _ = decode_body(body)
                v = model_for(api, request if isinstance(request, dict) else None)
                v.feed(events)
                v.finish(truncated=bool(len(body) % 2))
                assert v.crashes == [], v.crashes
                json.dumps(v.message(), default=str)
                for f in v.findings:
                    str(f)

    elif name == "bodies":

        @given(
            st.sampled_from(F.APIS),
            st.sampled_from([200, 400, 401, 404, 500, 502]),
            st.sampled_from(["application/json", "text/html", ""]),
            st.one_of(st.binary(max_size=400), F.payload.map(str.encode)),
        )
        def run(api, status, media, body):
            tick()
            with measured(counter):
                refusal(api, status, media, body, (400,))
                json_answer(api, status, media, body)

    else:

        @given(st.sampled_from(F.APIS), st.one_of(st.binary(max_size=4000), F.events_body()))
        def run(api, body):
            tick()
            with measured(counter):
                cap = Capture("POST", "http://127.0.0.1:9/v1", [], {"stream": True}, status=200,
                              response_headers=[("content-type", "text/event-stream")], body=body,
                              body_size=len(body), reads=[(len(body), 1)])  # fmt: skip
                replay(cap)
                findings, _, _, tool_errors = check_capture(api, cap, {"stream": True})
                assert tool_errors == [], tool_errors
                for f in findings:
                    str(f)

    return run


def fan_out(args: argparse.Namespace) -> int:
    """One campaign process per worker, each with its own seed; their figures summed."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for k in range(args.workers):
            out = Path(tmp) / f"{k}.json"
            cmd = [sys.executable, __file__, "--workers", "1", "--minutes", str(args.minutes),
                   "--examples", str(args.examples), "--seed", str(args.seed + k),
                   "--input-bound", str(args.input_bound), "--json", str(out)]  # fmt: skip
            procs.append((subprocess.Popen(cmd), out))
        parts = []
        for proc, out in procs:
            proc.wait()
            parts.append(json.loads(out.read_text()) if out.exists() else {"crashes": 1})
    total = sum(p.get("inputs", 0) for p in parts)
    crashes = sum(p.get("crashes", 0) for p in parts)
    peak = max(p.get("sampled_input_peak_mib", 0.0) for p in parts)
    figures = {"workers": args.workers, "inputs": total, "crashes": crashes,
               "sampled_input_peak_mib": peak, "per_worker": parts}  # fmt: skip
    print(f"all {args.workers} workers: {total:,} inputs, {crashes} crash(es), largest traced "
          f"input peak {peak:.1f} MiB (bound {args.input_bound:g} MiB)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 1 if crashes or peak > args.input_bound else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="total time (default 3)")
    ap.add_argument("--examples", type=int, default=1_000_000, help="cap per target")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes, one per core by default")  # fmt: skip
    ap.add_argument("--input-bound", type=float, default=64.0,
                    help="MiB one traced input may take at its peak (default 64)")  # fmt: skip
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    if args.workers > 1:
        return fan_out(args)
    per_target = args.minutes * 60 / len(TARGETS)
    figures: dict[str, object] = {"targets": {}}
    crashes: list[str] = []
    total = 0
    t0 = time.monotonic()
    for name in TARGETS:
        counter = [0]
        deadline = time.monotonic() + per_target
        test = settings(
            max_examples=args.examples, deadline=None, database=None, derandomize=False,
            suppress_health_check=list(HealthCheck), print_blob=True,
        )(_target(name, deadline, counter))  # fmt: skip
        start = time.monotonic()
        try:
            from hypothesis import seed

            seed(args.seed)(test)()
        except Budget:
            pass
        except (AssertionError, HypothesisException, Exception) as exc:
            crashes.append(f"{name}: {''.join(traceback.format_exception(exc))[-3000:]}")
        spent = time.monotonic() - start
        total += counter[0]
        rss_now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures["targets"][name] = {
            "inputs": counter[0], "seconds": round(spent, 1), "peak_rss_mib": round(rss_now, 1)
        }  # fmt: skip
        print(
            f"{name:<11} {counter[0]:>9,} inputs in {spent:5.1f} s, peak RSS so far "
            f"{rss_now:.0f} MiB",
            flush=True,
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures.update(
        inputs=total, crashes=len(crashes), seconds=round(time.monotonic() - t0, 1),
        peak_rss_mib=round(rss / 1024, 1), sampled_input_peak_mib=round(_peak[0] / 2**20, 1),
    )  # fmt: skip
    print(
        f"total: {total:,} inputs, {len(crashes)} crash(es), "
        f"peak RSS {rss / 1024:.0f} MiB (mostly hypothesis), largest traced peak of one "
        f"input (1 in {SAMPLE} traced) {_peak[0] / 2**20:.1f} MiB, "
        f"{figures['seconds']} s"
    )
    for crash in crashes:
        print("CRASH", crash, sep="\n")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    over = _peak[0] / 2**20 > args.input_bound
    if over:
        print(f"MEMORY: one input peaked at {_peak[0] / 2**20:.1f} MiB > {args.input_bound:g}")
    return 1 if crashes or over else 0


if __name__ == "__main__":
    sys.exit(main())
