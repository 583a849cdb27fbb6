"""The compatibility runner's pieces that need no install: its configurations are valid and
in step with the suite's prompts, the tiny-model maker writes a GGUF that the ``gguf``
package reads back, every finding in the committed results is classified, and
COMPATIBILITY.md is what the results render to."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import gguf
import pytest
import yaml

from streamproof.scenarios import PROMPT_TOOL, PROMPT_TOOLS

COMPAT = Path(__file__).resolve().parents[1] / "compat"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"compat_{name}", COMPAT / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


runner = _module("run")
tiny = _module("tiny_gguf")


def test_every_server_is_fully_configured() -> None:
    servers = runner.load_servers()
    assert len(servers) >= 4
    for name, server in servers.items():
        assert server["install"] in ("npm", "pip", "llama-cpp"), name
        assert server["version"] and server["package"] and server["title"], name
        assert any("{port}" in part for part in server["command"]), name
        assert "127.0.0.1" in server["command"], f"{name} must listen on 127.0.0.1 only"
        assert set(server["apis"]) <= {"openai", "anthropic"} and server["apis"], name
        assert set(server["models"]) >= set(server["apis"]), name
        assert server["ready"].startswith("/") and server["base"] == "/v1", name
        for part in [*server["command"], *server.get("env", {}).values()]:
            part.format(port="1", work="w", compat="c", model="m")  # placeholders it fills


def test_the_fixtures_answer_the_suites_tool_prompts() -> None:
    """aimock and stubllm match on the suite's prompts: if a prompt changes, the fixtures must."""
    aimock = json.loads((COMPAT / "aimock-fixtures.json").read_text("utf-8"))["fixtures"]
    matches = [f["match"].get("userMessage") for f in aimock]
    assert PROMPT_TOOL in matches
    assert any(m and m in PROMPT_TOOLS for m in matches)
    assert aimock[-1]["match"] == {}  # the catch-all comes last
    stub = yaml.safe_load((COMPAT / "stubllm-fixtures" / "suite.yaml").read_text("utf-8"))
    needles = [m["content"]["contains"] for f in stub["fixtures"]
               for m in f.get("match", {}).get("messages", [])]  # fmt: skip
    assert any(n in PROMPT_TOOL for n in needles) and any(n in PROMPT_TOOLS for n in needles)


def test_the_litellm_config_serves_the_configured_models() -> None:
    config = yaml.safe_load((COMPAT / "litellm-config.yaml").read_text("utf-8"))
    served = {m["model_name"]: m["litellm_params"] for m in config["model_list"]}
    litellm = runner.load_servers()["litellm"]
    assert set(litellm["models"].values()) <= set(served)
    # no real upstream is called: a mock_response model, or this proxy itself
    for params in served.values():
        assert (
            params.get("mock_response") or params.get("api_base") == "os.environ/LITELLM_SELF_URL"
        )
    assert "{port}" in litellm["env"]["LITELLM_SELF_URL"]
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert litellm["env"]["LITELLM_MASTER_KEY"] == litellm["api_key"]


def test_the_tiny_model_is_a_gguf_that_reads_back(tmp_path: Path) -> None:
    path = tiny.write(tmp_path / "tiny.gguf")
    reader = gguf.GGUFReader(str(path))
    fields = reader.fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["llama.block_count"].contents() == tiny.N_LAYER
    tokens = fields["tokenizer.ggml.tokens"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    assert len(tokens) == len(types) == len(set(tokens))
    assert types.count(int(gguf.TokenType.BYTE)) == 256  # byte fallback: any text encodes
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()
    names = {t.name for t in reader.tensors}
    assert len(names) == 3 + 9 * tiny.N_LAYER
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert list(embd.shape) == [tiny.N_EMBD, len(tokens)]
    assert tiny.write(tmp_path / "again.gguf").read_bytes() == path.read_bytes()  # seeded


def test_every_committed_finding_is_classified_and_none_is_a_false_positive() -> None:
    results = runner.read_results()
    classes = runner.load_classification()
    assert runner.unclassified(results, classes) == []
    for server, apis in classes.items():
        for api, rules in apis.items():
            for rule, entry in rules.items():
                assert entry["class"] in runner.CLASSES, (server, api, rule)
                # a false positive is a bug in a rule: it is fixed, not recorded as standing
                assert entry["class"] != "false positive", (server, api, rule)


def test_the_matrix_is_what_the_results_render_to() -> None:
    results = runner.read_results()
    assert len(results) >= 4, "COMPATIBILITY.md needs at least four real servers"
    expected = runner.render(results, runner.load_classification())
    assert (COMPAT.parent / "COMPATIBILITY.md").read_text("utf-8") == expected


@pytest.mark.parametrize("outcome", ["fail", "warn"])
def test_an_unclassified_finding_is_reported(outcome: str) -> None:
    finding = {"rule": "openai.made-up", "level": "MUST", "outcome": outcome,
               "scenario": "openai:plain", "evidence": "x"}  # fmt: skip
    run = {"findings": [finding]}
    results = [{"server": "aimock", "apis": {"openai": run}}]
    assert runner.unclassified(results, runner.load_classification()) == [
        "aimock/openai/openai.made-up"
    ]
