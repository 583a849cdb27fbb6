"""Where each API lives under an API root and how a request to it is addressed: the one
definition of the paths and headers the suite, the preflight and the load generator send."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["ANTHROPIC_VERSION", "APIS", "API_PATHS", "KEY_ENV", "request_headers"]

APIS: Final = ("openai", "anthropic", "responses")
API_PATHS: Final = {
    "openai": "/chat/completions",
    "anthropic": "/messages",
    "responses": "/responses",
}
ANTHROPIC_VERSION: Final = "2023-06-01"
# Where a key comes from when none is given: the first of these that is set.
KEY_ENV: Final = {
    "openai": ("STREAMPROOF_API_KEY", "OPENAI_API_KEY"),
    "anthropic": ("STREAMPROOF_API_KEY", "ANTHROPIC_API_KEY"),
    "responses": ("STREAMPROOF_API_KEY", "OPENAI_API_KEY"),
}


def request_headers(
    api: str,
    key: str | None,
    *,
    anthropic_auth: str = "x-api-key",
    auth_header: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    anthropic_version: str = ANTHROPIC_VERSION,
) -> dict[str, str]:
    """Credentials and protocol headers of one streaming request (the caller adds host,
    length and framing). The key goes where the API expects it — ``Authorization: Bearer``
    (OpenAI), ``x-api-key`` (Anthropic, or Bearer with ``anthropic_auth="bearer"``) — or raw
    in ``auth_header`` when given (Azure's ``api-key``). ``extra`` headers come last and
    win."""
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    if api == "anthropic":
        headers["anthropic-version"] = anthropic_version
    if key:
        if auth_header:
            headers[auth_header.lower()] = key
        elif api == "anthropic" and anthropic_auth != "bearer":
            headers["x-api-key"] = key
        else:
            headers["authorization"] = f"Bearer {key}"
    for name, value in extra:
        headers[name.lower()] = value
    return headers
