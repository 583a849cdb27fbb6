"""Keeping API keys out of everything the suite writes.

A key is never written: credential headers are dropped or masked at capture time, and every
writer passes its text through :func:`redact`, which replaces each registered secret (and its
common encodings) wherever a server may have echoed it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping

__all__ = [
    "CREDENTIAL_HEADERS",
    "MASK",
    "is_secret_name",
    "looks_like_key",
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
# Header and option names whose values are secrets (Azure's api-key, x-goog-api-key, a
# gateway's x-auth-token or x-portkey-api-key ...): matched as words of the name.
_SECRET_NAME = re.compile(r"(key|token|auth|secret|password|passwd|cookie|signature|credential)")

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


# What API keys look like (OpenAI sk-/sk-proj-, Anthropic sk-ant-, xAI xai-, Groq gsk_,
# Hugging Face hf_, Google AIza...): a value of this shape is masked wherever it was given.
_KEY_SHAPE = re.compile(r"(?:sk|xai|gsk|hf|pk|rk)[-_][A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{30,}")


def looks_like_key(value: str) -> bool:
    """Whether a value has the shape of an API key (masked even where no key belongs)."""
    return bool(_KEY_SHAPE.fullmatch(value.strip()))


def is_secret_name(name: str) -> bool:
    """Whether a header or option of this name carries a secret (its value is masked)."""
    return name.lower() in CREDENTIAL_HEADERS or bool(_SECRET_NAME.search(name.lower()))


def mask_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], *, drop: bool = False
) -> list[tuple[str, str]]:
    """Header pairs with credential values masked (or the headers dropped when ``drop``)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        if is_secret_name(name):
            if not drop:
                out.append((name, MASK))
        else:
            out.append((name, redact(value)))
    return out
