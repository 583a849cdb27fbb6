"""Levels mean what breaks (the catalogue's header): every MUST rule names what breaks, and
where that is an official SDK, the rule's fault replayed through that SDK makes it raise or
rebuild a different message than the clean server's stream does. A rule whose fault the SDK
reads fine is not a MUST rule for an SDK reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from streamproof.capture import Capture, Timeouts, exchange
from streamproof.cli import main
from streamproof.engine import Target
from streamproof.rules import BREAKS_KINDS, catalogue
from streamproof.scenarios import scenarios_for
from streamproof.sdk_replay import sdk_final
from streamproof.server import DEFAULT_API_KEY, DEFAULT_MODEL, FAULTS, ReferenceServer

# the APIs each SDK kind is proven against, where the rule lists them at MUST (the openai SDK
# serves chat completions and Responses)
SDK_APIS = {
    "openai SDK": ("openai", "responses"),
    "anthropic SDK": ("anthropic",),
    "SDKs": ("openai", "anthropic", "responses"),
}
SDK_RULES = sorted(r.id for r in catalogue().values() if r.breaks_kind in SDK_APIS)
# differ between any two requests: chat ids and timestamps; Responses ids (response and
# items), created_at, call ids and the opaque reasoning state
_VOLATILE = ("id", "created", "system_fingerprint", "created_at", "call_id", "encrypted_content")


def test_every_must_rule_says_what_breaks() -> None:
    for r in catalogue().values():
        if r.level == "MUST":
            kind, _, what = r.breaks.partition(":")
            assert kind in BREAKS_KINDS and what.strip(), r.id
        else:
            assert r.breaks == "", r.id


def test_rules_command_shows_what_breaks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--json"]) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["openai.role-once"]["breaks"].startswith("openai SDK: accumulate_delta")
    assert listed["openai.created-stable"]["breaks"] is None
    assert listed["sse.meta-only"]["api_levels"] == {"anthropic": "SHOULD"}
    assert main(["rules"]) == 0
    text = capsys.readouterr().out
    assert "openai.role-once" in text and "breaks: openai SDK: accumulate_delta" in text


@pytest.fixture(scope="module")
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer() as srv:
        yield srv


def _capture(srv: ReferenceServer, api: str, scenario: str, faults: tuple[str, ...]) -> tuple:
    spec = next(s for s in scenarios_for(api) if s.name == scenario)
    target = Target(srv.url_for(faults=faults), DEFAULT_MODEL, DEFAULT_API_KEY)
    body = spec.build(DEFAULT_MODEL)
    with httpx.Client(trust_env=False) as client:
        cap = exchange(
            client,
            "POST",
            target.url(api),
            headers=target.headers(api, spec.auth),
            body=body,
            timeouts=Timeouts(connect=2, first_byte=2, idle=1, total=4),
        )
    return cap, body


def _neutral(value: Any) -> Any:
    """The SDK's object as plain data, the per-request values replaced by their type."""
    if isinstance(value, dict):
        return {k: type(v).__name__ if k in _VOLATILE else _neutral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_neutral(v) for v in value]
    return value


def _rebuilt(api: str, cap: Capture, body: dict[str, Any]) -> Any:
    final = sdk_final(api, cap, body)
    return _neutral(final.model_dump(mode="json", warnings=False))


@pytest.mark.parametrize("rule_id", SDK_RULES)
def test_sdk_reason_holds_for_the_rules_fault(rule_id: str, server: ReferenceServer) -> None:
    rule = catalogue()[rule_id]
    shown = []
    apis = [a for a in SDK_APIS[rule.breaks_kind] if a in rule.apis and rule.level_for(a) == "MUST"]
    for api in apis:
        faults = [
            f
            for f in FAULTS.values()
            if rule_id in f.rules
            and rule_id not in f.weaker
            and f.api in (api, "any")
            and not (f.api == "any" and api != "openai")  # its anthropic-/responses- copy runs
        ]
        assert faults, f"{rule_id}: no fault trips it at its level for the {api} API"
        for fault in faults:
            clean, body = _capture(server, api, fault.scenario, ())
            broken, _ = _capture(server, api, fault.scenario, (fault.name,))
            expected = _rebuilt(api, clean, body)
            try:
                got = _rebuilt(api, broken, body)
            except Exception as exc:  # the SDK raised: what breaks, shown
                shown.append(f"{fault.name}: raises {type(exc).__name__}")
                continue
            if got != expected:
                shown.append(f"{fault.name}: rebuilds a different message")
        assert shown, f"{rule_id}: the {api} SDK reads every fault of the rule fine"
