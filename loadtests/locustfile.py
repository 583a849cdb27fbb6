"""Streaming LLM API load test (TTFT, inter-token latency, throughput, conformance).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8787/v1 --api openai
    locust -f loadtests/locustfile.py --headless -u 8 -r 8 -t 30s --host URL --api mixed \
        --max-tokens 128 --slo-ttft-ms 500 --csv reports/load/locust --html reports/load/locust.html
    locust -f loadtests/locustfile.py --headless --processes 2 ...   # master + 2 workers

``--host`` is the API root (like the suite's ``--base-url``); ``--api`` is openai
(/chat/completions), anthropic (/messages), responses (/responses) or mixed (all three). The
key comes from ``--api-key``, else STREAMPROOF_API_KEY, OPENAI_API_KEY (openai, responses) /
ANTHROPIC_API_KEY; it is never printed. The options (``src/streamproof/load/args.py``: model,
max tokens, prompts, SLOs, validation, the four timeouts, open loop, shapes, interrupting
users ...) also show in the web UI, where a "Streaming" tab and the live charts page
``/streamproof/`` join Locust's own.

Rows in Locust's statistics: TTFB, TTFT, TTFO, TPOT, ITL (one per gap between content
events), E2E (size column = output tokens; failures by kind), SCHED_LAG (open loop), ABORT
(interrupting users); request type = the API. At the end of every run:
``reports/load/summary.json`` (``--summary-json``), ``requests.jsonl`` and
``tokens_per_s.json`` beside it, with percentiles computed from raw samples.
"""

from streamproof.load.shapes import StreamproofShape
from streamproof.load.users import InterruptingStreamingUser, StreamingUser


class OpenAIUser(StreamingUser):
    """Streams ``POST {host}/chat/completions`` (``--api openai`` or ``mixed``)."""

    api = "openai"


class AnthropicUser(StreamingUser):
    """Streams ``POST {host}/messages`` (``--api anthropic`` or ``mixed``)."""

    api = "anthropic"


class ResponsesUser(StreamingUser):
    """Streams ``POST {host}/responses`` (``--api responses`` or ``mixed``)."""

    api = "responses"


class InterruptingUser(InterruptingStreamingUser):
    """Hangs up after ``--interrupt-after`` content events (``--interrupt-users N``)."""


class Shape(StreamproofShape):
    """``--shape step|ramp|spike`` (``none``, the default: users and run time as given)."""
