"""``responses.resume``: a background stream fetched again after sequence number N must replay
exactly the events after N. The comparison (``validators/responses_resume.py``) on hand-made
streams, the replay judged as a replay by the stream model, and the resume scenario's runs
against the reference server: clean, faulted, and skipped with the reason where the endpoint
offers no background mode or no replay."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from streamproof.engine import Runner, Target, model_for, outcome
from streamproof.scenarios import scenarios_for
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, ReferenceServer, Timing
from streamproof.sse import Event, decode_body
from streamproof.validators import responses_resume
from streamproof.validators.responses_resume import Transcript, compare

RESUME = next(s for s in scenarios_for("responses") if s.name == "resume")


def stream(*payloads: dict) -> list[Event]:
    body = b"".join(b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads)
    return decode_body(body)[0]


def noted(events: list[Event]) -> Transcript:
    transcript = Transcript()
    transcript.take(events)
    return transcript


CREATED = {"type": "response.created", "sequence_number": 0,
           "response": {"id": "resp_1", "status": "queued"}}  # fmt: skip
QUEUED = {"type": "response.queued", "sequence_number": 1, "response": {"id": "resp_1"}}
DELTA = {"type": "response.output_text.delta", "sequence_number": 2, "delta": "Hi",
         "obfuscation": "abc"}  # fmt: skip
DONE = {"type": "response.completed", "sequence_number": 3, "response": {"id": "resp_1"}}
ORIGINAL = noted(stream(CREATED, QUEUED, DELTA, DONE))


def messages(*payloads: dict) -> list[str]:
    return [f.message for f in compare(ORIGINAL, 0, noted(stream(*payloads)))]


def test_the_transcript_notes_the_id_and_where_to_resume() -> None:
    assert (ORIGINAL.response_id, ORIGINAL.created_seq, ORIGINAL.events) == ("resp_1", 0, 4)
    assert ORIGINAL.entries[0][1] == "response.created"


def test_an_exact_replay_is_clean_and_padding_may_differ() -> None:
    assert messages(QUEUED, DELTA, DONE) == []
    assert messages(QUEUED, {**DELTA, "obfuscation": "xyz1234"}, DONE) == []


@pytest.mark.parametrize(
    ("replay", "said"),
    [
        ((CREATED, QUEUED, DELTA, DONE), ["starts at sequence_number 0, not 1 (starting_after "
                                          "was ignored)", "repeats response.created"]),
        ((DELTA, DONE), ["starts at sequence_number 2, not 1 (events were lost)",
                         "1 event(s) of the original stream are not replayed, the first "
                         "sequence_number 1 (response.queued)"]),
        ((QUEUED, {**DELTA, "delta": "Ho"}, DONE), ["1 event(s) differ from the original "
                                                    "stream's, the first sequence_number 2"]),
        ((QUEUED, DELTA, DONE, {**DONE, "sequence_number": 4}), [
            "1 event(s) the original stream did not have, the first sequence_number 4"]),
        ((), ["held no events"]),
        (({**QUEUED, "sequence_number": None}, DELTA, DONE), [
            "starts at sequence_number None, not 1 (its first event has no sequence_number)",
            "1 event(s) of the original stream are not replayed"]),
    ],
    ids=["from-start", "one-lost", "altered", "extra", "empty", "unnumbered"],
)  # fmt: skip
def test_each_difference_is_told(replay: tuple[dict, ...], said: list[str]) -> None:
    found = messages(*replay)
    assert len(found) == len(said), found
    for message, words in zip(found, said, strict=True):
        assert words in message, (message, words)


def test_long_streams_are_compared_up_to_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(responses_resume, "MAX_EVENTS", 2)
    original = noted(stream(CREATED, QUEUED, DELTA, DONE))
    assert original.cut and len(original.entries) == 2
    replay = noted(stream({**QUEUED, "response": {"id": "other"}}, DELTA, DONE))
    (finding,) = compare(original, 0, replay)
    assert finding.message.endswith("(of the first 2 events of each stream)")


def test_a_replay_owes_no_response_created() -> None:
    model = model_for("responses", {"stream": True})
    model.replaying_after(0)  # type: ignore[attr-defined]
    model.feed(stream(QUEUED, {**DONE, "sequence_number": 2}))
    model.finish()
    rules = {f.rule for f in model.findings}
    assert "responses.created-first" not in rules | model.checked
    assert "responses.seq-dense" not in rules and "responses.seq-dense" in model.checked
    model = model_for("responses", {"stream": True})
    model.feed(stream(QUEUED, {**DONE, "sequence_number": 2}))
    model.finish()
    assert {"responses.created-first", "responses.seq-dense"} <= {f.rule for f in model.findings}


# -- the scenario against the reference server ---------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer(timing=Timing(ttft_ms=1, gap_ms=0.1)) as srv:
        yield srv
        assert srv.errors == []


def run(url: str, **target: object) -> object:
    runner = Runner(Target(url, DEFAULT_MODEL, DEFAULT_API_KEY, **target))  # type: ignore[arg-type]
    try:
        return runner.result(RESUME)
    finally:
        runner.close()


def test_a_clean_replay_passes_every_rule_it_can(server: ReferenceServer) -> None:
    result = run(server.base_url)
    assert result.skipped is None and result.findings == [] and result.crashes == []
    assert result.capture.method == "GET" and "starting_after=0" in result.capture.url
    assert outcome(result, "responses.resume").outcome == "pass"
    assert "responses.final-output" in result.checked  # the replay is judged as a stream
    assert "responses.created-first" not in result.checked


def test_a_replay_from_the_start_is_told(server: ReferenceServer) -> None:
    result = run(server.url_for(["responses-resume-from-start"]))
    assert {f.rule for f in result.findings} == {"responses.resume"}
    said = outcome(result, "responses.resume")
    assert said.outcome == "pass" and "starting_after was ignored" in said.message


def test_no_background_mode_or_no_replay_is_a_skip_with_the_reason(
    server: ReferenceServer,
) -> None:
    refused = run(server.base_url, extra_body={"store": False})
    assert refused.skipped is not None
    assert "refused the request with 400: it does not support background mode" in refused.skipped
    with ReferenceServer() as bare:
        del bare.app._routes["/v1/responses/{id}"]  # a server that keeps no responses
        result = run(bare.base_url)
    assert result.skipped is not None
    assert result.skipped.startswith("the endpoint does not replay background streams: GET")
    assert "answered 404" in result.skipped
