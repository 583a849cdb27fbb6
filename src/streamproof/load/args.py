"""The load test's own options, registered on Locust's parser (so they show in the web UI,
can come from the environment or a config file, and reach the workers), and
:class:`Settings`, the typed view every process builds from them.

No Locust import at module level: ``add_locust_arguments`` takes Locust's parser (it accepts
Locust's ``include_in_web_ui`` / ``is_secret`` keywords) and :meth:`Settings.from_options`
reads any namespace, including one whose values the web UI turned into strings.
"""

from __future__ import annotations

import json
import os
import re
import time
from argparse import ArgumentTypeError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..capture import Timeouts
from ..endpoints import APIS, KEY_ENV, request_headers
from ..redact import register_secret
from ..server import DEFAULT_MODEL
from ..suite_options import parse_header
from .metric_defs import SLO
from .metrics import Slo

__all__ = [
    "API_CHOICES",
    "HEADERS_ENV",
    "PROMPT_CHOICES",
    "SHAPE_CHOICES",
    "Settings",
    "add_locust_arguments",
    "parse_duration",
    "resolve_api_key",
    "run_folder",
    "timeouts_of",
]

API_CHOICES: Final = (*APIS, "mixed")
PROMPT_CHOICES: Final = ("short", "long", "synthetic", "jsonl", "sharegpt")
SHAPE_CHOICES: Final = ("none", "step", "ramp", "spike")
ARRIVAL_CHOICES: Final = ("poisson", "constant")
LOAD_DIR: Final = "reports/load"
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")
# Extra request headers (a JSON list of "Name: value"), passed to Locust in the environment:
# a header may carry a secret, and a command line is visible to every user of the machine.
HEADERS_ENV: Final = "STREAMPROOF_HEADERS"


def run_folder(base: str = LOAD_DIR) -> Path:
    """A folder of its own for one run (``reports/load/run-20261204-171500-4242``): a web UI
    session, or a run against another host, never overwrites another run's files."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(base) / f"run-{stamp}-{os.getpid()}"


def parse_duration(text: str) -> float:
    """``30``, ``30s``, ``2m``, ``1h30m`` → seconds (more than 0)."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None:
        raise ArgumentTypeError(f"not a duration: {text!r} (use 30s, 2m, 1h30m)")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ArgumentTypeError(f"a duration must be more than 0, not {text!r}")
    return seconds


def timeouts_of(options: Any) -> Timeouts:
    """The four time bounds of a namespace (Locust's or ``streamproof load``'s)."""
    get = lambda name: getattr(options, name, None)  # noqa: E731
    return Timeouts(
        connect=_float(get("connect_timeout"), _DEFAULTS.connect),
        first_byte=_float(get("first_byte_timeout"), _DEFAULTS.first_byte),
        idle=_float(get("idle_timeout"), _DEFAULTS.idle),
        total=_float(get("total_timeout"), _DEFAULTS.total),
    )


_DEFAULTS = Timeouts()


def add_locust_arguments(parser: Any) -> None:
    """Register the options on Locust's parser (``events.init_command_line_parser``)."""
    g = parser  # Locust's own add_argument takes is_secret / include_in_web_ui (groups don't)
    g.add_argument(
        "--api",
        choices=API_CHOICES,
        default="openai",
        env_var="STREAMPROOF_API",
        help="which endpoint: openai (/chat/completions), anthropic (/messages), responses "
        "(/responses, OpenAI's Responses API), or mixed (every API's user class)",
    )
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        env_var="STREAMPROOF_MODEL",
        help="model name sent in every request",
    )
    g.add_argument(
        "--api-key",
        default="",
        is_secret=True,
        help="API key (masked everywhere). Empty: STREAMPROOF_API_KEY, else "
        "OPENAI_API_KEY (openai, responses) / ANTHROPIC_API_KEY from the environment",
    )
    g.add_argument(
        "--anthropic-auth",
        choices=("x-api-key", "bearer"),
        default="x-api-key",
        env_var="STREAMPROOF_ANTHROPIC_AUTH",
        help="how to send the Anthropic key",
    )
    g.add_argument(
        "--auth-header",
        default="",
        env_var="STREAMPROOF_AUTH_HEADER",
        help="send the key raw in this header instead (e.g. api-key for Azure)",
    )
    g.add_argument(
        "--header",
        action="append",
        default=[],
        include_in_web_ui=False,
        help=f"an extra request header 'Name: value', repeatable (also {HEADERS_ENV}: a JSON "
        "list); values of secret-looking names are masked",
    )
    g.add_argument(
        "--extra-body",
        default="",
        env_var="STREAMPROOF_EXTRA_BODY",
        help="a JSON object merged into every request body",
    )
    g.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        env_var="STREAMPROOF_MAX_TOKENS",
        help="max_tokens of every request (responses: max_output_tokens, which OpenAI "
        "wants at least 16)",
    )
    g.add_argument(
        "--prompts",
        choices=PROMPT_CHOICES,
        default="short",
        help="prompt source: built-in short or long prompts, synthetic prompts of "
        "--prompt-words words, a JSONL file or a ShareGPT JSON file (--prompt-file)",
    )
    g.add_argument("--prompt-words", type=int, default=200, help="words per synthetic prompt")
    g.add_argument(
        "--prompt-file",
        default="",
        help='JSONL (one {"prompt": ...} or {"messages": [...]} per line) or ShareGPT JSON file',
    )
    g.add_argument(
        "--include-usage",
        choices=("on", "off"),
        default="on",
        help="OpenAI chat: ask for the usage chunk (stream_options.include_usage); the "
        "output token count then comes from the server's usage (responses: always, from "
        "the terminal event)",
    )
    g.add_argument(
        "--validate",
        choices=("on", "off"),
        default="on",
        help="check every stream with the conformance validators; MUST violations "
        "count as failures by rule id",
    )
    for d in SLO:
        g.add_argument(
            f"--slo-{d.name}-ms", type=float, default=0.0, help=f"SLO on {d.label} (0: none)"
        )
    g.add_argument(
        "--connect-timeout", type=float, default=_DEFAULTS.connect, help="seconds to connect"
    )
    g.add_argument(
        "--first-byte-timeout",
        type=float,
        default=_DEFAULTS.first_byte,
        help="seconds until the response headers",
    )
    g.add_argument(
        "--idle-timeout",
        type=float,
        default=_DEFAULTS.idle,
        help="longest silence between two reads, seconds",
    )
    g.add_argument(
        "--total-timeout",
        type=float,
        default=_DEFAULTS.total,
        help="bound on one whole exchange, seconds",
    )
    g.add_argument(
        "--send-stamps",
        choices=("on", "off"),
        default="off",
        help="ask the reference server for send stamps (x-streamproof-stamps) to "
        "measure the client's own lateness",
    )
    g.add_argument(
        "--arrival-rate",
        type=float,
        default=0.0,
        help="open loop: requests per second over all workers (0: closed loop, "
        "each user sends back to back); the users are the concurrency cap",
    )
    g.add_argument(
        "--arrival-process",
        choices=ARRIVAL_CHOICES,
        default="poisson",
        help="open loop: Poisson or evenly spaced arrivals",
    )
    g.add_argument(
        "--shape",
        choices=SHAPE_CHOICES,
        default="none",
        help="load shape over --run-time: step (--step-users every --step-time s), "
        "ramp (to --users over --ramp-time s), spike (--spike-users at --spike-at s "
        "for --spike-time s)",
    )
    g.add_argument("--step-users", type=int, default=1, help="step shape: users per step")
    g.add_argument("--step-time", type=float, default=10.0, help="step shape: seconds per step")
    g.add_argument("--ramp-time", type=float, default=10.0, help="ramp shape: seconds to --users")
    g.add_argument("--spike-users", type=int, default=0, help="spike shape: users in the spike")
    g.add_argument("--spike-at", type=float, default=5.0, help="spike shape: start, seconds")
    g.add_argument("--spike-time", type=float, default=5.0, help="spike shape: length, seconds")
    g.add_argument(
        "--interrupt-users",
        type=int,
        default=0,
        help="users that abort their stream after --interrupt-after content events",
    )
    g.add_argument(
        "--interrupt-after",
        type=int,
        default=5,
        help="content events before an interrupting user hangs up",
    )
    g.add_argument(
        "--start-jitter",
        type=float,
        default=1.0,
        help="closed loop: each user waits a random 0..S seconds before its first "
        "request (Locust starts a second's users at once; identical streams would "
        "then stay in lockstep and measure bursts)",
    )
    g.add_argument(
        "--requests-per-user",
        type=int,
        default=0,
        help="each user stops after this many requests; the run ends when all did (0: no limit)",
    )
    g.add_argument(
        "--summary-json",
        default="",
        help="summary file; requests.jsonl and tokens_per_s.json go beside it (default: a "
        f"folder of its own for each run under {LOAD_DIR}/)",
    )


def _float(value: Any, default: float = 0.0) -> float:
    if value in (None, ""):
        return default
    return float(value)


def _int(value: Any, default: int = 0) -> int:
    if value in (None, ""):
        return default
    return int(float(value))


def _on(value: Any, default: bool) -> bool:
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("on", "true", "1", "yes")


def resolve_api_key(explicit: str | None, api: str) -> str | None:
    """``--api-key`` when given, else the environment (see :data:`KEY_ENV`)."""
    if explicit:
        return explicit
    for name in KEY_ENV[api]:
        value = os.environ.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True)
class Settings:
    api: str = "openai"
    model: str = DEFAULT_MODEL
    keys: dict[str, str | None] = field(default_factory=dict, repr=False)
    max_tokens: int = 128
    prompts: str = "short"
    prompt_words: int = 200
    prompt_file: str = ""
    include_usage: bool = True
    validate: bool = True
    slo: Slo = field(default_factory=Slo)
    timeouts: Timeouts = field(default_factory=Timeouts)
    send_stamps: bool = False
    arrival_rate: float = 0.0
    arrival_process: str = "poisson"
    interrupt_users: int = 0
    interrupt_after: int = 5
    start_jitter: float = 1.0
    requests_per_user: int = 0
    summary_json: str = ""
    anthropic_auth: str = "x-api-key"
    auth_header: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    extra_body: dict[str, Any] = field(default_factory=dict)
    run_time: float = 0.0  # Locust's --run-time in seconds (0: none)

    @classmethod
    def from_options(cls, options: Any) -> Settings:
        get = lambda name, default=None: getattr(options, name, default)  # noqa: E731
        api = str(get("api") or "openai")
        if api not in API_CHOICES:
            raise ValueError(f"--api must be one of {', '.join(API_CHOICES)}, not {api!r}")
        explicit = str(get("api_key") or "") or None
        keys = {name: resolve_api_key(explicit, name) for name in APIS}
        for key in keys.values():
            register_secret(key)
        slo = Slo(**{d.key: _float(get(f"slo_{d.key}")) or None for d in SLO})
        timeouts = timeouts_of(options)
        raw_headers = list(get("header") or [])
        if os.environ.get(HEADERS_ENV):
            raw_headers += json.loads(os.environ[HEADERS_ENV])
        extra = json.loads(get("extra_body")) if get("extra_body") else {}
        if not isinstance(extra, dict):
            raise ValueError("--extra-body must be a JSON object")
        return cls(
            api=api,
            model=str(get("model") or DEFAULT_MODEL),
            keys=keys,
            max_tokens=_int(get("max_tokens"), 128),
            prompts=str(get("prompts") or "short"),
            prompt_words=_int(get("prompt_words"), 200),
            prompt_file=str(get("prompt_file") or ""),
            include_usage=_on(get("include_usage"), True),
            validate=_on(get("validate"), True),
            slo=slo,
            timeouts=timeouts,
            send_stamps=_on(get("send_stamps"), False),
            arrival_rate=_float(get("arrival_rate")),
            arrival_process=str(get("arrival_process") or "poisson"),
            interrupt_users=_int(get("interrupt_users")),
            interrupt_after=max(1, _int(get("interrupt_after"), 5)),
            start_jitter=max(0.0, _float(get("start_jitter"), 1.0)),
            requests_per_user=_int(get("requests_per_user")),
            summary_json=str(get("summary_json") or ""),
            anthropic_auth=str(get("anthropic_auth") or "x-api-key"),
            auth_header=str(get("auth_header") or "") or None,
            headers=tuple(parse_header(h) for h in raw_headers),
            extra_body=extra,
            run_time=parse_duration(str(get("run_time"))) if get("run_time") else 0.0,
        )

    def key_for(self, api: str) -> str | None:
        """The key for one API (a ``mixed`` run may use one of each)."""
        return self.keys.get(api)

    def request_headers(self, api: str) -> dict[str, str]:
        """Every header of one API's request but host, length and framing."""
        return request_headers(
            api,
            self.key_for(api),
            anthropic_auth=self.anthropic_auth,
            auth_header=self.auth_header,
            extra=self.headers,
        )


def print_options() -> None:
    """``python -m streamproof.load.args``: the locustfile's own options. Locust prints its
    ``--help`` before it loads a locustfile, so they are missing there."""
    from locust.argument_parser import LocustArgumentParser

    parser = LocustArgumentParser(
        prog="locust -f loadtests/locustfile.py",
        description="Streaming options of the streamproof locustfile (besides Locust's own).",
        add_env_var_help=True,
        add_config_file_help=False,
    )
    add_locust_arguments(parser)
    parser.print_help()


if __name__ == "__main__":
    print_options()
