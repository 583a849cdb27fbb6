"""``responses.resume``: a background stream fetched again after sequence number N replays
exactly the events after N.

OpenAI's background mode lets a client that lost a stream pick it up again with ``GET
/responses/{id}?stream=true&starting_after=N`` (the background guide; the SDK's
``responses.retrieve(id, stream=True, starting_after=N)`` yields what the server sends, while
``responses.stream(response_id=...)`` fetches from 0 and filters itself). The suite reads the
background stream once, noting each event as a :class:`Transcript` entry (sequence number, type
and a digest of the payload), fetches it again after its ``response.created`` and compares the
two here. The replay is also judged by the stream model, as a replay (``replaying_after``: no
response.created owed). INFO: few clients resume, and the SDK's own helper does not rely on
``starting_after``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import orjson

from ..findings import Finding
from ..sse import Event
from .answers import Answer
from .base import event_json, short
from .registry import check

__all__ = ["MAX_EVENTS", "Transcript", "compare"]

RULE: Final = "responses.resume"
MAX_EVENTS: Final = 10_000  # events noted per stream: a longer one is compared up to there
_SORTED: Final = orjson.OPT_SORT_KEYS


class Transcript:
    """What a comparison needs of a stream, in bounded memory: per event (the first
    :data:`MAX_EVENTS`) its ``sequence_number``, its type and a digest of its payload (keys
    sorted, ``obfuscation`` left out: random padding need not repeat); the response id and the
    sequence number of ``response.created``."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, str, bytes]] = []
        self.events = 0
        self.response_id: str | None = None
        self.created_seq: int | None = None

    def take(self, events: list[Event]) -> None:
        """Note a batch of events (an ``exchange`` ``on_events`` callback)."""
        for event in events:
            self.events += 1
            if len(self.entries) < MAX_EVENTS:
                self._note(event)

    def _note(self, event: Event) -> None:
        try:
            obj = event_json(event)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is not dict:
            self.entries.append((None, "non-JSON", _digest(event.data)))
            return
        kind = obj.get("type")
        seq = obj.get("sequence_number")
        response = obj.get("response")
        if kind == "response.created" and self.response_id is None and type(response) is dict:
            rid = response.get("id")
            self.response_id = rid if type(rid) is str and rid else None
            self.created_seq = seq if type(seq) is int else None
        payload = {k: v for k, v in obj.items() if k != "obfuscation"}
        self.entries.append((seq, str(kind), _digest(payload)))

    @property
    def cut(self) -> bool:
        """More events came than were noted."""
        return self.events > len(self.entries)


def _digest(value: Any) -> bytes:
    data = value.encode() if isinstance(value, str) else orjson.dumps(value, option=_SORTED)
    return hashlib.blake2b(data, digest_size=16).digest()


def compare(original: Transcript, after: int, replay: Transcript) -> list[Finding]:
    """Findings of ``responses.resume``: how the stream fetched again after sequence number
    ``after`` differs from the events of ``original`` after it."""
    where = f"the stream fetched again after sequence_number {after}"
    if not replay.entries:
        return [Finding(RULE, f"{where} held no events")]
    found = []
    first = replay.entries[0][0]
    if first != after + 1:
        why = (
            "starting_after was ignored"
            if type(first) is int and first <= after
            else "events were lost"
            if type(first) is int
            else "its first event has no sequence_number"
        )
        found.append(f"{where} starts at sequence_number {short(first)}, not {after + 1} ({why})")
    if any(kind == "response.created" for _, kind, _ in replay.entries):
        found.append(f"{where} repeats response.created")
    owed = {seq: (kind, d) for seq, kind, d in original.entries if type(seq) is int and seq > after}
    got = {seq: (kind, d) for seq, kind, d in replay.entries if type(seq) is int and seq > after}
    altered = [seq for seq in got if seq in owed and got[seq] != owed[seq]]
    if altered:
        seq = altered[0]
        found.append(
            f"{len(altered)} event(s) differ from the original stream's, the first "
            f"sequence_number {seq} ({got[seq][0]}; the original's: {owed[seq][0]})"
        )
    compared = not (original.cut or replay.cut)
    missing = [seq for seq in owed if seq not in got] if compared else []
    if missing:
        found.append(
            f"{len(missing)} event(s) of the original stream are not replayed, the first "
            f"sequence_number {missing[0]} ({owed[missing[0]][0]})"
        )
    extra = [seq for seq in got if seq not in owed] if compared else []
    if extra:
        found.append(
            f"{len(extra)} event(s) the original stream did not have, the first "
            f"sequence_number {extra[0]} ({got[extra[0]][0]})"
        )
    note = "" if compared else f" (of the first {MAX_EVENTS} events of each stream)"
    return [Finding(RULE, message + note) for message in found]


@check(RULE, on="answer")
def resume(a: Answer) -> bool:
    """The replay's comparison with the stream it replays (the engine sets ``a.resumed``)."""
    if a.kind != "stream" or a.resumed is None or not a.ok:
        return False
    a.findings += a.resumed()
    return True
