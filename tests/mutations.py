"""Deliberate breaks, one at a time, and which tests catch each.

Each mutation is a text substitution in one file of a copy of this checkout (tracked files
plus untracked ones git does not ignore). For each, the script applies the substitution,
runs the tests listed for it in that copy with this interpreter, and reports which of them
failed. A mutation no test catches is a hole in the suite; a mutation whose text is no longer
in its file is reported as stale (the code moved on: update the mutation).

    python tests/mutations.py                # every mutation, the fast (not server) tests
    python tests/mutations.py --server       # also the tests that need llama-server
    python tests/mutations.py --only throttle-removed --only redaction-removed
    python tests/mutations.py --suite        # the whole fast suite for each (slow)
    python tests/mutations.py --list

Before the mutations, the same tests run once on the unchanged copy: a test that already
fails there would count as a catch for every mutation, so the script stops instead.
Not part of CI; run it before releasing a feature, and add a mutation with each new guard.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  #: relative to the repository root
    old: str  #: must occur exactly once in the file
    new: str
    fast: tuple[str, ...]  #: test node ids (or files) expected to catch it, no llama-server
    server: tuple[str, ...] = ()  #: the same, needing llama-server (run with --server)
    what: str = ""


MAGICS = "tests/magics/test_magics.py"
KERNEL = "tests/magics/test_kernel.py"
CHAT = "tests/widgets/test_chat.py"
PICKER = "tests/widgets/test_picker.py"
CONNECTIONS = "tests/wire/test_connections.py"

MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "server-reaped-by-is-running",
        "llm_nb/_embedded/process/server.py",
        "return proc is not None and proc.returncode is None and not exited_unreaped(proc.pid)",
        "return proc is not None and proc.poll() is None",
        fast=("tests/embedded/test_server.py::test_asking_whether_it_runs_never_reaps_the_server",),
        what="asking whether the server runs reaps it, so stop() skips the group's SIGKILL",
    ),
    Mutation(
        "throttle-removed",
        "llm_nb/_present/_runner.py",
        "await asyncio.sleep(throttle_s)",
        "await asyncio.sleep(0)",
        fast=(f"{MAGICS}::test_live_display_redraws_at_most_and_at_least_once_per_throttle",),
        server=(
            f"{MAGICS}::test_rich_view_is_throttled_and_ends_with_the_answer",
            f"{KERNEL}::test_long_answer_costs_a_bounded_number_of_updates",
        ),
        what="a cell's live display redraws on every token",
    ),
    Mutation(
        "live-redraws-removed",
        "llm_nb/_present/_runner.py",
        "            post(draw_live)\n            # The rate bound",
        "            pass  # no live redraw\n            # The rate bound",
        fast=(f"{MAGICS}::test_live_display_redraws_at_most_and_at_least_once_per_throttle",),
        server=(
            f"{MAGICS}::test_rich_view_is_throttled_and_ends_with_the_answer",
            f"{KERNEL}::test_long_answer_costs_a_bounded_number_of_updates",
        ),
        what="the answer appears only when it is complete (throttle tests bounded above only)",
    ),
    Mutation(
        "silent-frames-not-paced",
        "llm_nb/_present/_runner.py",
        "                pass\n            else:",
        "                post(frames.live)\n                continue\n            else:",
        fast=(f"{MAGICS}::test_a_frame_drawn_during_a_pause_is_throttled_too",),
        server=(f"{MAGICS}::test_rich_view_is_throttled_and_ends_with_the_answer",),
        what="a frame asked for in a pause is not paced: drawn late, the next follows at once",
    ),
    Mutation(
        "stopped-calls-not-settled",
        "llm_nb/_present/_runner.py",
        "        settle(self._calls)\n        self._draw(True)\n",
        "        self._draw(True)\n",
        fast=(f"{MAGICS}::test_interrupt_keeps_the_partial_answer_on_screen",),
        server=(
            f"{MAGICS}::test_interrupt_keeps_partial_and_records_cancelled",
            f"{KERNEL}::test_interrupt_stops_the_stream_and_keeps_the_partial_answer",
        ),
        what="after Ctrl-C the cell's final frame does not say the answer was interrupted",
    ),
    Mutation(
        "predicted-ms-10pct-high",
        "llm_nb/providers/openai.py",
        'decode_ms = t.get("predicted_ms")',
        'decode_ms = t.get("predicted_ms") and t["predicted_ms"] * 1.1',
        fast=("tests/stats/test_row.py::test_llama_server_timings_map_to_srv_columns",),
        what="llama-server's decode time read 10% high in the stats row",
    ),
    Mutation(
        "ollama-durations-us-not-ms",
        "llm_nb/providers/ollama.py",
        "return ns / 1e6 if",
        "return ns / 1e3 if",
        fast=(
            "tests/stats/test_row.py::test_ollama_durations_map_to_srv_columns",
            "tests/providers/test_ollama.py::test_ollama_chat_stream_tools_and_durations",
        ),
        what="Ollama's *_duration nanoseconds converted with the wrong factor",
    ),
    Mutation(
        "redaction-removed",
        "llm_nb/_wire/redact.py",
        '    if secret:\n        message = message.replace(secret, "[redacted]")\n'
        '    return " ".join(redact_keylike(message).split())\n',
        '    return " ".join(message.split())\n',
        fast=(
            "tests/providers/test_base.py::test_auth_error_message_has_no_key",
            "tests/test_secrets.py::test_canary_never_leaks_from_fault_servers",
        ),
        what="a key echoed in an error body reaches the exception message",
    ),
    Mutation(
        "panel-stop-does-nothing",
        "llm_nb/_widgets/_chat.py",
        "self.stop_button.on_click(lambda _: self.stop())",
        "self.stop_button.on_click(lambda _: None)",
        fast=(f"{CONNECTIONS}::test_stop_in_a_panel_closes_connection",),
        server=(f"{CHAT}::test_stop_mid_answer_keeps_the_partial_text_and_frees_the_slot",),
        what="the chat panel's Stop button is not wired",
    ),
    Mutation(
        "compare-stop-does-nothing",
        "llm_nb/_widgets/_compare.py",
        "self.stop_button.on_click(lambda _: self.stop())",
        "self.stop_button.on_click(lambda _: None)",
        fast=(f"{CONNECTIONS}::test_stop_in_a_panel_closes_connection",),
        what="the compare panel's Stop button is not wired",
    ),
    Mutation(
        "widgets-updated-from-the-loop-thread",
        "llm_nb/_present/_work.py",
        "lambda post: self._guarded(body, post), self._apply, self._remember",
        "lambda post: self._guarded(body, _now), self._apply, self._remember",
        fast=(f"{CHAT}::test_without_a_running_loop_widgets_change_on_the_callers_thread",),
        server=(f"{CHAT}::test_without_a_running_loop_the_work_runs_on_llm_nb_loop",),
        what="without a running loop, widgets are changed from llm_nb's loop thread",
    ),
    Mutation(
        "picker-status-polls-hidden",
        "llm_nb/_widgets/_picker.py",
        'post(functools.partial(self._progress, f"{name}: {status} ({elapsed:.1f} s)"))',
        "pass  # no status line",
        fast=(f"{PICKER}::test_picker_shows_the_model_status_while_it_loads",),
        server=(f"{PICKER}::test_picker_loads_and_unloads_on_a_router",),
        what="the picker shows nothing while a router loads a model",
    ),
    Mutation(
        "ollama-stream-error-line-ignored",
        "llm_nb/providers/ollama.py",
        '        if obj.get("error"):\n            raise self._stream_error(obj, record)\n',
        '        if obj.get("error") and False:\n'
        "            raise self._stream_error(obj, record)\n",
        fast=("tests/test_secrets.py::test_canary_never_leaks_from_fault_servers",),
        what="an error line in Ollama's stream is skipped (the Ollama outcome was never checked)",
    ),
    Mutation(
        "connection-limit-below-the-load",
        "llm_nb/_wire/http.py",
        "max_connections=config.max_connections,",
        "max_connections=min(config.max_connections, 200),",
        fast=(
            "tests/wire/test_concurrent_streams.py"
            "::test_300_concurrent_streams_every_token_in_order",
        ),
        what="fewer streams open at once than asked (checked per round, not a running max)",
    ),
    Mutation(
        "eval-html-without-rows",
        "llm_nb/_eval/_result.py",
        "return _tables.eval_table(self.summary)",
        "return _tables.eval_table(self.summary.head(0))",
        fast=("tests/eval/test_result.py::test_frame_summary_and_scores",),
        what="the evaluation's HTML summary has no rows ('6' matched the run id's year)",
    ),
    Mutation(
        "eval-contenders-back-to-back",
        "llm_nb/_eval/_runner.py",
        'run = _grouped if plan.order == "grouped" else _interleaved',
        "run = _grouped",
        fast=(
            "tests/eval/test_plan.py::test_contenders_are_interleaved_round_by_round_across_servers",
        ),
        what="evaluate() runs each contender's prompts back to back, so load tilts comparisons",
    ),
    Mutation(
        "median-interval-narrower-than-its-confidence",
        "llm_nb/_eval/_intervals.py",
        "if coverage < confidence or k > n + 1 - k:",
        "if coverage < confidence - 0.2 or k > n + 1 - k:",
        fast=(
            "tests/eval/test_intervals.py::test_median_interval_covers_the_median_of_skewed_timings",
        ),
        what="the median's interval claims 95% but covers less",
    ),
    Mutation(
        "table-text-cells-not-escaped",
        "llm_nb/_tables.py",
        """tds.append(f'<td style="{_TEXT_CELL}">{escape(value)}</td>')""",
        """tds.append(f'<td style="{_TEXT_CELL}">{value}</td>')""",
        fast=("tests/test_tables.py::test_hostile_model_names_are_text",),
        what="a model name from a server reaches %llm_stats's table as markup",
    ),
    Mutation(
        "table-rows-in-recorded-order",
        "llm_nb/_tables.py",
        "order = [(by_id[cid], label) for cid, label in zip(call_ids, labels, strict=True)",
        "order = [(i, label) for i, (cid, label) in enumerate(zip(call_ids, labels, strict=True))",
        fast=("tests/test_tables.py::test_answers_table_follows_the_answers_order_and_labels",),
        what="the side-by-side table's rows follow the order calls finished, not the answers'",
    ),
    Mutation(
        "table-counts-as-floats",
        "llm_nb/_units.py",
        'return f"{round(float(value)):,}"',
        'return f"{float(value):,}"',
        fast=("tests/test_tables.py::test_calls_table_layout",),
        what="token counts show as 41.0",
    ),
    Mutation(
        "summary-percentile-columns-renamed",
        "llm_nb/_stats/_frames.py",
        'out[f"{m}_{name}"] = qs[q]',
        'out[f"{m}_q{name}"] = qs[q]',
        fast=("tests/eval/test_result.py::test_frame_summary_and_scores",),
        server=(f"{MAGICS}::test_llm_stats",),
        what="%llm_stats --summary loses ttft_s_p50 (any column with 'ttft' passed before)",
    ),
    Mutation(
        "sync-stream-close-raises-in-consumer",
        "llm_nb/_loop.py",
        "if item is _DONE or self._closed:",
        "if item is _DONE:",
        fast=(f"{CONNECTIONS}::test_sync_stream_closed_from_another_thread",),
        what="closing a sync stream from another thread raises in the consumer",
    ),
    Mutation(
        "facts-fetch-on-the-callers-loop",
        "llm_nb/_session.py",
        "        job = self.loop.submit(self._fetch_server_facts(recorder, key, record))\n",
        "        job = self.loop.submit(self._fetch_server_facts(recorder, key, record))\n"
        "        __import__('asyncio').get_running_loop().create_task("
        "self._fetch_server_facts(recorder, key, record))\n",
        fast=(f"{CONNECTIONS}::test_a_finished_call_leaves_no_task_on_the_callers_loop",),
        what="a background request left on the caller's loop (the session-end warning)",
    ),
    Mutation(
        "ollama-listing-orphans-a-request",
        "llm_nb/providers/ollama.py",
        "        try:\n            tags, ps = await asyncio.gather(*requests)\n        finally:\n",
        "        tags, ps = await asyncio.gather(*requests)\n        if False:\n",
        fast=(f"{CONNECTIONS}::test_an_ollama_listing_that_fails_leaves_no_request_running",),
        what="the other half of a failed Ollama listing keeps running in the background",
    ),
)


def checkout_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def copy_tree(dest: Path) -> None:
    for rel in checkout_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)


def run_pytest(
    root: Path, tests: list[str], *, server: bool, timeout: float
) -> tuple[set[str], str]:
    """The failing test ids (failures and errors) and the summary line."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *tests]
    if not server:
        cmd[4:4] = ["-m", "not server"]
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        proc = subprocess.run(
            cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"(timed out)"}, f"timed out after {timeout:.0f} s"
    failed = set(re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.M))
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else proc.stderr.strip()[-200:]
    if proc.returncode not in (0, 1) and not failed:
        failed = {f"(pytest exit {proc.returncode})"}
    return failed, summary


def tests_for(m: Mutation, args: argparse.Namespace) -> list[str]:
    if args.suite:
        return ["tests"]
    return list(m.fast) + (list(m.server) if args.server else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="a mutation's name")
    parser.add_argument("--server", action="store_true", help="also run server tests")
    parser.add_argument("--suite", action="store_true", help="whole (fast) suite per mutation")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=900.0, help="per pytest run, s")
    args = parser.parse_args(argv)

    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:38} {m.path}: {m.what}")
        return 0

    with tempfile.TemporaryDirectory(prefix="llm_nb-mutations-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        every = sorted({t for m in chosen for t in tests_for(m, args) if t})
        print(f"baseline: {len(every)} test ids on the unchanged copy ...", flush=True)
        failed, summary = run_pytest(root, every, server=args.server, timeout=args.timeout)
        if failed:
            print(f"baseline fails ({summary}): {sorted(failed)}; fix that first")
            return 2
        print(f"baseline: {summary}\n", flush=True)

        holes = skipped = 0
        for m in chosen:
            path = root / m.path
            original = path.read_text()
            count = original.count(m.old)
            if count != 1:
                print(f"STALE  {m.name}: its text occurs {count} times in {m.path}")
                holes += 1
                continue
            tests = tests_for(m, args)
            if not tests:
                print(f"SKIP   {m.name}: only server tests catch it (run with --server)")
                skipped += 1
                continue
            path.write_text(original.replace(m.old, m.new))
            t0 = time.monotonic()
            try:
                failed, summary = run_pytest(root, tests, server=args.server, timeout=args.timeout)
            finally:
                path.write_text(original)
            took = time.monotonic() - t0
            if failed:
                print(f"CAUGHT {m.name} ({took:.0f} s): {m.what}")
                for test in sorted(failed):
                    print(f"         by {test}")
            else:
                holes += 1
                print(f"MISSED {m.name} ({took:.0f} s): {m.what}; {summary}")
        tried = len(chosen) - skipped
        print(f"\n{tried - holes} of {tried} mutations caught; {skipped} left to --server")
        return 1 if holes else 0


if __name__ == "__main__":
    sys.exit(main())
