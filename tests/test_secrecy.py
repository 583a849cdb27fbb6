"""No form of the API key in anything streamproof writes, against a server that leaks it.

The reference server's ``leak-key`` fault echoes its key in debug headers, in the streamed
text, in error bodies and in a mid-stream error — as given, URL-encoded and base64, and
JSON-escaped on the wire. Each test runs one entry point against it (``streamproof run``,
``pytest conformance``, ``streamproof check``, ``streamproof load``, ``Capture.save``) and
asserts both halves: the leak reached what was written (its masked form is there, so the
masking was exercised) and no form of the key is anywhere in the files or the console.
The key holds characters that URL-encoding, JSON-escaping and HTML-escaping each change;
its forms are computed here with the standard library, apart from ``redact.py``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest

from streamproof.capture import Timeouts, exchange
from streamproof.redact import MASK, redact, redact_bytes, register_secret
from streamproof.server import DEFAULT_MODEL, ReferenceServer
from streamproof.server.faults.leak import LEAK_HEADERS

ROOT = Path(__file__).resolve().parents[1]
KEY = 'sk-leak/canary+"key"=\\0123456789'
LEAKED = "[debug: key=*** url=*** b64=***]"  # the server's leak, once masked
# the OpenAI faults, then the Anthropic and Responses ones: the leak, plus findings whose
# evidence (the transcript around an event, the error body of a 5xx) carries it into every
# report
FAULTS = ("leak-key,content-number,error-5xx,"
          "anthropic-leak-key,anthropic-delta-type-mismatch,anthropic-error-5xx,"
          "responses-leak-key,responses-delta-null,responses-error-5xx")  # fmt: skip


def key_forms(key: str = KEY) -> dict[str, str]:
    """What a server or a writer may turn the key into (for this key, some coincide)."""
    b64 = base64.b64encode(key.encode()).decode()
    json_once = json.dumps(key)[1:-1]
    return {
        "as given": key,
        "URL-encoded": quote(key, safe=""),
        "URL-encoded (path)": quote(key),
        "form-encoded": quote_plus(key),
        "base64": b64,
        "base64 unpadded": b64.rstrip("="),
        "URL-safe base64": base64.urlsafe_b64encode(key.encode()).decode(),
        "JSON-escaped": json_once,
        "JSON-escaped twice": json.dumps(json_once)[1:-1],
        "HTML-escaped": html.escape(key),
    }


def assert_secret_free(files: Iterable[Path], *outputs: str) -> None:
    """No form of the key in any of ``files`` nor in the console ``outputs``."""
    forms = {name: form.encode() for name, form in key_forms().items()}
    for path in files:
        data = path.read_bytes()
        for name, form in forms.items():
            assert form not in data, f"the key ({name}) leaked into {path}"
    for i, out in enumerate(outputs):
        for name, form in forms.items():
            assert form.decode() not in out, f"the key ({name}) leaked into output {i}"


def files_under(*dirs: Path) -> list[Path]:
    found = [p for d in dirs for p in d.rglob("*") if p.is_file()]
    assert found, f"nothing was written under {dirs}"
    return found


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


# -- the masker itself --------------------------------------------------------------------


def test_every_form_of_a_registered_key_is_masked() -> None:
    register_secret(KEY)
    for name, form in key_forms().items():
        text = f"before {form} after"
        assert redact(text) == f"before {MASK} after", name
        assert redact_bytes(text.encode()) == f"before {MASK} after".encode(), name


@pytest.mark.parametrize("prefix", [b"", b"u:", b"ab:", b"Bearer "])
def test_a_key_inside_longer_base64_is_masked_at_any_alignment(prefix: bytes) -> None:
    """A Basic credential or a base64 debug dump holds the key at any byte offset."""
    register_secret(KEY)
    for alphabet in (base64.b64encode, base64.urlsafe_b64encode):
        text = alphabet(prefix + KEY.encode() + b"|tail").decode()
        out = redact(text)
        assert MASK in out and len(out) < len(text) - len(KEY), (prefix, out)


def test_ordinary_text_and_short_secrets_are_left_alone() -> None:
    register_secret("abc")  # under the minimum: never masked (it would mask words)
    assert redact("abc cabbage, nothing secret here") == "abc cabbage, nothing secret here"


# -- what the server sends ------------------------------------------------------------------


def test_the_leaking_server_sends_the_key_in_every_form() -> None:
    """The fault is what the other tests rely on: it must really leak."""
    with ReferenceServer(api_key=KEY) as srv:
        url = srv.url_for(faults=["leak-key"]) + "/chat/completions"
        body = {"model": DEFAULT_MODEL, "stream": True, "messages": [{"role": "user",
                "content": "hi"}]}  # fmt: skip
        headers = {"authorization": f"Bearer {KEY}"}
        with httpx.Client(trust_env=False) as client:
            stream = client.post(url, json=body, headers=headers)
            error = client.post(url, json={**body, "model": "no-such-model"}, headers=headers)
    forms = key_forms()
    assert [stream.headers[h] for h in LEAK_HEADERS] == [
        forms["as given"],
        forms["URL-encoded"],
        forms["base64"],
    ]
    for where in (stream.text, error.text):
        for name in ("JSON-escaped", "URL-encoded", "base64"):
            assert forms[name] in where, name
    assert stream.text.count(forms["JSON-escaped"]) == 2  # the text and the mid-stream error
    assert error.status_code == 404 and error.headers[LEAK_HEADERS[0]] == KEY


def test_a_saved_capture_holds_no_key(tmp_path: Path) -> None:
    register_secret(KEY)
    with ReferenceServer(api_key=KEY) as srv, httpx.Client(trust_env=False) as client:
        cap = exchange(
            client, "POST", srv.url_for(faults=["leak-key"]) + "/chat/completions",
            headers={"authorization": f"Bearer {KEY}"},
            body={"model": DEFAULT_MODEL, "stream": True,
                  "messages": [{"role": "user", "content": "hi"}]},
            timeouts=Timeouts(5, 5, 5, 10),
        )  # fmt: skip
    sse, meta = cap.save(tmp_path / "capture")
    assert_secret_free([sse, meta])
    assert sse.read_text("utf-8").count(LEAKED) == 2
    assert {h: v for h, v in json.loads(meta.read_text("utf-8"))["response_headers"]
            if h in LEAK_HEADERS} == dict.fromkeys(LEAK_HEADERS, MASK)  # fmt: skip


# -- every entry point ------------------------------------------------------------------------


def test_run_writes_no_form_of_the_key(tmp_path: Path) -> None:
    """``streamproof run`` on the embedded server with the leak: reports, Allure results,
    the load run's files and the console."""
    done = run_cli(
        "streamproof", "run", "--api", "all", "--api-key", KEY, "--fault", FAULTS,
        "--report-dir", "out", "--alluredir", "allure", "--load-duration", "2",
        "--load-users", "2", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    assert_secret_free(files_under(out, tmp_path / "allure"), done.stdout, done.stderr)
    # the load run's files are searched above; that the leak really reaches requests.jsonl is
    # test_load_writes_no_form_of_the_key's (a 2 s load run inside `run` may record no request
    # on a busy machine, and a longer one stops early: every stream carries the leak's error)
    for name in ("compliance.json", "index.html", "junit.xml"):
        assert LEAKED in (out / name).read_text("utf-8"), name
    assert LEAKED in done.stdout
    attachments = [p.read_text("utf-8") for p in (tmp_path / "allure").glob("*-attachment*")]
    assert any(LEAKED in text for text in attachments)
    assert f"{LEAK_HEADERS[0]}: {MASK}" in (out / "index.html").read_text("utf-8")


def test_pytest_conformance_writes_no_form_of_the_key(tmp_path: Path) -> None:
    """The suite run with pytest itself, failures shown in full (-rA, -vv)."""
    done = run_cli(
        "pytest", str(ROOT / "conformance"), "--api", "all", "--api-key", KEY, "--fault",
        FAULTS, "--report-dir", "out", "--alluredir", "allure",
        "--junitxml", "junit-own.xml", "-rA", "-vv", "-p", "no:cacheprovider", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    files = [*files_under(tmp_path / "out", tmp_path / "allure"), tmp_path / "junit-own.xml"]
    assert_secret_free(files, done.stdout, done.stderr)
    assert LEAKED in done.stdout
    assert LEAKED in (tmp_path / "junit-own.xml").read_text("utf-8")


def _record(tmp_path: Path) -> Path:
    """A stream recorded as a user would with curl: raw bytes, key and all."""
    with ReferenceServer(api_key=KEY) as srv, httpx.Client(trust_env=False) as client:
        reply = client.post(
            srv.url_for(faults=["anthropic-leak-key", "anthropic-unterminated"]) + "/messages",
            json={"model": DEFAULT_MODEL, "stream": True, "max_tokens": 64,
                  "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        )  # fmt: skip
    path = tmp_path / "recorded.sse"
    path.write_bytes(reply.content)
    assert KEY.encode() in reply.content.replace(b"\\\\", b"\\").replace(b'\\"', b'"')
    return path


@pytest.mark.parametrize("how", ["--secret", "ANTHROPIC_API_KEY"])
def test_check_prints_no_form_of_the_key(tmp_path: Path, how: str) -> None:
    """A recording holds the key; ``check`` masks it when told (or when the environment
    holds it); the finding's excerpt is the leaking error event."""
    path = _record(tmp_path)
    given = ["--secret", KEY] if how == "--secret" else []
    env = {"ANTHROPIC_API_KEY": KEY} if how == "ANTHROPIC_API_KEY" else {}
    text = run_cli("streamproof", "check", str(path), "--api", "anthropic", *given,
                   cwd=tmp_path, env=env)  # fmt: skip
    as_json = run_cli("streamproof", "check", str(path), "--api", "anthropic", "--json",
                      *given, cwd=tmp_path, env=env)  # fmt: skip
    assert text.returncode == 1 and "sse.terminated" in text.stdout, text.stdout + text.stderr
    assert LEAKED in text.stdout
    assert_secret_free([], text.stdout, text.stderr, as_json.stdout, as_json.stderr)


def test_load_writes_no_form_of_the_key(tmp_path: Path) -> None:
    """``streamproof load`` against the leaking server: the run folder and the console."""
    with ReferenceServer(api_key=KEY) as srv:
        done = run_cli(
            "streamproof", "load", "--host", srv.url_for(faults=["leak-key"]), "--api-key",
            KEY, "--users", "2", "--duration", "2s", "--summary-json", "load/summary.json", "-v",
            cwd=tmp_path,
        )  # fmt: skip
    files = files_under(tmp_path / "load")
    assert_secret_free(files, done.stdout, done.stderr)
    requests = next(p for p in files if p.name == "requests.jsonl").read_text("utf-8")
    assert LEAKED in requests
