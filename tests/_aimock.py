"""aimock (npm ``@copilotkit/aimock``), a real third-party mock of the OpenAI chat-completions and
Anthropic messages streaming APIs, as a peer for the project's tests: where it is installed, the
fixtures it answers from, and a bounded start and a sure stop on 127.0.0.1.

It is located from ``STREAMPROOF_AIMOCK_DIR`` (an npm prefix, where ``.ci/run`` installs it);
without that variable the pinned version is installed once with npm into
``~/.cache/streamproof/aimock-<version>`` and reused. No Node, no npm or a failed install fails
the tests that need it, with one line saying how to install it; they are never skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NoReturn

import httpx
import pytest

from streamproof.scenarios import PROMPT_TOOL, PROMPT_TOOLS

AIMOCK_PACKAGE: Final = "@copilotkit/aimock"
AIMOCK_VERSION: Final = "1.43.0"  # .ci/run reads the pin from this line
ENV_DIR: Final = "STREAMPROOF_AIMOCK_DIR"
NODE_MIN: Final = (20, 15)  # package.json "engines"
INSTALL_TIMEOUT_S: Final = 300.0
START_TIMEOUT_S: Final = 20.0
STOP_TIMEOUT_S: Final = 5.0
HOW_TO_INSTALL: Final = (
    f"install it with `npm install --prefix DIR {AIMOCK_PACKAGE}@{AIMOCK_VERSION}` "
    f"(Node >= {NODE_MIN[0]}.{NODE_MIN[1]}) and set {ENV_DIR}=DIR"
)

TEXT_REPLY: Final = "Hello from aimock. The lighthouse keeper climbed the stairs every evening."


def _fail(reason: str) -> NoReturn:
    """Fail (never skip) the calling test or fixture with one line."""
    pytest.fail(f"aimock {AIMOCK_VERSION} unavailable: {reason}; {HOW_TO_INSTALL}", pytrace=False)


def package_dir(prefix: Path) -> Path:
    return prefix / "node_modules" / "@copilotkit" / "aimock"


def _manifest(prefix: Path) -> dict[str, Any] | None:
    try:
        return json.loads((package_dir(prefix) / "package.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None


def installed_version(prefix: Path) -> str | None:
    manifest = _manifest(prefix)
    return manifest.get("version") if manifest else None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streamproof" / f"aimock-{AIMOCK_VERSION}"


def _npm_reason(out: bytes, status: int) -> str:
    """npm's error code and its first telling line, e.g. ``code ETARGET: notarget No matching
    version found for ...``."""
    lines = [
        ln.removeprefix("npm error").strip()
        for ln in out.decode(errors="replace").splitlines()
        if ln.startswith("npm error") and "complete log of this run" not in ln
    ]
    lines = [ln for ln in lines if ln]
    if not lines:
        return f"exit status {status}"
    detail = next((ln for ln in lines[1:] if len(ln) > 30), "")
    return f"{lines[0]}: {detail}"[:240] if detail else lines[0][:240]


_outcome: dict[str, str] = {}  # "failed": why aimock_prefix failed, once per session


def _install(prefix: Path) -> None:
    """``npm install`` the pinned version into a staging folder beside ``prefix``, then move it
    into place, so that an interrupted install never leaves a half folder that looks done."""
    npm = shutil.which("npm")
    if npm is None:
        _fail("npm is not on PATH")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}-", dir=prefix.parent))
    cmd = [
        npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund",
        "--loglevel", "error", f"{AIMOCK_PACKAGE}@{AIMOCK_VERSION}",
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            _fail(f"`npm install` ran past {INSTALL_TIMEOUT_S:.0f} s")
        if proc.returncode != 0 or installed_version(staging) != AIMOCK_VERSION:
            _fail(f"`npm install` failed ({_npm_reason(out, proc.returncode)})")
        with contextlib.suppress(OSError):  # another run may have put it there first
            staging.rename(prefix)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def aimock_prefix() -> Path:
    """The npm prefix holding the pinned aimock: ``$STREAMPROOF_AIMOCK_DIR``, else the cache
    (installed on first use). A failure is remembered, so that npm is not run again for the
    next fixture that asks."""
    if "failed" in _outcome:
        pytest.fail(str(_outcome["failed"]), pytrace=False)
    try:
        return _locate()
    except pytest.fail.Exception as exc:
        _outcome["failed"] = str(exc)
        raise


def _locate() -> Path:
    given = os.environ.get(ENV_DIR)
    prefix = Path(given) if given else cache_dir()
    version = installed_version(prefix)
    if version == AIMOCK_VERSION:
        return prefix
    if given:
        found = f"aimock {version}" if version else "no aimock"
        _fail(f"{ENV_DIR}={given} holds {found}")
    _install(prefix)
    if installed_version(prefix) != AIMOCK_VERSION:
        _fail(f"the install into {prefix} left no aimock {AIMOCK_VERSION}")
    return prefix


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        _fail("node is not on PATH")
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
        have = tuple(int(part) for part in out.strip().lstrip("v").split(".")[:2])
    except (OSError, subprocess.SubprocessError, ValueError):
        _fail("`node --version` did not answer")
    if have < NODE_MIN:
        _fail(f"node {out.strip()} is older than {NODE_MIN[0]}.{NODE_MIN[1]}")
    return node


def cli_script(prefix: Path) -> Path:
    """The flag-driven command line (package.json bin ``llmock``; the ``aimock`` bin only
    takes ``--config``)."""
    manifest = _manifest(prefix) or {}
    script = package_dir(prefix) / manifest.get("bin", {}).get("llmock", "dist/cli.js")
    if not script.is_file():
        _fail(f"{script} is missing")
    return script


def write_fixtures(path: Path) -> Path:
    """One fixtures file for both APIs (aimock matches on the request, whatever its wire
    format): the suite's tool prompts get tool calls, everything else a text reply.
    ``userMessage`` is a substring match on the last user message; ``{}`` is the catch-all and
    must come last. No ``model`` match, so any model name is served."""
    fixtures = [
        {
            "match": {"userMessage": PROMPT_TOOL},
            "response": {"toolCalls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        },
        {
            "match": {"userMessage": PROMPT_TOOLS},
            "response": {
                "toolCalls": [
                    {"name": "get_weather", "arguments": {"city": "Paris"}},
                    {"name": "get_time", "arguments": {"city": "Tokyo"}},
                ]
            },
        },
        {"match": {}, "response": {"content": TEXT_REPLY}},
    ]
    path.write_text(json.dumps({"fixtures": fixtures}, indent=2), "utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(prefix: Path, port: int, fixtures: Path, disconnect: float | None = None) -> list[str]:
    cmd = [
        _node(), str(cli_script(prefix)),
        "--host", "127.0.0.1", "--port", str(port),
        "--fixtures", str(fixtures), "--log-level", "warn",
    ]  # fmt: skip
    if disconnect is not None:
        cmd += ["--chaos-disconnect", str(disconnect)]
    return cmd


def _tail(log: Path, limit: int = 2000) -> str:
    try:
        return log.read_text("utf-8", errors="replace")[-limit:]
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            pass
        proc.kill()
    proc.wait(STOP_TIMEOUT_S)


def _wait_until_answers(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"aimock exited with {proc.returncode}:\n{_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    return
            time.sleep(0.1)
    raise AssertionError(f"aimock did not answer within {START_TIMEOUT_S:.0f} s:\n{_tail(log)}")


def plain_client_cuts(base_url: str, count: int, *, budget_s: float = 20.0) -> dict[str, int]:
    """What a plain client sees: ``count`` sequential streaming POSTs on one keep-alive
    connection (raw sockets, no retry of any kind; a new connection only after a cut). Counts
    streams that completed, were cut before any response byte, or were cut after some."""
    url = httpx.URL(base_url)
    body = json.dumps(
        {"model": "aimock", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    ).encode()
    head = (
        f"POST {url.path.rstrip('/')}/chat/completions HTTP/1.1\r\nhost: {url.host}:{url.port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    seen = {"complete": 0, "cut_before_any_byte": 0, "cut_after_bytes": 0}
    deadline = time.monotonic() + budget_s
    sock: socket.socket | None = None
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            if sock is None:
                sock = socket.create_connection((url.host, url.port), timeout=5.0)
            sock.sendall(head + body)
            data = b""
            while not data.endswith(b"\r\n0\r\n\r\n"):  # the last chunk of the chunked body
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                data += chunk
            if data.endswith(b"\r\n0\r\n\r\n") and b"data: [DONE]" in data:
                seen["complete"] += 1
                continue
            seen["cut_after_bytes" if data else "cut_before_any_byte"] += 1
            sock.close()
            sock = None
    finally:
        if sock is not None:
            sock.close()
    return seen


@contextlib.contextmanager
def running_aimock(workdir: Path, *, disconnect: float | None = None) -> Iterator[str]:
    """Start aimock on a free 127.0.0.1 port, wait until it answers, yield its API root
    (``http://127.0.0.1:PORT/v1``: both APIs live under it), and always stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = aimock_prefix()
    fixtures = write_fixtures(workdir / "aimock-fixtures.json")
    port = free_port()
    log = workdir / "aimock.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command(prefix, port, fixtures, disconnect),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_answers(proc, port, log)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)
