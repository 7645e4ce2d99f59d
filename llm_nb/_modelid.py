"""Model ids: ``provider:model[@host:port]``.

Ollama model names contain colons (``llama3.2:1b``), so only the first colon separates the
provider, and only the last ``@`` the host: ``ollama:llama3.2:1b@gpu-box:11434`` is provider
``ollama``, model ``llama3.2:1b``, host ``gpu-box:11434``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import InvalidOptionError

#: Spellings users type for each provider.
PROVIDER_ALIASES = {
    "openai": "openai",
    "oai": "openai",
    "llamacpp": "llamacpp",
    "llama.cpp": "llamacpp",
    "llama-cpp": "llamacpp",
    "llama": "llamacpp",
    "llama-server": "llamacpp",
    "ollama": "ollama",
    "local": "local",
}


@dataclass(frozen=True, slots=True)
class ModelId:
    provider: str
    model: str
    host: str | None = None

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}" + (f"@{self.host}" if self.host else "")


def parse_model_id(text: str, aliases: dict[str, str] | None = None) -> ModelId:
    """Parse a model id, first resolving user aliases (``{"small": "ollama:qwen3:0.6b"}``)."""
    text = text.strip()
    seen: set[str] = set()
    while aliases and text in aliases:
        if text in seen:
            raise InvalidOptionError(f"alias {text!r} refers to itself through {sorted(seen)}")
        seen.add(text)
        text = aliases[text].strip()
    if not text:
        raise InvalidOptionError("empty model id; use provider:model, e.g. llamacpp:smollm2")
    if text == "local":
        return ModelId("local", "smollm2")
    provider, sep, rest = text.partition(":")
    canonical = PROVIDER_ALIASES.get(provider.lower())
    if not sep or canonical is None:
        raise InvalidOptionError(
            f"model id {text!r} must start with a provider: openai:, llamacpp:, ollama: or "
            "local (e.g. ollama:llama3.2:1b@127.0.0.1:11434)"
        )
    model, at, host = rest.rpartition("@")
    if not at:
        model, host = rest, ""
    if at and (not host or host.startswith(":")):
        raise InvalidOptionError(f"model id {text!r} has an empty host after '@'")
    if not model and canonical != "llamacpp":
        raise InvalidOptionError(f"model id {text!r} names no model after '{provider}:'")
    return ModelId(canonical, model, host or None)
