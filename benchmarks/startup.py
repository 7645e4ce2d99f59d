"""Start-up cost: one step timed in a fresh Python process that already has an IPython shell.

Each repetition is a new ``python -c`` process that creates an ``InteractiveShell`` (not
timed) and then times exactly one step: ``%load_ext llm_nb``, ``import llm_nb``,
``import httpx`` (the floor: what any HTTP client must import), ``%load_ext
jupyter_ai_magics`` or ``import llm``. Cases are interleaved; the first round only fills the
bytecode caches (in a scratch ``PYTHONPYCACHEPREFIX``) and is dropped.
"""

from __future__ import annotations

import tempfile

from ._common import Row, Section, Sizes, child_env, median, run_child

_CHILD = r"""
import contextlib, importlib, io, json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
kind, name = sys.argv[1], sys.argv[2]
sink = io.StringIO()
error = None
t0 = time.perf_counter()
try:
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        if kind == "import":
            importlib.import_module(name)
        else:
            shell.run_line_magic("load_ext", name)
except Exception as exc:
    error = repr(exc)
t1 = time.perf_counter()
if kind == "load_ext" and error is None and name not in shell.extension_manager.loaded:
    error = "not an IPython extension (no load_ipython_extension): " + sink.getvalue()[-200:]
print("BENCH_JSON " + json.dumps({"s": t1 - t0, "error": error}))
"""

CASES = {
    "import httpx": ("import", "httpx"),
    "%load_ext llm_nb": ("load_ext", "llm_nb"),
    "import llm_nb": ("import", "llm_nb"),
    "%load_ext jupyter_ai_magics": ("load_ext", "jupyter_ai_magics"),
    "import llm": ("import", "llm"),
}
PEERS = ("%load_ext jupyter_ai_magics", "import llm")


def measure(sizes: Sizes, peers: bool) -> Section:
    section = Section("startup")
    cases = [c for c in CASES if peers or c not in PEERS]
    times: dict[str, list[float]] = {c: [] for c in cases}
    errors: dict[str, str] = {}
    # Bytecode caches in a scratch prefix, written by the first (dropped) round: every case
    # then loads compiled modules, as a user's installed packages do, even where the
    # environment says PYTHONDONTWRITEBYTECODE, and nothing is written into the source tree.
    pycache = tempfile.mkdtemp(prefix="llm_nb-bench-pycache-")
    env = child_env(PYTHONPYCACHEPREFIX=pycache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    rounds = sizes.startup_reps + (1 if sizes.startup_reps > 1 else 0)
    for rep in range(rounds):
        for case in cases[rep % len(cases) :] + cases[: rep % len(cases)]:
            if case in errors:
                continue
            kind, name = CASES[case]
            result = run_child(["-c", _CHILD, kind, name], timeout=120, env=env)
            error = result.get("error")
            if error:
                errors[case] = "not available: " + str(error)[:200]
            elif rounds == 1 or rep > 0:
                times[case].append(result["s"] * 1e3)
    section.raw = {"ms": times, "errors": errors}

    def ms(case: str) -> float | None:
        return median(times[case]) if times.get(case) else None

    floor = ms("import httpx")
    ours_case = "%load_ext llm_nb" if ms("%load_ext llm_nb") is not None else "import llm_nb"
    ours = ms(ours_case)
    note = (
        ""
        if ours_case == "%load_ext llm_nb"
        else "%load_ext llm_nb " + errors.get("%load_ext llm_nb", "not available")
    )
    section.rows.append(
        Row(
            "startup",
            f"{ours_case} in a fresh IPython process (median of {len(times[ours_case])})",
            ours,
            floor,
            "import httpx",
            "ms",
            target="≤ 1.5x import httpx",
            met=None if ours is None or floor is None else ours <= 1.5 * floor,
            note=note,
        )
    )
    if ours_case != "import llm_nb":
        value = ms("import llm_nb")
        section.rows.append(
            Row(
                "startup",
                "import llm_nb in a fresh IPython process",
                value,
                floor,
                "import httpx",
                "ms",
                target="(info)",
            )
        )
    for peer in (c for c in PEERS if c in cases):
        theirs = ms(peer)
        section.rows.append(
            Row(
                "startup",
                f"{ours_case} vs {peer}",
                ours,
                theirs,
                peer,
                "ms",
                target="≤ 0.1 (≥ 10x faster)",
                met=None if ours is None or theirs is None else ours * 10 <= theirs,
                note=errors.get(peer, ""),
            )
        )
    return section
