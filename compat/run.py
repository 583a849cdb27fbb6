"""The compatibility matrix: streamproof against real third-party servers, every finding classified.

For each server of ``compat/servers.toml`` it installs the pinned version from the package
registries into a cache folder (once), starts it on 127.0.0.1 with the configuration kept
here, runs ``streamproof run`` (suite + a short load run) for each API it serves, stops it,
and keeps the figures in ``compat/results/<server>.json``; then it writes COMPATIBILITY.md
from every result and ``compat/classification.toml``. Not part of CI (installs take minutes,
llama.cpp's build ~10); run by hand and commit its output:

    python compat/run.py                     # every server
    python compat/run.py --only aimock       # one (the others' results are kept)
    python compat/run.py --render            # only rewrite COMPATIBILITY.md

A finding with no classification makes the run exit 1: classify it (deviation, suite
limitation, or false positive — then fix the rule) before committing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import httpx

COMPAT: Final = Path(__file__).resolve().parent
ROOT: Final = COMPAT.parent
RESULTS: Final = COMPAT / "results"
MATRIX: Final = ROOT / "COMPATIBILITY.md"
CLASSES: Final = ("deviation", "suite limitation", "false positive")
START_TIMEOUT_S: Final = 120.0
RUN_TIMEOUT_S: Final = 900.0
INSTALL_TIMEOUT_S: Final = 1800.0
LOAD_ARGS: Final = ("--load-duration", "15s", "--load-users", "4")
# the llama.cpp build: server only, no web UI, no OpenSSL, no OpenMP (the recipe)
CMAKE_FLAGS: Final = (
    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF", "-DGGML_OPENMP=OFF", "-DGGML_NATIVE=ON",
)  # fmt: skip


def load_servers(path: Path = COMPAT / "servers.toml") -> dict[str, dict[str, Any]]:
    return tomllib.loads(path.read_text("utf-8"))


def load_classification(path: Path = COMPAT / "classification.toml") -> dict[str, Any]:
    """``{server: {api: {rule: {"class": ..., "why": ...}}}}``."""
    return tomllib.loads(path.read_text("utf-8"))


# -- install -----------------------------------------------------------------------------------


def work_dir(cache: Path, name: str, server: Mapping[str, Any]) -> Path:
    return cache / f"{name}-{server['version']}"


def install(name: str, server: Mapping[str, Any], work: Path) -> None:
    """Install the pinned version into ``work`` unless a finished install is there."""
    done = work / ".installed"
    if done.exists():
        return
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    kind, package, version = server["install"], server["package"], server["version"]
    print(f"[{name}] installing {package} {version} into {work}", flush=True)
    if kind == "npm":
        _run(["npm", "install", "--prefix", str(work), "--no-audit", "--no-fund",
              "--loglevel", "error", f"{package}@{version}"])  # fmt: skip
    elif kind == "pip":
        _run([sys.executable, "-m", "venv", str(work / "venv")])
        spec = f"{package}=={version}"
        _run([str(work / "venv" / "bin" / "pip"), "install", "-q", spec])
    elif kind == "llama-cpp":
        _build_llama_server(work, version)
    else:
        raise SystemExit(f"{name}: unknown install kind {kind!r}")
    done.write_text(version, "utf-8")


def _build_llama_server(work: Path, version: str) -> None:
    """llama-server from the llama.cpp copy inside the llama-cpp-python sdist, and the tiny
    random model (``tiny_gguf.py``, with the ``gguf`` package into the build's own venv)."""
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
          "-d", str(work), f"llama-cpp-python=={version}"])  # fmt: skip
    sdist = next(work.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(work / "src", filter="data")
    source = next((work / "src").glob("llama_cpp_python-*")) / "vendor" / "llama.cpp"
    build = work / "build"
    _run(["cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS])
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count())])
    _run([sys.executable, "-m", "venv", str(work / "venv")])
    _run([str(work / "venv" / "bin" / "pip"), "install", "-q", "gguf", "numpy"])
    _run([str(work / "venv" / "bin" / "python"), str(COMPAT / "tiny_gguf.py"),
          str(work / "tiny-random.gguf")])  # fmt: skip


def _run(cmd: list[str]) -> None:
    print("  +", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)


def version_of(name: str, server: Mapping[str, Any], work: Path) -> str:
    """The version that is really installed (the pin, checked where the package says)."""
    if server["install"] == "npm":
        manifest = work / "node_modules" / server["package"] / "package.json"
        return json.loads(manifest.read_text("utf-8"))["version"]
    if server["install"] == "pip":
        pip = work / "venv" / "bin" / "pip"
        out = subprocess.run([str(pip), "show", server["package"].split("[")[0]],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                    if ln.startswith("Version:"))  # fmt: skip
    out = subprocess.run([str(work / "build" / "bin" / "llama-server"), "--version"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    build = next((ln for ln in (out.stdout + out.stderr).splitlines() if "version" in ln), "")
    return f"{server['version']} sdist, llama.cpp {build.split(':', 1)[-1].strip()}"


# -- run ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(name: str, server: Mapping[str, Any], work: Path, log: Path) -> Iterator[str]:
    """The server started on a free 127.0.0.1 port; its API root. Always stopped after."""
    port = free_port()
    fill = {"port": str(port), "work": str(work), "compat": str(COMPAT),
            "model": str(work / "tiny-random.gguf")}  # fmt: skip
    cmd = [part.format(**fill) for part in server["command"]]
    env = {**os.environ, **{k: v.format(**fill) for k, v in server.get("env", {}).items()}}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        root = f"http://127.0.0.1:{port}"
        _wait_ready(proc, root + server["ready"], log)
        yield root + server["base"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {proc.returncode}:\n"
                             + log.read_text("utf-8", "replace")[-3000:])  # fmt: skip
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2, trust_env=False).status_code < 500:
                return
        time.sleep(0.5)
    raise SystemExit(f"{url}: no answer within {START_TIMEOUT_S:.0f} s")


def run_suite(server: Mapping[str, Any], base_url: str, api: str, out: Path) -> dict[str, Any]:
    """``streamproof run`` for one API; its compliance.json."""
    cmd = [sys.executable, "-m", "streamproof", "run", "--base-url", base_url, "--api", api,
           "--model", server["models"][api], "--report-dir", str(out), *LOAD_ARGS]  # fmt: skip
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}  # fmt: skip
    if "api_key" in server:
        cmd += ["--api-key", server["api_key"]]
    done = subprocess.run(cmd, env=env, timeout=RUN_TIMEOUT_S, capture_output=True, text=True)
    report = out / "compliance.json"
    if not report.exists():
        raise SystemExit(f"streamproof run wrote no report (exit {done.returncode}):\n"
                         + (done.stdout + done.stderr)[-3000:])  # fmt: skip
    return json.loads(report.read_text("utf-8"))


def digest(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the matrix shows of one run: verdict, counts by group, findings, setup, load."""
    groups: dict[str, dict[str, int]] = {}
    findings = []
    for rule in report["rules"]:
        counts = groups.setdefault(rule["group"], {"pass": 0, "fail": 0, "warn": 0, "skip": 0})
        outcome = "pass" if rule["outcome"] == "waived" else rule["outcome"]
        counts[outcome] = counts.get(outcome, 0) + 1
        if rule["outcome"] in ("fail", "warn"):
            findings.append({"rule": rule["id"], "level": rule["level"],
                             "outcome": rule["outcome"], "scenario": rule["scenario"],
                             "evidence": (rule["message"] or "")[:300]})  # fmt: skip
    load = (report.get("load") or {}).get("summary") or {}
    requests = load.get("requests") or {}
    return {
        "verdict": report["verdict"],
        "error": report["error"],
        "summary": {k: report["summary"][k] for k in ("rules", "pass", "fail", "warn", "skip")},
        "groups": groups,
        "findings": findings,
        "setup": report.get("setup") or {},
        "skipped": sorted(
            {s["name"]: s["skipped"] for s in report["scenarios"] if s["skipped"]}.items()
        ),
        "load": {
            "completed": requests.get("completed"),
            "failed": requests.get("failed"),
            "ttft_p50_ms": (load.get("ttft_ms") or {}).get("p50"),
            "itl_p50_ms": (load.get("itl_ms") or {}).get("p50"),
            "tokens_per_s": (load.get("throughput") or {}).get("output_tokens_per_s"),
            "token_source": (load.get("output_tokens") or {}).get("source"),
        },
    }


def measure(name: str, server: Mapping[str, Any], cache: Path) -> dict[str, Any]:
    work = work_dir(cache, name, server)
    install(name, server, work)
    version = version_of(name, server, work)
    result: dict[str, Any] = {"server": name, "title": server["title"], "version": version,
                              "date": dt.date.today().isoformat(), "apis": {}}  # fmt: skip
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(name, server, work, work / "server.log") as url,
    ):
        for api in server["apis"]:
            print(f"[{name}] streamproof run --api {api} against {url}", flush=True)
            result["apis"][api] = digest(run_suite(server, url, api, Path(tmp) / api))
    return result


# -- render ------------------------------------------------------------------------------------

GROUPS: Final = ("framing", "chunk", "lifecycle", "tools", "usage", "errors", "http", "sdk")


def unclassified(results: list[dict[str, Any]], classes: Mapping[str, Any]) -> list[str]:
    """Findings with no (valid) classification, as ``server/api/rule``."""
    missing = []
    for result in results:
        for api, run in result["apis"].items():
            for f in run["findings"]:
                entry = classes.get(result["server"], {}).get(api, {}).get(f["rule"])
                if not entry or entry.get("class") not in CLASSES or not entry.get("why"):
                    missing.append(f"{result['server']}/{api}/{f['rule']}")
    return missing


def _cell(counts: Mapping[str, int] | None) -> str:
    if not counts:
        return "–"
    bad = [f"{counts[k]} {k}" for k in ("fail", "warn") if counts.get(k)]
    return ", ".join(bad) if bad else f"✓ {counts['pass']}" if counts.get("pass") else "skip"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def render(results: list[dict[str, Any]], classes: Mapping[str, Any]) -> str:
    lines = [
        "# Compatibility matrix",
        "",
        "streamproof against real third-party servers, installed from the package registries",
        "and run on 127.0.0.1 with the configurations in `compat/`. Generated by",
        "",
        "```sh",
        "python compat/run.py",
        "```",
        "",
        "Each row is one `streamproof run` (suite + a 15 s load run with 4 users) against one",
        "API of one server. A cell counts the rules of that group that failed (MUST) or warned",
        "(SHOULD); ✓ n: all n checked rules passed. Load: streams read to their end / failures",
        "(a completed stream that broke a MUST rule counts in both); the machine is a shared",
        "2-core VM, so the load figures are indicative only. Below, every finding with its",
        "evidence and its classification: **deviation** (the server differs from the API as",
        "the official SDKs and docs define it), **suite limitation** (the suite could not judge),",
        "or",
        "**false positive** (a bug in the rule: fixed, never left standing).",
        "",
        "| server | version | date | API | verdict | " + " | ".join(GROUPS)
        + " | load: completed / failed | TTFT p50 ms | ITL p50 ms | tokens/s |",
        "|---|---|---|---|---|" + "---|" * len(GROUPS) + "---|---:|---:|---:|",
    ]  # fmt: skip
    for r in results:
        for api, run in r["apis"].items():
            load = run["load"]
            cells = " | ".join(_cell(run["groups"].get(g)) for g in GROUPS)
            lines.append(
                f"| {r['title']} | {r['version']} | {r['date']} | {api} | {run['verdict']} | "
                f"{cells} | {load['completed']} / {load['failed']} | {_ms(load['ttft_p50_ms'])} "
                f"| {_ms(load['itl_p50_ms'])} | {_ms(load['tokens_per_s'])} |"
            )
    for r in results:
        lines += ["", f"## {r['title']} {r['version']}", ""]
        for api, run in r["apis"].items():
            setup = "; ".join(f"{k}: {v}" for k, v in run["setup"].items())
            lines.append(f"**{api}** — verdict {run['verdict']}"
                         + (f" ({run['error']})" if run["error"] else "")
                         + (f"; setup: {setup}" if setup else ""))  # fmt: skip
            lines.append("")
            if not run["findings"]:
                lines += ["No finding.", ""]
            for f in run["findings"]:
                entry = classes.get(r["server"], {}).get(api, {}).get(f["rule"], {})
                kind = entry.get("class", "UNCLASSIFIED")
                lines.append(f"- `{f['rule']}` ({f['level']} {f['outcome']}, {f['scenario']}): "
                             f"**{kind}** — {entry.get('why', '')}  ")  # fmt: skip
                lines.append(f"  evidence: {f['evidence']}")
            if run["skipped"]:
                lines.append("")
                lines.append("Scenarios the suite could not judge: " + "; ".join(
                    f"{name} ({why})" for name, why in run["skipped"]))  # fmt: skip
            if run["load"]["token_source"]:
                lines.append(f"Load tokens counted from: {run['load']['token_source']}.")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def read_results() -> list[dict[str, Any]]:
    order = list(load_servers())
    results = [json.loads(p.read_text("utf-8")) for p in sorted(RESULTS.glob("*.json"))]
    return sorted(results, key=lambda r: order.index(r["server"]) if r["server"] in order else 99)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", help="run only this server (repeatable)")
    ap.add_argument("--render", action="store_true", help="only rewrite COMPATIBILITY.md")
    ap.add_argument("--cache", type=Path, help="install folder (default "
                    "~/.cache/streamproof/compat)")  # fmt: skip
    args = ap.parse_args()
    servers = load_servers()
    cache = args.cache or Path.home() / ".cache" / "streamproof" / "compat"
    if not args.render:
        for name in args.only or list(servers):
            if name not in servers:
                raise SystemExit(f"unknown server {name!r}; known: {', '.join(servers)}")
            result = measure(name, servers[name], cache)
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n", "utf-8")
    results = read_results()
    classes = load_classification()
    MATRIX.write_text(render(results, classes), "utf-8")
    missing = unclassified(results, classes)
    print(f"wrote {MATRIX.relative_to(ROOT)} ({len(results)} servers)")
    if missing:
        print("unclassified findings (add them to compat/classification.toml):", *missing,
              sep="\n  ")  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
