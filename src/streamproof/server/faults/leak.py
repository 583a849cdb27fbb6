"""A server that leaks the API key: the edits behind each API's ``leak-key`` fault.

Real servers echo keys by accident (a debug header, an error message quoting the request, a
proxy's diagnostic event). The fault echoes the key the server was started with (or, with
no key, the one presented) in every form a careless server might use — as given,
URL-encoded, base64 — in response headers, in the content of the stream, in error bodies and
in a mid-stream error; inside JSON the wire carries it JSON-escaped. The secrecy tests run
the suite, the checker and the load test against it and search everything they write.

The encodings are written here with the standard library on purpose, apart from
``redact.py``: a test whose server and masker shared an encoder could not catch its bug.
"""

from __future__ import annotations

import base64
from contextvars import ContextVar
from typing import Final
from urllib.parse import quote

import orjson

from ..endpoint import Context, Reply, Request

__all__ = ["LEAK_HEADERS", "leak_in_reply", "leak_text", "remember_key"]

# Header names with no secret-like word in them: their values must be masked for what they
# hold, not for their name.
LEAK_HEADERS: Final = ("x-debug-echo", "x-debug-echo-url", "x-debug-echo-b64")
# The key of the request being planned (request and reply edits of one request run in one
# synchronous App.plan call, and the chunk edits inside it, so this never crosses requests).
_KEY: ContextVar[str] = ContextVar("streamproof_leaked_key", default="")


def remember_key(req: Request, ctx: Context) -> Request:
    """The request edit: note the key to leak (the server's, else the one presented)."""
    presented = req.headers.get("x-api-key") or req.headers.get("authorization", "")
    _KEY.set(ctx.api_key or presented.removeprefix("Bearer ").strip())
    return req


def _forms(key: str) -> tuple[str, str, str]:
    return key, quote(key, safe=""), base64.b64encode(key.encode()).decode()


def leak_text() -> str:
    """The key in its three forms, for a content delta or an error message."""
    plain, url, b64 = _forms(_KEY.get())
    return f" [debug: key={plain} url={url} b64={b64}]"


def leak_in_reply(reply: Reply) -> Reply:
    """The reply edit: the key in debug headers; an error body's message quoting it."""
    for name, value in zip(LEAK_HEADERS, _forms(_KEY.get()), strict=True):
        reply.set_header(name, value)
    if reply.events is None and reply.status >= 400:
        try:
            body = orjson.loads(reply.body)
            body["error"]["message"] += leak_text()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return reply
        reply.body = orjson.dumps(body)
    return reply
