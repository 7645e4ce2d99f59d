"""The local server: the first answer on a fresh machine, and prebuilt against native speed.

**First answer.** A fresh virtualenv, ``pip install`` of this checkout with pip's cache off, an
empty ``LLM_NB_CACHE_DIR``, then ``python -m llm_nb "Say hello"``: the wall time from the start
of ``pip install`` to the first streamed token on stdout. The parts (model fetch, server start,
first token) come from a second pass of the same steps in the same virtualenv with another
empty cache, timed around the functions the command calls. The native build's figure is that
second pass with ``LLM_NB_SERVER=native``, which builds llama-server from source first.

**Speed.** Decode and prompt tokens/s as each server's own ``timings`` report them, for the
prebuilt and the native server on the same model with the same options, in interleaved runs
(a fixed number of tokens decoded, prompt cache off).

    python -m benchmarks.local [--no-native-build] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from ._common import MARKER, ROOT, Row, Section, Sizes, median

_PROMPT = "Say hello"

# Runs inside the fresh virtualenv (never with this checkout on sys.path): the steps
# `python -m llm_nb` takes on first use, each timed.
_PHASES = """
import json, sys, time
t0 = time.perf_counter()
import llm_nb
from llm_nb._embedded import default_server, ensure_model, server_program
from llm_nb._types import TextDelta
t1 = time.perf_counter()
ensure_model(lambda _: None)
t2 = time.perf_counter()
program = server_program(lambda _: None)
t3 = time.perf_counter()
server = default_server(lambda _: None)
t4 = time.perf_counter()
for d in llm_nb.stream("local", sys.argv[1], max_tokens=16):
    if isinstance(d, TextDelta) and d.text:
        break
t5 = time.perf_counter()
print(MARKER + json.dumps({"import_s": t1 - t0, "model_s": t2 - t1, "program_s": t3 - t2,
      "start_s": t4 - t3, "first_token_s": t5 - t4, "program": str(program)}), flush=True)
""".replace("MARKER", repr(MARKER))


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{' '.join(cmd[:4])}… exit {proc.returncode}: {tail}")
    return time.perf_counter() - t0


def _clean_env(work: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLM_NB_", "LLAMA_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        PIP_NO_CACHE_DIR="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        LLM_NB_DATA_DIR=str(work / "data"),
        NO_PROXY="127.0.0.1,localhost,::1",
    )
    env.update(extra)
    return env


def _first_token(python: Path, env: dict[str, str], timeout: float) -> float:
    """Seconds from starting ``python -m llm_nb PROMPT`` to its first byte of answer."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(python), "-m", "llm_nb", _PROMPT, "-n", "16"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = None
    while proc.stdout.read(1).strip() == b"" and proc.poll() is None:
        pass
    first = time.perf_counter() - t0
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"python -m llm_nb exit {proc.returncode}: {err.decode()[-300:]}")
    return first


def _phases(python: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), "-c", _PHASES, _PROMPT],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    raise RuntimeError(f"phases exit {proc.returncode}: {proc.stderr.strip()[-300:]}")


def first_answer(native_build: bool = True) -> dict[str, Any]:
    """The figures described in the module docstring (seconds)."""
    work = Path(tempfile.mkdtemp(prefix="llm_nb-first-answer-"))
    try:
        env = _clean_env(work)
        venv = work / "venv"
        out: dict[str, Any] = {"venv_s": _run([sys.executable, "-m", "venv", str(venv)], env, 300)}
        python = venv / "bin" / "python"
        out["install_s"] = _run([str(python), "-m", "pip", "install", "-q", str(ROOT)], env, 1800)
        out["first_token_s"] = _first_token(
            python, _clean_env(work, LLM_NB_CACHE_DIR=str(work / "cache-a")), 600
        )
        out["total_s"] = out["install_s"] + out["first_token_s"]
        out["prebuilt"] = _phases(
            python,
            _clean_env(work, LLM_NB_CACHE_DIR=str(work / "cache-b"), LLM_NB_SERVER="prebuilt"),
            600,
        )
        if native_build:
            out["native"] = _phases(
                python,
                _clean_env(work, LLM_NB_CACHE_DIR=str(work / "cache-c"), LLM_NB_SERVER="native"),
                3600,
            )
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timings(url: str, prompt: str, tokens: int) -> dict[str, Any]:
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "ignore_eos": True,  # every run decodes the same number of tokens
        "cache_prompt": False,  # every run processes the whole prompt
        "temperature": 0,
    }
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as resp:
        timings: dict[str, Any] = json.load(resp)["timings"]
    return timings


def speed(reps: int, tokens: int) -> dict[str, Any]:
    """Decode and prompt tokens/s of both servers, runs interleaved (medians)."""
    from llm_nb._embedded import (
        LlamaServer,
        ensure_llama_server,
        ensure_model,
        native_program,
        prebuilt_program,
    )

    model = ensure_model()
    programs = {"prebuilt": prebuilt_program(), "native": native_program(ensure_llama_server())}
    prompt = "Summarize the history of the printing press. " * 12
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in programs}
    servers = {
        k: LlamaServer(p, model=model, alias="smollm2", parallel=1, ctx_size=2048, threads=2)
        for k, p in programs.items()
    }
    try:
        for s in servers.values():
            s.start()
        for s in servers.values():
            _timings(s.url, prompt, 8)  # warm-up: page in the weights
        for _ in range(reps):
            for kind, s in servers.items():
                runs[kind].append(_timings(s.url, prompt, tokens))
    finally:
        for s in servers.values():
            s.stop()
    return {
        kind: {
            "decode_tps": median([r["predicted_per_second"] for r in rs]),
            "prompt_tps": median([r["prompt_per_second"] for r in rs]),
            "prompt_n": median([r["prompt_n"] for r in rs]),
            "decode_n": median([r["predicted_n"] for r in rs]),
            "program": str(programs[kind]),
        }
        for kind, rs in runs.items()
    }


def measure(sizes: Sizes, llama: bool, native_build: bool = True) -> Section:
    section = Section("local")
    if not llama:
        return section
    try:
        fa = first_answer(native_build)
    except Exception as exc:
        fa = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    section.raw["first_answer"] = fa
    if "error" in fa:
        section.rows.append(
            Row(
                "local",
                "first answer, fresh venv + empty cache",
                None,
                None,
                "",
                "s",
                note=f"failed: {fa['error']}",
            )
        )
    else:
        pre = fa["prebuilt"]
        nat = fa.get("native")
        nat_total = (
            fa["install_s"] + sum(nat[k] for k in ("import_s", "model_s", "program_s",
                                                   "start_s", "first_token_s"))
            if nat else None
        )  # fmt: skip
        section.rows.append(
            Row(
                "local",
                'first answer: pip install → first token of `python -m llm_nb "Say hello"`',
                fa["total_s"],
                nat_total,
                "native build, same steps" if nat else "native build not run",
                "s",
                target="≤ 90 s",
                met=fa["total_s"] <= 90,
                note=(
                    f"install {fa['install_s']:.1f} s + command {fa['first_token_s']:.1f} s; "
                    f"parts: model {pre['model_s']:.1f} s, server start {pre['start_s']:.1f} s, "
                    f"first token {pre['first_token_s']:.2f} s"
                    + (
                        f"; native: build {nat['program_s']:.0f} s, start {nat['start_s']:.1f} s"
                        if nat
                        else ""
                    )
                ),
            )
        )
    try:
        sp = speed(sizes.llama_reps, max(32, sizes.llama_tokens))
    except Exception as exc:
        sp = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    section.raw["speed"] = sp
    if "error" in sp:
        section.rows.append(
            Row(
                "local",
                "decode tokens/s, prebuilt vs native",
                None,
                None,
                "",
                "tok/s",
                note=f"failed: {sp['error']}",
            )
        )
        return section
    for key, what in (("decode_tps", "decode"), ("prompt_tps", "prompt")):
        ratio = sp["prebuilt"][key] / sp["native"][key]
        section.rows.append(
            Row(
                "local",
                f"{what} tokens/s, prebuilt (xllamacpp) vs native build, same model",
                sp["prebuilt"][key],
                sp["native"][key],
                "native llama-server",
                "tok/s",
                target="≥ 0.9x",
                met=ratio >= 0.9,
                note=f"median of {sizes.llama_reps} interleaved runs; "
                f"{sp['native']['prompt_n']:.0f} prompt / {sp['native']['decode_n']:.0f} "
                "decoded tokens",
            )
        )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-native-build", action="store_true")
    parser.add_argument("--only", choices=("first-answer", "speed"))
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    if args.only in (None, "first-answer"):
        out["first_answer"] = first_answer(not args.no_native_build)
    if args.only in (None, "speed"):
        out["speed"] = speed(args.reps, args.tokens)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
