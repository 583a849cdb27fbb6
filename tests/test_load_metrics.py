"""The load metrics of load-metrics.md on hand-made stamps (pure functions, no Locust), and the
small pure parts around them: the stream models under load, stamps parsing, options, prompts,
shapes, summary."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from streamproof.engine import model_for
from streamproof.load.apis import build_request, request_headers
from streamproof.load.args import Settings
from streamproof.load.exchange import Exchange
from streamproof.load.metrics import (
    Aggregate,
    LagHistogram,
    Reservoir,
    Slo,
    goodput,
    percentile,
    percentiles,
    request_metrics,
)
from streamproof.load.prompts import load_prompts
from streamproof.load.stages import stages
from streamproof.load.stream import StreamResult
from streamproof.load.summary import SUMMARY_KEYS, build_summary, format_table
from streamproof.sse import Event, SSEDecoder


def rec(**kw):
    base = {
        "api": "openai",
        "ok": True,
        "completed": True,
        "aborted": False,
        "retried": False,
        "error": None,
        "violations": {},
        "wall": 1000.0,
        "sched_us": None,
        "ttfb_us": 5_000,
        "content_us": [],
        "visible_us": None,
        "end_us": None,
        "last_us": None,
        "dur_us": 0,
        "tokens": 0,
        "source": "usage",
    }
    base.update(kw)
    return base


# -- per request -------------------------------------------------------------------------------


def test_ttft_ttfo_tpot_itl_e2e() -> None:
    # a reasoning event at 100 ms, visible content from 110 ms, 4 events, 4 tokens, end at 150
    r = rec(
        content_us=[100_000, 110_000, 120_000, 130_000],
        visible_us=110_000,
        end_us=150_000,
        last_us=150_000,
        dur_us=151_000,
        tokens=4,
    )
    m = request_metrics(r)
    assert m.ttfb == 5.0
    assert m.ttft == 100.0  # first content event of any kind
    assert m.ttfo == 110.0  # first non-reasoning one
    assert m.tpot == pytest.approx(10.0)  # (130 - 100) / (4 - 1)
    assert m.itl == [10.0, 10.0, 10.0]
    assert m.e2e == 150.0 and m.last_content == 130.0
    assert m.tok_s == pytest.approx(4 / 0.150)
    assert m.tok_s_decode == pytest.approx(3 / 0.030)


def test_tpot_uses_the_token_count_and_itl_one_gap_per_chunk() -> None:
    # 3 chunks of 2 tokens each (usage says 6): TPOT divides by N - 1, ITL has one gap per chunk
    m = request_metrics(rec(content_us=[100_000, 120_000, 140_000], tokens=6, end_us=150_000))
    assert m.tpot == pytest.approx(40 / 5)
    assert m.itl == [20.0, 20.0]


def test_e2e_falls_back_to_the_last_event_and_single_token_has_no_tpot() -> None:
    m = request_metrics(rec(content_us=[80_000], tokens=1, end_us=None, last_us=90_000))
    assert m.e2e == 90.0 and m.tpot is None and m.itl == []


# -- percentiles -------------------------------------------------------------------------------


def test_percentiles_interpolate_between_ranks() -> None:
    samples = list(range(1, 11))  # 1..10
    random.Random(1).shuffle(samples)
    p = percentiles(samples)
    assert p["p50"] == pytest.approx(5.5)
    assert p["p90"] == pytest.approx(9.1)
    assert p["p99"] == pytest.approx(9.91)
    assert p["p999"] == pytest.approx(9.991)
    assert (p["min"], p["max"], p["mean"]) == (1, 10, 5.5)
    assert percentile([7.0], 0.99) == 7.0
    assert percentiles([]) == dict.fromkeys(
        ["p50", "p90", "p95", "p99", "p999", "min", "max", "mean"]
    )


def test_reservoir_is_exact_then_bounded() -> None:
    r = Reservoir(cap=100)
    r.extend([float(i) for i in range(100)])
    assert r.exact and sorted(r.values) == [float(i) for i in range(100)]
    for i in range(10_000):
        r.add(float(i))
    assert len(r.values) == 100 and r.count == 10_100 and not r.exact


@pytest.mark.parametrize("chunk", [1, 7, 64, 5000])
def test_reservoir_past_its_cap_is_a_uniform_sample(chunk: int) -> None:
    n, cap = 200_000, 2000
    r = Reservoir(cap=cap, seed=chunk)
    stream = [float(i) for i in range(n)]
    for i in range(0, n, chunk):
        r.extend(stream[i : i + chunk])
    assert r.count == n and len(r.values) == cap and len(set(r.values)) == cap
    deciles = [0] * 10
    for v in r.values:
        deciles[int(v * 10 // n)] += 1
    # each tenth of the stream holds ~200 of the 2000 kept (sd ~13): none is favoured
    assert all(140 < d < 260 for d in deciles), deciles
    assert max(r.values) > n * 0.99  # the latest samples get in too


def test_lag_histogram_quantiles_and_merge() -> None:
    a, b = LagHistogram(), LagHistogram()
    a.add_ns([100_000] * 98)  # 0.1 ms
    b.add_ns([3_000_000, 50_000_000])  # 3 ms, 50 ms
    shipped = b.take()
    shipped["buckets"] = {str(k): v for k, v in shipped["buckets"].items()}  # as msgpack carries it
    a.merge(shipped)
    assert a.count == 100 and b.count == 0
    assert a.quantile_ms(0.5) == pytest.approx(0.11)  # upper edge of the 10 µs bucket
    assert a.quantile_ms(0.99) == pytest.approx(3.01)
    assert a.summary()["max"] == 50.0


# -- goodput and aggregation -------------------------------------------------------------------


def test_goodput_counts_errors_as_misses() -> None:
    slo = Slo(ttft_ms=150, tpot_ms=12)
    good = request_metrics(rec(content_us=[100_000, 110_000], tokens=2, end_us=120_000))
    slow = request_metrics(rec(content_us=[200_000, 210_000], tokens=2, end_us=220_000))
    outcomes = [(True, good), (True, good), (True, slow), (False, None)]
    g = goodput(outcomes, slo, window_s=2.0)
    assert g == {"slo": {"ttft_ms": 150, "tpot_ms": 12}, "requests_per_s": 1.0, "fraction": 0.5}
    assert goodput(outcomes, Slo(), 2.0) is None


def test_aggregate_counts_tokens_window_and_buckets() -> None:
    agg = Aggregate(slo=Slo(e2e_ms=500))
    agg.add(
        rec(
            wall=1000.0,
            content_us=[100_000, 1_100_000],
            tokens=10,
            end_us=1_200_000,
            dur_us=1_200_000,
        )
    )
    agg.add(
        rec(
            wall=1000.5,
            content_us=[100_000],
            tokens=4,
            end_us=200_000,
            dur_us=200_000,
            source="events",
        )
    )
    agg.add(rec(wall=1001.0, ok=False, completed=False, error="http.503", dur_us=10_000))
    # read to its end but broke a MUST rule: a failure, and its figures count (3 tokens)
    agg.add(
        rec(
            wall=1001.0,
            ok=False,
            error="protocol",
            violations={"openai.done": "MUST", "openai.model-stable": "SHOULD"},
            content_us=[50_000],
            tokens=3,
            end_us=60_000,
            dur_us=60_000,
            retried=True,
        )
    )
    agg.add(rec(wall=1001.2, aborted=True, completed=False, dur_us=50_000))
    assert (agg.total, agg.completed, agg.failed, agg.aborted) == (5, 3, 2, 1)
    assert agg.retried == 1
    assert agg.by_error == {"http.503": 1, "protocol": 1}
    assert agg.violations == {
        "openai.done": {"level": "MUST", "requests": 1},
        "openai.model-stable": {"level": "SHOULD", "requests": 1},
    }
    assert agg.must_violations == 1
    assert agg.tokens == 17 and agg.source == "mixed"
    assert agg.window_s == pytest.approx(1.25)  # 1000.0 → 1001.25 (the aborted one ends last)
    thr = agg.throughput()
    assert thr["output_tokens_per_s"] == pytest.approx(17 / 1.25)
    assert thr["achieved_concurrency"] == pytest.approx(1.46 / 1.25)
    # goodput: the one fast request that succeeded (the protocol failure is fast but failed)
    assert agg.goodput() == {
        "slo": {"e2e_ms": 500},
        "requests_per_s": pytest.approx(1 / 1.25),
        "fraction": 0.25,
    }
    series = dict(agg.token_series())
    # 10 tokens over 2 events, 4 tokens at 1000.6, 3 at 1001.05
    assert series == {1000: 9.0, 1001: 8.0}
    assert math.fsum(series.values()) == agg.tokens


def test_summary_has_exactly_the_keys() -> None:
    agg = Aggregate()
    agg.add(rec(content_us=[100_000, 110_000], tokens=2, end_us=120_000, dur_us=120_000))
    agg.lag.add_ns([200_000, 300_000])
    s = build_summary(agg, api="openai", host="http://127.0.0.1:1/v1", users=1, cpu_max=95.0)
    assert tuple(s) == SUMMARY_KEYS
    assert set(s["ttft_ms"]) == {"p50", "p90", "p95", "p99", "p999", "min", "max", "mean"}
    assert s["goodput"] is None
    assert set(s["client_lag_ms"]) >= {"p50", "p99", "max"}
    assert "95% CPU" in s["client_lag_ms"]["warning"]
    assert "TTFT" in format_table(s)
    json.dumps(s)


# -- stream models under load, and stamps --------------------------------------------------


def _ev(data, t, name=None, index=0):
    return Event(
        json.dumps(data) if not isinstance(data, str) else data, name, None, None, index, 0, t
    )


def test_openai_content_events_under_load() -> None:
    tr = model_for("openai", rules=False, content_t=[])
    chunk = lambda delta, **kw: {"choices": [{"index": 0, "delta": delta}], **kw}  # noqa: E731
    tr.feed(
        [
            _ev(chunk({"role": "assistant", "content": ""}), 1),  # role only: not content
            _ev(chunk({"reasoning_content": "hmm"}), 2),  # reasoning: content, not visible
            _ev(chunk({"content": ""}), 3),  # empty: not content
            _ev(chunk({"content": "Hi"}), 4),
            _ev(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}), 5),
            _ev({"choices": [], "usage": {"completion_tokens": 7}}, 6),  # usage only
            _ev("[DONE]", 7),
        ]
    )
    assert tr.content_t == [2, 4, 5] and tr.visible_t == 4 and tr.first_index == 1
    assert tr.output_tokens == (7, "usage") and tr.end_t == 7 and tr.last_t == 7


def test_anthropic_content_events_under_load() -> None:
    tr = model_for("anthropic", rules=False, content_t=[])
    delta = lambda d: {"type": "content_block_delta", "index": 0, "delta": d}  # noqa: E731
    tr.feed(
        [
            _ev(
                {"type": "message_start", "message": {"usage": {"output_tokens": 1}}},
                1,
                "message_start",
            ),
            _ev({"type": "ping"}, 2, "ping"),
            _ev(delta({"type": "thinking_delta", "thinking": "hmm"}), 3, "content_block_delta"),
            _ev(delta({"type": "input_json_delta", "partial_json": ""}), 4, "content_block_delta"),
            _ev(delta({"type": "text_delta", "text": "Hi"}), 5, "content_block_delta"),
            _ev(
                {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 3}},
                6,
                "message_delta",
            ),
            _ev({"type": "message_stop"}, 7, "message_stop"),
        ]
    )
    assert tr.content_t == [3, 5] and tr.visible_t == 5
    assert tr.output_tokens == (3, "usage") and tr.end_t == 7


def test_responses_content_events_under_load() -> None:
    tr = model_for("responses", rules=False, content_t=[])
    seq = iter(range(100))

    def ev(kind, t, **fields):
        return _ev({"type": kind, "sequence_number": next(seq), **fields}, t, kind)

    response = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    reasoning = {"id": "rs_1", "type": "reasoning", "summary": []}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
    summary = lambda **kw: {"item_id": "rs_1", "output_index": 0, "summary_index": 0, **kw}  # noqa: E731
    text = lambda **kw: {"item_id": "msg_1", "output_index": 1, "content_index": 0, **kw}  # noqa: E731
    part = {"type": "output_text", "text": "", "annotations": []}
    tr.feed(
        [
            ev("response.created", 1, response=response),
            ev("response.in_progress", 2, response=response),
            ev("response.output_item.added", 3, output_index=0, item=reasoning),
            ev("response.reasoning_summary_part.added", 4,
               **summary(part={"type": "summary_text", "text": ""})),
            ev("response.reasoning_summary_text.delta", 5, **summary(delta="hmm")),  # reasoning
            ev("response.reasoning_summary_text.delta", 6, **summary(delta="")),  # empty: not
            ev("response.reasoning_summary_text.done", 7, **summary(text="hmm")),
            ev("response.output_item.done", 8, output_index=0,
               item={**reasoning, "summary": [{"type": "summary_text", "text": "hmm"}]}),
            ev("response.output_item.added", 9, output_index=1, item=message),
            ev("response.content_part.added", 10, **text(part=part)),
            ev("response.output_text.delta", 11, **text(delta="Hi")),
            ev("response.output_text.delta", 12, **text(delta="")),  # empty: not content
            ev("response.output_text.delta", 13, **text(delta=" there")),
            ev("response.output_text.done", 14, **text(text="Hi there")),
            ev("response.content_part.done", 15, **text(part={**part, "text": "Hi there"})),
            ev("response.output_item.done", 16, output_index=1, item=message),
            ev("response.completed", 17, response={
                **response, "status": "completed", "usage": {
                    "input_tokens": 3, "output_tokens": 9, "total_tokens": 12,
                    "output_tokens_details": {"reasoning_tokens": 6}}}),
        ]
    )  # fmt: skip
    # TTFT at the reasoning summary delta, TTFO at the first text delta, E2E at the terminal
    assert tr.content_t == [5, 11, 13] and tr.visible_t == 11 and tr.first_index == 4
    assert tr.output_tokens == (9, "usage") and tr.end_t == 17 and tr.last_t == 17
    tr.finish()
    assert tr.complete and tr.error_text is None


def test_no_usage_counts_events() -> None:
    tr = model_for("openai", rules=False, content_t=[])
    tr.feed([_ev({"choices": [{"index": 0, "delta": {"content": "a"}}]}, 1)])
    assert tr.output_tokens == (1, "events")


@pytest.mark.parametrize("cut", [1, 3, 7, 11, 64, 10_000])
def test_send_stamps_pair_with_their_events_across_reads(cut) -> None:
    chunk = lambda i: json.dumps({"choices": [{"index": 0, "delta": {"content": f"w{i}"}}]})  # noqa: E731
    body = b": keep-alive\n\n" + b"".join(
        b": t=%d\r\ndata: %s\n\n" % (1000 + i, chunk(i).encode()) for i in range(20)
    )
    result = StreamResult("openai", model_for("openai", rules=False, content_t=[]))
    ex = Exchange(result, 1 << 20, None)
    ex.sse = True
    read_at = {}  # event number → stamp of the read that completed it
    for i in range(0, len(body), cut):
        ex.t = 5000 + i
        ex.on_body(body[i : i + cut])
        for n in range(len(read_at), len(ex.model.content_t)):
            read_at[n] = ex.t
    assert ex.lag == [read_at[n] - (1000 + n) for n in range(20)]
    assert result.ttft_lag_ns == read_at[0] - 1000
    assert ex.decoder.comments == 21


def test_request_building() -> None:
    body = build_request("openai", "m", "hi", 5, include_usage=True)
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert "stream_options" not in build_request("openai", "m", "hi", 5, include_usage=False)
    assert build_request("anthropic", "m", "hi", 5)["max_tokens"] == 5
    assert request_headers("anthropic", "k")["x-api-key"] == "k"
    assert request_headers("openai", "k")["authorization"] == "Bearer k"
    # Responses: input and max_output_tokens; no stream_options (the terminal event has usage)
    for include_usage in (True, False):
        assert build_request("responses", "m", "hi", 5, include_usage=include_usage) == {
            "model": "m", "input": "hi", "max_output_tokens": 5, "stream": True
        }  # fmt: skip
    assert request_headers("responses", "k")["authorization"] == "Bearer k"
    assert "anthropic-version" not in request_headers("responses", "k")


# -- options, prompts, shapes ------------------------------------------------------------------


def test_settings_from_web_ui_strings_and_env_key(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env-0001")
    monkeypatch.delenv("STREAMPROOF_API_KEY", raising=False)
    options = SimpleNamespace(
        api="anthropic",
        api_key="",
        max_tokens="64",
        slo_ttft_ms="200",
        slo_tpot_ms="",
        validate="off",
        idle_timeout="5",
    )
    s = Settings.from_options(options)
    assert s.key_for("anthropic") == "sk-ant-from-env-0001"
    assert s.max_tokens == 64 and s.slo == Slo(ttft_ms=200.0) and not s.validate
    assert s.timeouts.idle == 5.0 and s.timeouts.connect == 10.0
    assert "sk-ant" not in repr(s)


def test_settings_for_responses_take_the_openai_key(monkeypatch) -> None:
    monkeypatch.delenv("STREAMPROOF_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-from-env-0002")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env-0003")
    s = Settings.from_options(SimpleNamespace(api="responses", api_key="", max_tokens="32"))
    assert s.api == "responses" and s.max_tokens == 32
    assert set(s.keys) == {"openai", "anthropic", "responses"}
    assert s.key_for("responses") == s.key_for("openai") == "sk-openai-from-env-0002"
    assert s.key_for("anthropic") == "sk-ant-from-env-0003"
    assert s.request_headers("responses")["authorization"] == "Bearer sk-openai-from-env-0002"
    mixed = Settings.from_options(SimpleNamespace(api="mixed", api_key="sk-given-0004"))
    assert set(mixed.keys.values()) == {"sk-given-0004"} and len(mixed.keys) == 3
    with pytest.raises(ValueError, match="responses"):
        Settings.from_options(SimpleNamespace(api="chat"))


def test_prompt_sources(tmp_path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        '{"prompt": "one"}\n"two"\n{"messages": [{"role": "user", "content": "three"}]}\n'
    )
    assert load_prompts("jsonl", file=str(jsonl)) == ("one", "two", "three")
    share = tmp_path / "sg.json"
    share.write_text(
        json.dumps(
            [
                {
                    "conversations": [
                        {"from": "human", "value": "q1"},
                        {"from": "gpt", "value": "a1"},
                    ]
                },
                {"conversations": [{"from": "gpt", "value": "x"}]},
            ]
        )
    )
    assert load_prompts("sharegpt", file=str(share)) == ("q1",)
    words = load_prompts("synthetic", words=30)[0].split(": ", 1)[1].split()
    assert len(words) == 30
    assert len(load_prompts("long")[0].split()) > 1000


def test_shape_stages() -> None:
    opts = SimpleNamespace(shape="step", num_users=5, step_users=2, step_time=3, run_time=20)
    assert [(u, t) for t, u, _ in stages(opts)] == [(2, 3), (4, 6), (5, 20)]
    opts = SimpleNamespace(shape="ramp", num_users=10, ramp_time=5, run_time=20)
    assert stages(opts) == [(5, 10, 2.0), (20, 10, 2.0)]
    opts = SimpleNamespace(
        shape="spike", num_users=2, spike_users=8, spike_at=4, spike_time=2, run_time=10
    )
    assert [(t, u) for t, u, _ in stages(opts)] == [(4, 2), (6, 8), (10, 2)]


# Importing locust monkey-patches the whole process (threads become greenlets), so the
# comparison with Locust's own logging runs in a child process. The metric rows are logged
# into their own entries only: Locust's totals count streams.
_BULK_CHECK = """
import sys
import types
import pytest
import locust.stats
from locust.stats import RequestStats
from streamproof.load.users import log_samples

locust.stats.time = types.SimpleNamespace(time=lambda: 1_700_000_000.25)  # one second for all

samples = [float(x) for x in sys.argv[1:]]
ours, locust_own = RequestStats(), RequestStats()
for stats in (ours, locust_own):
    stats.log_request("openai", "E2E", 101.0, 0)  # one stream: the only sample in the totals
log_samples(ours, "openai", "ITL", samples)
for x in samples:
    locust_own.get("ITL", "openai").log(x, 0)  # Locust's own per-sample logging, entry only
assert ours.total.num_requests == 1  # the ITL samples did not inflate the totals
for a, b in zip(
    [*ours.serialize_stats(), ours.total.serialize()],
    [*locust_own.serialize_stats(), locust_own.total.serialize()],
    strict=True,
):
    # the same sum in another order: equal up to float rounding
    assert a.pop("total_response_time") == pytest.approx(b.pop("total_response_time"))
    assert a == b, (a, b)
print("same")
"""


@pytest.mark.parametrize("samples", [[], [7.3], [10.2, 9.8, 150.4, 0.4, 12000.0, 10.2]])
def test_bulk_itl_logging_equals_locust_per_sample_logging(samples) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _BULK_CHECK, *map(str, samples)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and run.stdout.strip() == "same", run.stderr[-2000:]


GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(
    "path", sorted(GOLDEN.glob("*/*.sse")), ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_bare_model_measures_what_the_checked_model_measures(path: Path) -> None:
    """Under load with validation off the model runs bare (its shortcut for content deltas,
    no message rebuilt): the stamps, the usage, the end and the error are those of the model
    with every check attached, read in 7-byte pieces."""
    api = path.parent.name
    body = path.read_bytes()
    seen = []
    for rules in (True, False):
        model = model_for(api, {}, rules=rules, content_t=[])
        decoder = SSEDecoder()
        for i in range(0, len(body), 7):
            model.feed(decoder.feed(body[i : i + 7], i))
        model.feed(decoder.finish())
        model.finish()
        seen.append(
            (
                model.content_t, model.first_index, model.visible_t, model.end_t,
                model.last_t, model.error_text, model.output_tokens, model.events,
                model.complete,
            )
        )  # fmt: skip
    assert seen[0] == seen[1]
    assert model.message_cut and not model.findings  # bare: no message, no check
