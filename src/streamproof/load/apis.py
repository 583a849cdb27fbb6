"""The request the load generator sends to each API. What a stream's events mean — content
events, usage, the end — is the API's stream model's (``engine.model_for``), run bare or with
every check (``--validate on``)."""

from __future__ import annotations

from typing import Any

from ..endpoints import ANTHROPIC_VERSION, API_PATHS, APIS, request_headers

__all__ = [
    "ANTHROPIC_VERSION",
    "APIS",
    "API_PATHS",
    "build_request",
    "request_headers",
]


def build_request(
    api: str,
    model: str,
    prompt: str,
    max_tokens: int,
    *,
    include_usage: bool = True,
) -> dict[str, Any]:
    """The streaming request body for one prompt. ``include_usage`` is OpenAI chat's
    ``stream_options``; Responses has none (its terminal event carries the usage)."""
    if api == "responses":
        return {"model": model, "input": prompt, "max_output_tokens": max_tokens, "stream": True}
    messages = [{"role": "user", "content": prompt}]
    if api == "anthropic":
        return {"model": model, "max_tokens": max_tokens, "messages": messages, "stream": True}
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "stream": True,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return body
