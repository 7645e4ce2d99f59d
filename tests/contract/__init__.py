"""Test doubles that speak a real service's wire protocol, checked by that service's own types."""

from .ollama_server import (
    DEFAULT_MODELS,
    DEFAULT_REGISTRY,
    ErrorBody,
    Faults,
    ModelSpec,
    OllamaContractServer,
    RecordedRequest,
    contract_problems,
)

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
