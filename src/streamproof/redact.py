"""Keeping API keys out of everything the suite writes.

A key is never written: credential headers are dropped or masked at capture time, and every
writer passes its text through :func:`redact`, which replaces each registered secret (and its
common encodings) wherever a server may have echoed it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

__all__ = [
    "CREDENTIAL_HEADERS",
    "MASK",
    "mask_headers",
    "redact",
    "redact_bytes",
    "register_secret",
]

MASK = "***"
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie", "set-cookie"}
)
_MIN_SECRET = 4  # shorter strings would mask ordinary words

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret for the life of the process (keys are few and long-lived)."""
    if secret and len(secret) >= _MIN_SECRET:
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by the mask."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_bytes(data: bytes) -> bytes:
    for secret in _secrets:
        raw = secret.encode()
        if raw in data:
            data = data.replace(raw, MASK.encode())
    return data


def mask_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], *, drop: bool = False
) -> list[tuple[str, str]]:
    """Header pairs with credential values masked (or the headers dropped when ``drop``)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        if name.lower() in CREDENTIAL_HEADERS:
            if not drop:
                out.append((name, MASK))
        else:
            out.append((name, redact(value)))
    return out
