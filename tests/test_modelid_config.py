"""Model ids, config resolution, secrets and option validation."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import llm_nb
from llm_nb._config import Secret, normalize_url
from llm_nb._errors import ConfigError, InvalidOptionError
from llm_nb._modelid import ModelId, parse_model_id
from llm_nb._options import ChatOptions
from llm_nb._types import Message, build_messages
from llm_nb.providers import LlamaCppProvider, OllamaProvider, OpenAIProvider


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ollama:llama3.2:1b@gpu-box:11434", ModelId("ollama", "llama3.2:1b", "gpu-box:11434")),
        ("ollama:llama3.2:1b", ModelId("ollama", "llama3.2:1b", None)),
        ("ollama:qwen3", ModelId("ollama", "qwen3", None)),
        ("openai:gpt-4o-mini", ModelId("openai", "gpt-4o-mini", None)),
        ("llama.cpp:smollm2@127.0.0.1:8080", ModelId("llamacpp", "smollm2", "127.0.0.1:8080")),
        ("llamacpp:@127.0.0.1:8080", ModelId("llamacpp", "", "127.0.0.1:8080")),
        (
            "openai:qwen@http://127.0.0.1:1234/v1",
            ModelId("openai", "qwen", "http://127.0.0.1:1234/v1"),
        ),
        ("local", ModelId("local", "smollm2", None)),
    ],
)
def test_parse_model_id(text: str, expected: ModelId) -> None:
    assert parse_model_id(text) == expected
    if expected.provider != "local":
        assert parse_model_id(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("gpt-4o", "must start with a provider"),
        ("", "empty model id"),
        ("ollama:", "names no model"),
        ("ollama:qwen@", "empty host"),
        ("mistral:7b", "must start with a provider"),
    ],
)
def test_bad_model_ids(text: str, match: str) -> None:
    with pytest.raises(InvalidOptionError, match=match):
        parse_model_id(text)


def test_aliases_resolve_and_cycles_are_caught() -> None:
    aliases = {"small": "fast", "fast": "ollama:qwen3:0.6b"}
    assert parse_model_id("small", aliases) == ModelId("ollama", "qwen3:0.6b")
    with pytest.raises(InvalidOptionError, match="refers to itself"):
        parse_model_id("a", {"a": "b", "b": "a"})


def test_provider_urls_from_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_NB_CONFIG", "/nonexistent/llm_nb.toml")
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("LLAMA_CPP_URL", raising=False)
    assert OllamaProvider().base_url == "http://127.0.0.1:11434"
    assert OpenAIProvider().base_url == "https://api.openai.com/v1"
    assert LlamaCppProvider().base_url == "http://127.0.0.1:8080"
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0")
    assert OllamaProvider().base_url == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", ":9999")
    assert OllamaProvider().base_url == "http://127.0.0.1:9999"
    monkeypatch.setenv("LLAMA_CPP_URL", "http://box:8081/v1/")
    assert LlamaCppProvider().base_url == "http://box:8081"
    assert OpenAIProvider("127.0.0.1:1234").base_url == "http://127.0.0.1:1234/v1"
    # explicit beats environment
    assert LlamaCppProvider("127.0.0.1:9000").host == "127.0.0.1:9000"


def test_config_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[ollama]\nbase_url = "http://cfg-host:1111"\n')
    monkeypatch.setenv("LLM_NB_CONFIG", str(cfg))
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert OllamaProvider().base_url == "http://cfg-host:1111"


def test_secret_never_shows() -> None:
    canary = "sk-test-canary-5f3a9b"
    s = Secret(canary)
    assert canary not in repr(s) and canary not in str(s) and canary not in f"{s}"
    assert s.reveal() == canary
    with pytest.raises(TypeError):
        pickle.dumps(s)
    p = OpenAIProvider(api_key=canary)
    assert canary not in repr(p)
    assert "api_key=set" in repr(p)


def test_credentials_in_url_are_refused() -> None:
    with pytest.raises(ConfigError, match="not in the URL") as info:
        normalize_url("http://user:sk-secret@host:1234")
    assert "sk-secret" not in str(info.value)


def test_openai_without_key_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("LLM_NB_CONFIG", "/nonexistent/llm_nb.toml")
    with pytest.raises(ConfigError, match="set OPENAI_API_KEY"):
        llm_nb.sync(OpenAIProvider()).chat("gpt-4o-mini", "hi")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 3}, "temperature must be between 0 and 2"),
        ({"max_tokens": -5}, "max_tokens must be a positive whole number"),
        ({"max_tokens": 2.5}, "max_tokens must be a positive whole number"),
        ({"top_p": 0}, "top_p"),
        ({"seed": "x"}, "seed must be a whole number"),
        ({"response_format": "yaml"}, "response_format must be"),
        ({"tools": [{"name": "f"}]}, "each tool must be"),
        ({"temprature": 0.5}, "unknown option temprature"),
    ],
)
def test_bad_options_are_one_clear_line(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidOptionError, match=match) as info:
        ChatOptions.from_kwargs(**kwargs)
    assert "\n" not in str(info.value)


def test_messages_and_system_prompt() -> None:
    msgs = build_messages("hi", "be brief")
    assert msgs == [Message("system", "be brief"), Message("user", "hi")]
    msgs = build_messages([{"role": "user", "content": "a"}, "b"], None)
    assert [m.content for m in msgs] == ["a", "b"]
    with pytest.raises(InvalidOptionError, match="role"):
        build_messages([{"role": "robot", "content": "x"}], None)
    with pytest.raises(InvalidOptionError, match="empty"):
        build_messages([], None)


def test_public_api_all_is_sorted_and_importable() -> None:
    assert llm_nb.__all__ == sorted(llm_nb.__all__)
    for name in llm_nb.__all__:
        assert getattr(llm_nb, name) is not None
