"""The load test's own options, registered on Locust's parser (so they show in the web UI,
can come from the environment or a config file, and reach the workers), and
:class:`Settings`, the typed view every process builds from them.

No Locust import at module level: ``add_locust_arguments`` takes Locust's parser (it accepts
Locust's ``include_in_web_ui`` / ``is_secret`` keywords) and :meth:`Settings.from_options`
reads any namespace, including one whose values the web UI turned into strings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Final

from ..capture import Timeouts
from ..redact import register_secret
from ..server import DEFAULT_MODEL
from .metrics import Slo

__all__ = [
    "API_CHOICES",
    "KEY_ENV",
    "PROMPT_CHOICES",
    "SHAPE_CHOICES",
    "Settings",
    "add_locust_arguments",
    "resolve_api_key",
]

API_CHOICES: Final = ("openai", "anthropic", "mixed")
PROMPT_CHOICES: Final = ("short", "long", "synthetic", "jsonl", "sharegpt")
SHAPE_CHOICES: Final = ("none", "step", "ramp", "spike")
ARRIVAL_CHOICES: Final = ("poisson", "constant")
# Where the key comes from when --api-key is empty: the first of these that is set.
KEY_ENV: Final = {
    "openai": ("STREAMPROOF_API_KEY", "OPENAI_API_KEY"),
    "anthropic": ("STREAMPROOF_API_KEY", "ANTHROPIC_API_KEY"),
}
DEFAULT_SUMMARY: Final = "reports/load/summary.json"
_DEFAULTS = Timeouts()


def add_locust_arguments(parser: Any) -> None:
    """Register the options on Locust's parser (``events.init_command_line_parser``)."""
    g = parser  # Locust's own add_argument takes is_secret / include_in_web_ui (groups don't)
    g.add_argument(
        "--api",
        choices=API_CHOICES,
        default="openai",
        env_var="STREAMPROOF_API",
        help="which endpoint: openai (/chat/completions), anthropic (/messages), or "
        "mixed (both user classes)",
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
        "OPENAI_API_KEY / ANTHROPIC_API_KEY from the environment",
    )
    g.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        env_var="STREAMPROOF_MAX_TOKENS",
        help="max_tokens of every request",
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
        help="OpenAI: ask for the usage chunk (stream_options.include_usage); the "
        "output token count then comes from the server's usage",
    )
    g.add_argument(
        "--validate",
        choices=("on", "off"),
        default="on",
        help="check every stream with the conformance validators; MUST violations "
        "count as failures by rule id",
    )
    g.add_argument("--slo-ttft-ms", type=float, default=0.0, help="SLO on TTFT (0: none)")
    g.add_argument("--slo-tpot-ms", type=float, default=0.0, help="SLO on TPOT (0: none)")
    g.add_argument("--slo-e2e-ms", type=float, default=0.0, help="SLO on E2E (0: none)")
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
        default=DEFAULT_SUMMARY,
        help="summary file; requests.jsonl and tokens_per_s.json go beside it",
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
    names = KEY_ENV["anthropic" if api == "anthropic" else "openai"]
    for name in names:
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
    summary_json: str = DEFAULT_SUMMARY

    @classmethod
    def from_options(cls, options: Any) -> Settings:
        get = lambda name, default=None: getattr(options, name, default)  # noqa: E731
        api = str(get("api") or "openai")
        if api not in API_CHOICES:
            raise ValueError(f"--api must be one of {', '.join(API_CHOICES)}, not {api!r}")
        explicit = str(get("api_key") or "") or None
        keys = {name: resolve_api_key(explicit, name) for name in ("openai", "anthropic")}
        for key in keys.values():
            register_secret(key)
        slo = Slo(
            _float(get("slo_ttft_ms")) or None,
            _float(get("slo_tpot_ms")) or None,
            _float(get("slo_e2e_ms")) or None,
        )
        timeouts = Timeouts(
            connect=_float(get("connect_timeout"), _DEFAULTS.connect),
            first_byte=_float(get("first_byte_timeout"), _DEFAULTS.first_byte),
            idle=_float(get("idle_timeout"), _DEFAULTS.idle),
            total=_float(get("total_timeout"), _DEFAULTS.total),
        )
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
            summary_json=str(get("summary_json") or DEFAULT_SUMMARY),
        )

    def key_for(self, api: str) -> str | None:
        """The key for one API (a ``mixed`` run may use one of each)."""
        return self.keys.get(api)


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
