"""An evaluation's progress (llm_nb/_eval/_progress.py): one rewritten line on a terminal, a
widget in a kernel, a line on stderr."""

from __future__ import annotations

import io

import pytest

import llm_nb
from llm_nb._eval import _progress
from llm_nb._registry import Registry
from tests.eval.scripted_server import MockServer, serve


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_progress_rewrites_one_line_on_a_terminal_only() -> None:
    tty = Tty()
    shown = _progress.TextProgress("evaluate r", tty, every_s=0)
    shown.start(3, 1)
    shown.current("llamacpp:m@h:1")
    shown.advance(error=True)
    shown.advance(error=False)
    shown.close()
    out = tty.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n") and out.count("\r") >= 4
    assert "evaluate r: 3/3 cells · 1 failed" in out.rsplit("\r", 1)[1]
    pipe = io.StringIO()
    shown = _progress.TextProgress("evaluate r", pipe, every_s=0)
    shown.start(2, 0)
    shown.advance(error=False)
    shown.close("interrupted", failed=True)
    assert pipe.getvalue().count("\n") == 1 and "1/2 cells" in pipe.getvalue()
    assert "interrupted" in pipe.getvalue()


def test_widget_progress_in_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "in_kernel", lambda: True)
    shown = _progress.make_progress(True, "evaluate r")
    assert isinstance(shown, _progress.WidgetProgress)
    shown.start(4, 1)
    shown.advance(error=False)
    shown.close()
    assert (shown.bar.value, shown.bar.max, shown.bar.bar_style) == (2, 4, "success")
    assert "2/4 cells" in shown.text.value
    monkeypatch.setattr(_progress, "in_kernel", lambda: False)
    assert isinstance(_progress.make_progress(True, "x"), _progress.TextProgress)
    assert isinstance(_progress.make_progress(False, "x"), _progress.NullProgress)


async def test_progress_line_on_stderr(reg: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    server = MockServer()
    model = serve(reg, server, "eval-a:11").format("m")
    result = await llm_nb.aevaluate(["a", "b"], [model], warmup=0, run="shown")
    err = capsys.readouterr().err
    assert err == err.splitlines()[0] + "\n" and "evaluate shown: 2/2 cells" in err
    assert result.run == "shown"
