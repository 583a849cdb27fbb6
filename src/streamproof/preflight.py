"""The setup, checked before any rule is judged: one request per API, and the model.

One place for ``streamproof run``, ``pytest conformance`` and ``streamproof load``: a setup
mistake — no model, a key the endpoint refuses, a base URL without ``/v1``, a server that is
no LLM API — is a :class:`SetupError` with one line and a hint, never the endpoint's failure.
An endpoint that cannot be reached at all is :class:`Unreachable` (the transport rules name
it). Everything else, a 5xx or a malformed stream included, is for the rules to judge.

Without a model, ``GET {base}/models`` names one (the first it lists).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import httpx
import orjson

from .capture import Timeouts, tls_context
from .endpoints import API_PATHS
from .redact import redact

__all__ = ["SetupError", "Unreachable", "discover_model", "probe", "probe_body"]
API_NAMES: Final = {
    "openai": "OpenAI-compatible",
    "anthropic": "Anthropic-compatible",
    "responses": "OpenAI Responses-compatible",
}
KEY_HINT: Final = {
    "openai": "--api-key / OPENAI_API_KEY",
    "anthropic": "--api-key / ANTHROPIC_API_KEY (and --anthropic-auth)",
    "responses": "--api-key / OPENAI_API_KEY",
}
_NOT_SERVED: Final = (404, 405, 501)
_BODY_PEEK: Final = 4096
# A connection the server broke is tried again this many times, as the official SDKs do
# (max_retries=2): one dropped connection of a flaky server is no setup mistake.
_RETRIES: Final = 2
_T = TypeVar("_T")


class SetupError(Exception):
    """A setup mistake: one line, with a hint (a usage error, exit 2 / pytest's 4)."""


class Unreachable(Exception):
    """Nothing answered: the connection failed, or no response headers came in time (the
    run ends, exit 2). ``rule`` is the transport rule that names it."""

    def __init__(self, message: str, rule: str = "transport.connect") -> None:
        super().__init__(message)
        self.rule = rule


def _unreachable(where: str, exc: httpx.HTTPError, timeouts: Timeouts) -> Unreachable:
    if isinstance(exc, httpx.ReadTimeout):
        waited = min(timeouts.first_byte, timeouts.total)
        return Unreachable(
            f"{where} sent no response headers within {waited:g} s", "transport.first-byte"
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return Unreachable(f"cannot reach {where}: no connection within {timeouts.connect:g} s")
    if isinstance(exc, httpx.ConnectError):
        return Unreachable(f"cannot reach {where}: {exc}")
    return Unreachable(f"{where} broke the connection: {type(exc).__name__}: {exc}",
                       "transport.broken")  # fmt: skip


def _send(call: Callable[[], _T], where: str, timeouts: Timeouts) -> _T:
    """``call()``, again after a broken connection (up to :data:`_RETRIES` times); a
    refused connection or a timeout is final at once."""
    for attempt in range(_RETRIES + 1):
        try:
            return call()
        except httpx.HTTPError as exc:
            final = isinstance(exc, httpx.TimeoutException | httpx.ConnectError)
            if final or attempt == _RETRIES or not isinstance(exc, httpx.TransportError):
                raise _unreachable(where, exc, timeouts) from None
    raise AssertionError("unreachable")  # the loop returns or raises


def _client(timeouts: Timeouts) -> httpx.Client:
    timeout = httpx.Timeout(
        connect=timeouts.connect,
        read=min(timeouts.first_byte, timeouts.total),
        write=timeouts.connect,
        pool=timeouts.connect,
    )
    return httpx.Client(
        trust_env=False, verify=tls_context(), timeout=timeout, follow_redirects=False
    )


def discover_model(base_url: str, headers: dict[str, str], timeouts: Timeouts) -> str:
    """The first model ``GET {base}/models`` lists; a :class:`SetupError` says why not."""
    url = base_url.rstrip("/") + "/models"
    where = redact(url)
    with _client(timeouts) as client:
        response = _send(lambda: client.get(url, headers=headers), where, timeouts)
    if response.status_code in (401, 403):
        raise SetupError(
            f"GET {where} was refused ({response.status_code}): check the key, or name the "
            "model with --model"
        )
    if response.status_code == 404 and not base_url.rstrip("/").endswith("/v1"):
        raise SetupError(
            f"no model list at {where} (404): does the base URL end in /v1? (or name the "
            "model with --model)"
        )
    try:
        data = orjson.loads(response.content)["data"]
        model = next(m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str))
    except (orjson.JSONDecodeError, KeyError, TypeError, StopIteration):
        raise SetupError(
            f"no --model given, and GET {where} lists none ({response.status_code}): name the "
            "model with --model"
        ) from None
    return model


def probe(
    base_url: str,
    apis: Iterable[str],
    headers_for: Any,
    body_for: Any,
    *,
    timeouts: Timeouts,
    explicit: bool,
    given_key: bool,
) -> dict[str, str]:
    """One short streaming request per API. Returns the APIs left out, each with why (only
    when ``explicit`` is False: with ``--api all`` an endpoint may serve one API of two).
    ``headers_for(api)`` and ``body_for(api)`` build the request as the suite will send it."""
    apis = tuple(apis)
    left_out: dict[str, str] = {}
    with _client(timeouts) as client:
        for api in apis:
            url = base_url.rstrip("/") + API_PATHS[api]
            why = _answer(client, api, url, headers_for(api), body_for(api), given_key, timeouts)
            if why is not None:
                if explicit or len(apis) == 1:
                    raise SetupError(why)
                left_out[api] = why
    if len(left_out) == len(apis):
        raise SetupError(next(iter(left_out.values())))  # the first API's reason
    return left_out


def _answer(
    client: httpx.Client,
    api: str,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    given_key: bool,
    timeouts: Timeouts,
) -> str | None:
    """None when the endpoint serves this API (whatever the rules will say of its stream);
    else why it does not: the line of a :class:`SetupError` (unless the API is left out)."""
    where = redact(url)
    url_has_v1 = "/v1/" in url

    def send() -> tuple[int, str, bytes]:
        with client.stream("POST", url, headers=headers, json=body) as response:
            media = response.headers.get("content-type", "").split(";")[0].strip().lower()
            peek = b""
            if not response.is_success:  # a stream is the rules' business: not read here
                for piece in response.iter_raw():
                    peek += piece
                    if len(peek) >= _BODY_PEEK:
                        break
            return response.status_code, media, peek

    status, media, peek = _send(send, where, timeouts)
    if status in (401, 403):
        if given_key:
            return f"the endpoint refused the key ({status}): check {KEY_HINT[api]}"
        return f"the endpoint wants a key ({status}): give {KEY_HINT[api]}"
    message = _api_error(peek)
    # an HTML page where a stream or an API error belongs: a captive portal, a web server
    # (a 5xx page is a gateway's failure: the rules judge it)
    if media == "text/html" and message is None and (status < 500 or status in _NOT_SERVED):
        return f"{where} does not look like an {API_NAMES[api]} API (got {status} {media})"
    if status in _NOT_SERVED and (message is None or not url_has_v1):
        said = f": {message[:120]}" if message else ""
        return f"no API at {where} ({status}{said}): does the base URL end in /v1?"
    model = body.get("model")
    if message is not None and 400 <= status < 500 and model and "model" in message.lower():
        return (
            f"the endpoint does not serve the model {model!r} ({status}: {message[:120]}): "
            "check --model (GET /models lists the ones it serves)"
        )
    if status in _NOT_SERVED:
        return f"no API at {where} ({status}: {message[:120] if message else ''})"
    return None


def _api_error(body: bytes) -> str | None:
    """The message of an OpenAI- or Anthropic-shaped error body, else None (an HTML page,
    a framework's ``{"detail": "Not Found"}``)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = value.get("error") if isinstance(value, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


def probe_body(api: str, model: str) -> dict[str, Any]:
    """A short streaming request of ``api``: enough to see the endpoint answer, cheap on a
    real model."""
    if api == "responses":
        return {"model": model, "input": "Say OK.", "max_output_tokens": 16, "stream": True}
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say OK."}],
        "max_tokens": 16,
        "stream": True,
    }
