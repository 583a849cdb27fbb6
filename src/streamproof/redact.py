"""Keeping API keys out of everything the suite writes.

A key is never written: credential headers are dropped or masked at capture time, and every
writer passes its text through :func:`redact`, which replaces each registered secret wherever a
server may have echoed it: as given, URL-encoded (``quote``, ``quote_plus``), JSON-escaped (a
solidus escaped or not), HTML-escaped, base64 (standard and URL-safe, at any alignment inside a
longer base64 text such as a Basic credential), and each of these JSON-escaped once or twice (a
JSON report quoting an error body). A key streamed a few characters per event is beyond a
substring match of the events; any text assembled from them is matched when written.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

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

_B64_ALIGNED_MIN = 12  # a shorter secret's base64 is matched only whole (else ordinary text)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_pattern_bytes: re.Pattern[bytes] | None = None


def _base64_forms(secret: bytes) -> set[str]:
    """The base64 text of ``secret`` at each of the three byte alignments inside a longer
    input: only the characters that depend on the secret's bytes alone (standard and URL-safe
    alphabets). Too short a secret: its whole encoding only."""
    whole = base64.b64encode(secret).decode()
    forms = {whole, whole.rstrip("=")}
    if len(secret) >= _B64_ALIGNED_MIN:
        for offset in range(3):
            text = base64.b64encode(b"\0" * offset + secret).decode()
            first = -(-8 * offset // 6)  # the first character made of the secret's bits alone
            last = 8 * (offset + len(secret)) // 6  # one past the last such character
            forms.add(text[first:last])
    return forms | {f.replace("+", "-").replace("/", "_") for f in forms}


def _json_escaped(text: str) -> set[str]:
    inner = json.dumps(text)[1:-1]
    return {inner, inner.replace("/", "\\/"), json.dumps(text, ensure_ascii=False)[1:-1]}


def _forms(secret: str) -> set[str]:
    """Every text a server or a writer may turn ``secret`` into (see the module docstring)."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms |= {html.escape(secret), html.escape(secret, quote=False)}
    forms |= _base64_forms(secret.encode())
    for _ in range(2):  # escaped, and escaped again
        forms |= {e for form in forms for e in _json_escaped(form)}
    return {f for f in forms if len(f) >= _MIN_SECRET}


def _compile() -> None:
    """One pattern over every form of every secret, longest first (a form that contains
    another is masked whole)."""
    global _pattern, _pattern_bytes
    forms = sorted({f for s in _secrets for f in _forms(s)}, key=len, reverse=True)
    _pattern = re.compile("|".join(map(re.escape, forms)))
    _pattern_bytes = re.compile(b"|".join(re.escape(f.encode()) for f in forms))


def register_secret(secret: str | None) -> None:
    """Remember a secret for the life of the process (keys are few and long-lived)."""
    if secret and len(secret) >= _MIN_SECRET:
        with _lock:
            if secret not in _secrets:
                _secrets.add(secret)
                _compile()


def redact(text: str) -> str:
    """``text`` with every registered secret, in any of its forms, replaced by the mask."""
    pattern = _pattern
    return text if pattern is None else pattern.sub(MASK, text)


def redact_bytes(data: bytes) -> bytes:
    """:func:`redact` for bytes (a saved response body)."""
    pattern = _pattern_bytes
    return data if pattern is None else pattern.sub(MASK.encode(), data)


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
