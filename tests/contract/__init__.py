"""Test doubles that speak a real service's wire protocol, checked by that service's own types."""

from .ollama_server.catalogue import DEFAULT_MODELS, DEFAULT_REGISTRY, ModelSpec
from .ollama_server.contract import ErrorBody, contract_problems
from .ollama_server.handler import Faults, RecordedRequest
from .ollama_server.server import OllamaContractServer

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_REGISTRY",
    "ErrorBody",
    "Faults",
    "ModelSpec",
    "OllamaContractServer",
    "RecordedRequest",
    "contract_problems",
]
