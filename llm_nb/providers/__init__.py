"""Providers: one async class per wire. See :mod:`llm_nb.providers.base` for the interface."""

from .base import Provider
from .llamacpp import LlamaCppProvider
from .ollama import OllamaProvider
from .openai import OpenAIProvider

__all__ = ["LlamaCppProvider", "OllamaProvider", "OpenAIProvider", "Provider"]
