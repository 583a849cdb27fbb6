"""Load tests of streaming LLM APIs with Locust: TTFT, inter-token latency and throughput,
measured exactly (stamps taken as bytes arrive) and checked for conformance under load.

The only package that imports Locust (and with it gevent's monkey patching) — but not at
import time of this ``__init__``: ``metric_defs``, ``metrics``, ``summary``, ``collector``,
``arrivals``, ``user_classes``, ``apis``, ``args``, ``prompts``, ``stream``, ``exchange``,
``reactor`` (gevent only once it reads) and ``cli`` are plain Python and safe to import
anywhere; ``users``, ``plugin``, ``runtime``, ``shapes`` and ``webui`` import Locust (or its
Flask) and belong in a locustfile (``loadtests/``).
"""
