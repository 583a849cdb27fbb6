"""Decoder + stream model (every check attached) throughput on a large synthetic stream,
against the peers in one run.

    python benchmarks/bench_decode.py [--chunks 200000] [--read 4096] [--repeat 3]

Peers (neither validates anything): httpx-sse's decoder + ``json.loads``, and the official
``openai`` SDK's own SSE decoder + ``json.loads``. Each contender gets the same body in the same
reads; the best of ``--repeat`` runs is reported, with the ratio to streamproof's full
validation (decoder + JSON Schema + state machine).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator

from streamproof.engine import model_for
from streamproof.sse import SSEDecoder


def openai_body(chunks: int) -> bytes:
    head = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_eb9dce56a8",
    }

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        body = {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    parts = [chunk({"role": "assistant", "content": "", "refusal": None})]
    token = chunk({"content": " token"})
    parts += [token] * (chunks - 2)
    parts += [chunk({}, "stop"), b"data: [DONE]\n\n"]
    return b"".join(parts)


def anthropic_body(chunks: int) -> bytes:
    def ev(name: str, data: dict) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

    start = {
        "type": "message_start",
        "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-5",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    }
    delta = ev(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": " token"},
        },
    )
    parts = [
        ev("message_start", start),
        ev(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        *([delta] * (chunks - 5)),
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ev(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks - 5},
            },
        ),
        ev("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(parts)


def responses_body(chunks: int) -> bytes:
    """An OpenAI Responses stream as the API sends it since 2025-09 (every event named, a
    sequence number on each, ``logprobs: []`` on the text events)."""
    seq = iter(range(chunks + 10))

    def ev(data: dict) -> bytes:
        data = {"type": data["type"], "sequence_number": next(seq), **data}
        return (
            f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        )

    item_id = "msg_0d4e5c1b6b0d5f2a0068c1e2f3a4b5c6d7e8f9a0b1c2d3e4"
    response = {
        "id": "resp_0d4e5c1b6b0d5f2a0068c1e2f3a4b5c6d7e8f9a0b1c2d3e5",
        "object": "response",
        "created_at": 1757000000,
        "status": "in_progress",
        "model": "gpt-5-2025-08-07",
        "output": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
    }
    deltas = chunks - 8
    text = " token" * deltas
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    where = {"item_id": item_id, "output_index": 0}
    item = {
        "id": item_id,
        "type": "message",
        "status": "in_progress",
        "content": [],
        "role": "assistant",
    }
    done_item = {**item, "status": "completed", "content": [{**part, "text": text}]}
    usage = {
        "input_tokens": 25,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": deltas,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 25 + deltas,
    }
    parts = [
        ev({"type": "response.created", "response": response}),
        ev({"type": "response.in_progress", "response": response}),
        ev({"type": "response.output_item.added", "output_index": 0, "item": item}),
        ev({"type": "response.content_part.added", **where, "content_index": 0, "part": part}),
        *(
            ev(
                {
                    "type": "response.output_text.delta",
                    **where,
                    "content_index": 0,
                    "delta": " token",
                    "logprobs": [],
                }
            )
            for _ in range(deltas)
        ),
        ev(
            {
                "type": "response.output_text.done",
                **where,
                "content_index": 0,
                "text": text,
                "logprobs": [],
            }
        ),
        ev(
            {
                "type": "response.content_part.done",
                **where,
                "content_index": 0,
                "part": {**part, "text": text},
            }
        ),
        ev({"type": "response.output_item.done", "output_index": 0, "item": done_item}),
        ev(
            {
                "type": "response.completed",
                "response": {
                    **response,
                    "status": "completed",
                    "output": [done_item],
                    "usage": usage,
                },
            }
        ),
    ]
    return b"".join(parts)


BODIES: dict[str, Callable[[int], bytes]] = {
    "openai": openai_body,
    "anthropic": anthropic_body,
    "responses": responses_body,
}


def reads(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def streamproof_decode(pieces: list[bytes], api: str) -> int:
    decoder = SSEDecoder()
    n = 0
    for piece in pieces:
        n += len(decoder.feed(piece, 1))
    decoder.finish()
    return n


def streamproof_validate(pieces: list[bytes], api: str) -> int:
    decoder = SSEDecoder()
    validator = model_for(api, {"stream": True})
    n = 0
    for piece in pieces:
        events = decoder.feed(piece, 1)
        validator.feed(events)
        n += len(events)
    decoder.finish()
    validator.finish()
    assert not [f for f in validator.findings if f.level == "MUST"], validator.findings[:3]
    return n


def httpx_sse_json(pieces: list[bytes], api: str) -> int:
    from httpx_sse._decoders import SSEDecoder as Decoder
    from httpx_sse._decoders import SSELineDecoder

    lines, decoder, n = SSELineDecoder(), Decoder(), 0
    text = __import__("codecs").getincrementaldecoder("utf-8")()
    for piece in pieces:
        for line in lines.decode(text.decode(piece)):
            event = decoder.decode(line)
            if event is not None:
                if event.data != "[DONE]":
                    json.loads(event.data)
                n += 1
    return n


def openai_sdk_json(pieces: list[bytes], api: str) -> int:
    from openai._streaming import SSEDecoder as Decoder

    def source() -> Iterator[bytes]:
        yield from pieces

    n = 0
    for event in Decoder().iter_bytes(source()):
        if event.data != "[DONE]":
            json.loads(event.data)
        n += 1
    return n


CONTENDERS: dict[str, Callable[[list[bytes], str], int]] = {
    "streamproof decoder + full validation": streamproof_validate,
    "streamproof decoder only": streamproof_decode,
    "httpx-sse + json.loads (no validation)": httpx_sse_json,
    "openai SDK decoder + json.loads (no validation)": openai_sdk_json,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--read", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--api", choices=(*BODIES, "all"), default="all")
    args = parser.parse_args()
    apis = tuple(BODIES) if args.api == "all" else (args.api,)
    for api in apis:
        body = BODIES[api](args.chunks)
        pieces = reads(body, args.read)
        print(
            f"\n{api}: {args.chunks} events, {len(body) / 1e6:.1f} MB, {len(pieces)} reads "
            f"of {args.read} B"
        )
        results = {}
        for name, fn in CONTENDERS.items():
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                n = fn(pieces, api)
                best = min(best, time.perf_counter() - t0)
            results[name] = (n / best, len(body) / best / 1e6)
        ours = results["streamproof decoder + full validation"][0]
        print(f"{'contender':50} {'events/s':>12} {'MB/s':>8} {'vs full validation':>20}")
        for name, (eps, mbs) in results.items():
            print(f"{name:50} {eps:12,.0f} {mbs:8.1f} {eps / ours:19.2f}x")


if __name__ == "__main__":
    main()
