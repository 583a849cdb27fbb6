"""The reference server: a correct streaming LLM API that can be told to be wrong.

It answers OpenAI ``POST /v1/chat/completions`` (streaming and not) and ``GET /v1/models``,
and Anthropic ``POST /v1/messages`` (streaming and not: text, thinking, tool use), with
deterministic content. Each request can select named faults (``FAULTS``: every rule of the
suite has at least one that trips it), a timing and send stamps, by path prefix
(``/fault/missing-done/timing/ttft_ms=100,gap_ms=10/stamps/v1``, see
:meth:`ReferenceServer.url_for`) or by ``x-streamproof-fault`` / ``-timing`` / ``-stamps``
headers — so one running server serves a whole test session, and the suite proves on it
that each rule can fail. Default timing: first token after 20 ms, then one word every 2 ms.

Why this stack: an asyncio ``Protocol`` over httptools' C request parser (keep-alive,
chunked request bodies), uvloop when importable, and responses written by hand. Fault
injection needs byte-level control that no framework gives (no headers ever, broken chunked
encoding, a TCP reset mid-stream); timing accuracy needs each response precomputed as timed
frames and written with ``transport.write`` from one shared ``loop.call_at`` timer
(``send.Clock``): a thousand streams at a 20 ms gap keep send lateness near 2 ms p99.

Layout: ``connection.py`` (one HTTP/1.1 connection) → ``app.py`` (selection, routing, fault
layers, timed frames) → an endpoint (``openai_chat.py``, ``anthropic_messages.py``: request
→ :class:`endpoint.Reply`; what each refuses: ``openai_request.py``,
``anthropic_request.py``) → ``send.py`` (frames at their deadlines, lateness into
:class:`SendStats`). ``text.py`` is the generated content, ``instances.py`` JSON values for
a schema, ``script.py`` the scripted replies; ``faults/`` the registry
(``wire.py`` API-agnostic faults, one module per protocol; every Anthropic fault is named
``anthropic-...``, the wire faults included, registered again for that API).

Adding an endpoint (as ``anthropic_messages.py`` was added): write a module with handlers
``(Request, Context) -> Reply`` — check the key, raise :class:`endpoint.RequestError` for bad
requests, pass the payload list through ``ctx.faults.chunks(items, StreamInfo(body, usage))``
and serialise it with ``sse_event`` — and ``API = Api(name, {path: {method: handler}},
error_reply, turn)`` (``turn``: where a request's conversation stands, for scripted replies;
``prefixes``/``headers``: which unknown paths answer in this API's error shape); add it to
``app.APIS``. Its faults go in ``faults/<module>.py`` (``api=<name>``, reusing
``faults.wire``'s generic effects such as ``accept_any_key``) and into ``faults._ALL``.
``Reply.ticks`` paces a stream whose non-content events should not take a gap.
"""

from .endpoint import DEFAULT_API_KEY, DEFAULT_MODEL, MODELS
from .faults import FAULTS, HUGE_EVENT_BYTES, Fault, fault_table
from .reference import DEFAULT_HOST, DEFAULT_PORT, STALL_CAP_S, ReferenceServer, run_server
from .script import Script, ScriptError
from .timing import SendStats, Timing

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_HOST",
    "DEFAULT_MODEL",
    "DEFAULT_PORT",
    "FAULTS",
    "HUGE_EVENT_BYTES",
    "MODELS",
    "STALL_CAP_S",
    "Fault",
    "ReferenceServer",
    "Script",
    "ScriptError",
    "SendStats",
    "Timing",
    "fault_table",
    "run_server",
]
