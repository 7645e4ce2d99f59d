"""Readable exports of the call log: one call, a run, an evaluation or a conversation, as
Markdown or HTML (prompts, answers and figures) or as JSON Lines for other tools.

Prompts and answers are untrusted text. In Markdown each sits in a fenced block whose fence
is longer than any run of backticks inside it, so nothing in it is read as markup; in HTML
prompts are escaped and answers go through the same sanitizer as the notebook's output.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._units import header, phrase, sig3
from ._row import COLUMNS
from ._store import Store
from ._unstored import as_row

#: The figures shown for each call, named and formatted as the notebook's footers and tables
#: show them (``_units``): "TTFT 1.26 s", a table's "TTFT (s)".
FIGURES = ("ttft_s", "e2e_s", "completion_tokens", "output_tps", "cost_usd")


@dataclass
class Item:
    """One message of a transcript; an answer carries its call's row (figures, request)."""

    role: str
    content: str
    call: dict[str, Any] | None = None
    reasoning: str = ""


@dataclass
class Transcript:
    title: str
    #: Per call: its messages (the prompt as recorded, then the answer), or for a
    #: conversation one list of every message.
    turns: list[list[Item]]
    calls: list[dict[str, Any]]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    conversation: str | None = None


# -- gathering ---------------------------------------------------------------------------


def calls_by_id(store: Store, ids: Sequence[str]) -> list[dict[str, Any]]:
    """The stored rows of these calls (text and request included), in the order asked."""
    found: dict[str, dict[str, Any]] = {}
    with store.reading() as conn:
        if conn is not None:
            for start in range(0, len(ids), 500):
                part = list(ids[start : start + 500])
                cur = conn.execute(
                    f"SELECT * FROM calls WHERE call_id IN ({', '.join('?' * len(part))})", part
                )
                names = [d[0] for d in cur.description]
                for values in cur:
                    row = as_row(names, values)
                    found[row["call_id"]] = row
    return [found[i] for i in ids if i in found]


def calls_of_run(store: Store, run: str) -> list[dict[str, Any]]:
    with store.scan({"run_id": run}) as scan:
        return [as_row(scan.names, v) for chunk in scan.chunks for v in chunk]


def call_turn(row: Mapping[str, Any]) -> list[Item]:
    """A call as messages: its recorded prompt (when kept), then its answer."""
    items: list[Item] = []
    request = _request(row)
    if request is None:
        items.append(Item("note", "the prompt was not recorded (see LLM_NB_RECORD_PROMPTS)"))
    else:
        for m in request.get("messages", []):
            content = str(m.get("content") or "")
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                content += f"\n[tool call {fn.get('name')}: {fn.get('arguments')}]"
            items.append(Item(str(m.get("role")), content))
    items.append(Item("assistant", str(row.get("text") or ""), dict(row),
                      str(row.get("reasoning") or "")))  # fmt: skip
    return items


def _request(row: Mapping[str, Any]) -> dict[str, Any] | None:
    text = row.get("request")
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def gather(
    store: Store,
    *,
    call: str | None = None,
    run: str | None = None,
    conversation: str | None = None,
    frame: Any = None,
) -> Transcript:
    if conversation is not None:
        return _conversation(store, conversation)
    scores: dict[str, dict[str, float]] = {}
    if call is not None:
        calls, title = calls_by_id(store, [call]), f"Call {call}"
    elif run is not None:
        calls, title = calls_of_run(store, run), f"Run {run}"
    else:
        df = getattr(frame, "frame", frame)  # an EvalResult, or a frame of calls
        ids = [str(i) for i in df["call_id"] if isinstance(i, str)]
        calls = calls_by_id(store, ids)
        name = getattr(frame, "run", None)
        title = f"Evaluation {name}" if name is not None else f"{len(ids)} calls"
        score_cols = [c for c in df.columns if str(c).startswith("score_")]
        for _, r in df.iterrows():
            if isinstance(r["call_id"], str) and score_cols:
                scores[r["call_id"]] = {c[6:]: r[c] for c in score_cols}
    return Transcript(title, [call_turn(c) for c in calls], calls, scores)


def _conversation(store: Store, name: str) -> Transcript:
    from ._conversations import current

    messages = current(store, name)
    ids = [i for _, _, i in messages if i]
    rows = {r["call_id"]: r for r in calls_by_id(store, ids)}
    items = []
    for role, content, call_id in messages:
        row = rows.get(call_id) if call_id else None
        items.append(Item(role, content, row, str(row.get("reasoning") or "") if row else ""))
    return Transcript(f"Conversation {name}", [items], list(rows.values()), conversation=name)


# -- figures -----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def figures(row: Mapping[str, Any]) -> list[str]:
    out = [str(row.get("status"))]
    for col in FIGURES:
        value = _number(row.get(col))
        if value is not None:
            out.append(phrase(col, value))
    if row.get("finish_reason"):
        out.append(f"finish {row['finish_reason']}")
    return out


def per_model(calls: Iterable[Mapping[str, Any]], scores: Mapping[str, Mapping[str, float]]
              ) -> list[dict[str, Any]]:  # fmt: skip
    """One line per model: calls, ok, the mean of each figure and score over ok calls."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for c in calls:
        groups.setdefault(model_id(c), []).append(c)
    lines = []
    for model, rows in groups.items():
        ok = [r for r in rows if r.get("status") == "ok"]
        line: dict[str, Any] = {"model": model, "calls": len(rows), "ok": len(ok)}
        for col in FIGURES:
            line[header(col)] = _mean([_number(r.get(col)) for r in ok])
        names = sorted({n for r in rows for n in scores.get(r["call_id"], {})})
        for n in names:
            line[f"score {n}"] = _mean([_number(scores.get(r["call_id"], {}).get(n)) for r in ok])
        lines.append(line)
    return lines


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def model_id(row: Mapping[str, Any]) -> str:
    return f"{row.get('provider')}:{row.get('model')}@{row.get('host')}"


def _when(row: Mapping[str, Any]) -> str:
    at = row.get("started_at")
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(at, datetime) else ""


# -- Markdown ----------------------------------------------------------------------------


def _fenced(text: str, info: str = "text") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _inline(text: str) -> str:
    """Untrusted text on one line of Markdown, as code (nothing in it is markup)."""
    text = " ".join(str(text).split())
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    tick = "`" * (longest + 1)
    return f"{tick} {text} {tick}"


def _escaped(text: str) -> str:
    """Untrusted text as literal Markdown text: every ASCII punctuation mark escaped."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join(str(text).split()))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return sig3(value)
    if value is None:
        return ""
    return _inline(str(value)) if isinstance(value, str) else str(value)


def markdown(t: Transcript, source: Path) -> str:
    out = [f"# {_escaped(t.title)}", "",
           f"Exported from the llm_nb call log {_inline(str(source))} on "
           f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}: {len(t.calls)} calls.", ""]  # fmt: skip
    table = per_model(t.calls, t.scores)
    if table:
        heads = list(dict.fromkeys(k for line in table for k in line))
        out += ["| " + " | ".join(_escaped(h) for h in heads) + " |", "|" + "---|" * len(heads)]
        for line in table:  # a pipe would end a cell, even inside code
            cells = (_cell(line.get(h)).replace("|", "\\|") for h in heads)
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    for n, turn in enumerate(t.turns, 1):
        if t.conversation is None:
            row = turn[-1].call or {}
            call_id = _inline(row.get("call_id", ""))
            out += [f"## {n}. {_inline(model_id(row))} {_when(row)}", "",
                    " · ".join(figures(row)) + f" · call {call_id}"]  # fmt: skip
            score = t.scores.get(row.get("call_id", ""))
            if score:
                shown = ", ".join(f"{_escaped(k)} {_cell(v)}" for k, v in score.items())
                out += ["", f"scores: {shown}"]
            out.append("")
        for item in turn:
            out += _markdown_item(item, t.conversation is not None)
    return "\n".join(out).rstrip() + "\n"


def _markdown_item(item: Item, with_figures: bool) -> list[str]:
    if item.role == "note":
        return [f"*{item.content}*", ""]
    head = f"**{item.role}**"
    if with_figures and item.call is not None:
        head += f" ({_inline(model_id(item.call))}: {' · '.join(figures(item.call))})"
    lines = [head, ""]
    if item.reasoning:
        lines += ["*reasoning*", "", _fenced(item.reasoning), ""]
    return [*lines, _fenced(item.content), ""]


# -- HTML --------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}"
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:.6rem;border-radius:4px}"
    ".role{font-weight:600;margin-top:1rem}.figures{color:#555;font-size:.9rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem}"
)


def html_page(t: Transcript, source: Path) -> str:
    from .._safe_html import markdown_html

    e = html.escape
    out = ["<!doctype html>", '<html><head><meta charset="utf-8">',
           f"<title>{e(t.title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{e(t.title)}</h1>",
           f"<p>Exported from the llm_nb call log {e(str(source))} on "
           f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}: {len(t.calls)} calls.</p>"]  # fmt: skip
    table = per_model(t.calls, t.scores)
    if table:
        heads = list(dict.fromkeys(k for line in table for k in line))
        out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr>")
        for line in table:
            cells = "".join(f"<td>{e(_plain(line.get(h)))}</td>" for h in heads)
            out.append(f"<tr>{cells}</tr>")
        out.append("</table>")
    for n, turn in enumerate(t.turns, 1):
        out.append("<section>")
        if t.conversation is None:
            row = turn[-1].call or {}
            out.append(f"<h2>{n}. {e(model_id(row))} {e(_when(row))}</h2>")
            shown = " · ".join(figures(row)) + f" · call {row.get('call_id', '')}"
            score = t.scores.get(row.get("call_id", ""))
            if score:
                shown += " · scores: " + ", ".join(f"{k} {_plain(v)}" for k, v in score.items())
            out.append(f'<p class="figures">{e(shown)}</p>')
        for item in turn:
            if item.role == "note":
                out.append(f"<p><i>{e(item.content)}</i></p>")
                continue
            head = e(item.role)
            if t.conversation is not None and item.call is not None:
                head += (f' <span class="figures">({e(model_id(item.call))}: '
                         f"{e(' · '.join(figures(item.call)))})</span>")  # fmt: skip
            out.append(f'<div class="role">{head}</div>')
            if item.reasoning:
                out.append(f"<details><summary>reasoning</summary><pre>{e(item.reasoning)}"
                           "</pre></details>")  # fmt: skip
            if item.role == "assistant":
                out.append(f"<div>{markdown_html(item.content)}</div>")
            else:
                out.append(f"<pre>{e(item.content)}</pre>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return sig3(value)
    return "" if value is None else str(value)


# -- JSON Lines --------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def jsonl(t: Transcript) -> str:
    """One object per call (its columns, text, reasoning, request and scores); for a
    conversation, one per message (with its call's columns for an answer)."""
    lines = []
    if t.conversation is not None:
        for seq, item in enumerate(t.turns[0], 1):
            obj: dict[str, Any] = {"conversation": t.conversation, "seq": seq,
                                   "role": item.role, "content": item.content}  # fmt: skip
            if item.call is not None:
                obj["call"] = _call_json(item.call, {})
            lines.append(json.dumps(obj, ensure_ascii=False))
    else:
        for row in t.calls:
            lines.append(json.dumps(_call_json(row, t.scores), ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def _call_json(row: Mapping[str, Any], scores: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    obj = {k: _json_value(v) for k, v in row.items() if k in COLUMNS or k in (
        "text", "reasoning", "replay_of")}  # fmt: skip
    obj["request"] = _request(row)
    if row.get("call_id") in scores:
        obj["scores"] = {k: _json_value(v) for k, v in scores[row["call_id"]].items()}
    return obj


# -- the entry point ---------------------------------------------------------------------

FORMATS = (".md", ".html", ".jsonl")


def write(
    path: Path,
    *,
    call: str | None = None,
    run: str | None = None,
    conversation: str | None = None,
    frame: Any = None,
    store_path: Path | None = None,
) -> Path:
    from .._errors import InvalidOptionError
    from ._store import StatsStoreError, cause

    store = Store(store_path)
    try:
        t = gather(store, call=call, run=run, conversation=conversation, frame=frame)
    finally:
        store.close()
    if not any(t.turns):
        named = {"call": call, "run": run, "conversation": conversation}
        what = next((f"{k} {v!r}" for k, v in named.items() if v is not None), "call")
        raise InvalidOptionError(f"nothing to export: no {what} in the call log {store.path}")
    if path.suffix == ".md":
        text = markdown(t, store.path)
    elif path.suffix == ".html":
        text = html_page(t, store.path)
    else:
        text = jsonl(t)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise StatsStoreError(f"cannot write {path}: {cause(exc)}") from None
    return path
