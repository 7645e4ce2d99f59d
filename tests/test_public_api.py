"""The public API (``llm_nb/__init__.py``): one table of names, lazy import, typed options,
and every llm_nb type a public function takes or returns exported."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

import llm_nb
from llm_nb import ChatKwargs, ChatOptions
from tools.api_reference import MADE_BY_LLM_NB

INIT = Path(llm_nb.__file__)


def _type_checking_imports() -> set[tuple[str, str]]:
    """(module, name) of each import under ``if TYPE_CHECKING:`` in ``__init__.py``."""
    found = set()
    for node in ast.parse(INIT.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.unparse(imp)
                for alias in imp.names:
                    # `X as X` is what tells mypy's strict mode that X is re-exported
                    assert alias.asname == alias.name, ast.unparse(imp)
                    found.add(("." * imp.level + (imp.module or ""), alias.name))
    return found


def test_each_name_is_listed_once_and_the_type_checker_imports_agree() -> None:
    table = [(module, name) for module, names in llm_nb._EXPORTS.items() for name in names]
    names = [name for _, name in table]
    assert len(names) == len(set(names)), "a name is listed twice in _EXPORTS"
    assert set(table) == _type_checking_imports()
    assert llm_nb.__all__ == sorted(names)


def test_every_name_is_defined_where_the_table_says() -> None:
    for module, names in llm_nb._EXPORTS.items():
        defined = importlib.import_module(module, "llm_nb")
        for name in names:
            assert getattr(llm_nb, name) is getattr(defined, name), name
    assert set(dir(llm_nb)) >= set(llm_nb.__all__)
    with pytest.raises(AttributeError, match="no attribute 'chatt'"):
        llm_nb.chatt  # type: ignore[attr-defined]  # noqa: B018


def test_the_old_name_of_new_run_still_works_and_says_so() -> None:
    assert "run" not in llm_nb.__all__
    with pytest.warns(DeprecationWarning, match=r"llm_nb\.run is now llm_nb\.new_run"):
        old = llm_nb.run  # type: ignore[attr-defined]
    assert old is llm_nb.new_run
    with old("renamed") as run_id:
        assert run_id == "renamed"


def test_import_defines_names_and_imports_nothing() -> None:
    """Nothing but llm_nb._observers, a few lines of the standard library through which the
    package root tells providers outside any session where the default session is."""
    code = (
        "import sys, llm_nb\n"
        "print(sorted(m for m in sys.modules if m.startswith('llm_nb.') or m in "
        "('httpx', 'pandas', 'ipywidgets', 'IPython')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['llm_nb._observers']"


# -- options ----------------------------------------------------------------------------------

ENTRY_POINTS: dict[str, Callable[..., Any]] = {
    "chat": llm_nb.chat,
    "stream": llm_nb.stream,
    "achat": llm_nb.achat,
    "astream": llm_nb.astream,
    "Provider.chat": llm_nb.Provider.chat,
    "Provider.stream": llm_nb.Provider.stream,
    "evaluate": llm_nb.evaluate,
    "aevaluate": llm_nb.aevaluate,
    "chat_panel": llm_nb.chat_panel,
    "compare_panel": llm_nb.compare_panel,
}


def test_the_options_are_defined_once_and_every_entry_point_takes_them() -> None:
    options = list(ChatKwargs.__annotations__)
    assert options == list(ChatOptions.__dataclass_fields__)
    for where, fn in ENTRY_POINTS.items():
        params = inspect.signature(fn).parameters.values()
        keywords = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        assert keywords[-len(options) :] == options, where
        assert all(p.kind is not p.VAR_KEYWORD for p in params), where
        assert "Unpack[ChatKwargs]" in str(fn.__annotations__["options"]), where


def test_the_signature_shown_takes_nothing_from_behaviour() -> None:
    """The spelled-out signature is for help() and completion; calls still go through the
    checks, so an untyped caller's wrong option is refused naming it."""
    with pytest.raises(llm_nb.InvalidOptionError, match="unknown option temprature"):
        llm_nb.chat("openai:m@127.0.0.1:9", "hi", temprature=0)  # type: ignore[call-arg]
    assert inspect.iscoroutinefunction(llm_nb.achat)
    assert inspect.iscoroutinefunction(llm_nb.Provider.chat)


USER_CODE_OK = """
import llm_nb

answer: llm_nb.ChatResponse = llm_nb.chat(
    "local", "Hi", temperature=0, max_tokens=8, stop=["\\n"], extra={"top_k": 40}
)
for delta in llm_nb.stream("local", "Hi", timeout=5, seed=1, response_format="json"):
    pass
provider = llm_nb.OpenAIProvider("http://127.0.0.1:8080", http=llm_nb.HTTPConfig())
stream: llm_nb.ChatStream = provider.stream(
    "m", "Hi", tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="auto"
)


async def main() -> llm_nb.ChatResponse:
    async for _ in llm_nb.astream("local", [{"role": "user", "content": "Hi"}], top_p=0.9):
        pass
    return await llm_nb.achat("local", "Hi", system="Be brief.", read_timeout=30.0)
"""

USER_CODE_WRONG = """
import llm_nb

llm_nb.chat("local", "Hi", temprature=0)
llm_nb.stream("local", "Hi", max_tokens="8")
llm_nb.OpenAIProvider("http://127.0.0.1:8080").stream("m", "Hi", stop=5)
llm_nb.achat("local", "Hi", response_format="yaml")
"""


@pytest.mark.slow
def test_mypy_sees_a_wrong_option_in_user_code(tmp_path: Path) -> None:
    from mypy import api

    (tmp_path / "ok.py").write_text(USER_CODE_OK)
    (tmp_path / "wrong.py").write_text(USER_CODE_WRONG)
    out, err, status = api.run(
        [
            "--strict",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            str(tmp_path / "ok.py"),
            str(tmp_path / "wrong.py"),
        ]
    )
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not [e for e in errors if "ok.py" in e], out + err
    wrong = {int(e.split(":")[1]): e for e in errors if "wrong.py" in e}
    assert sorted(wrong) == [4, 5, 6, 7], out + err
    assert 'Unexpected keyword argument "temprature"' in wrong[4]
    assert 'did you mean "temperature"' in wrong[4]
    assert '"max_tokens"' in wrong[5] and "int | None" in wrong[5]
    assert '"stop"' in wrong[6] and '"response_format"' in wrong[7]
    assert status == 1


# -- every type the public API takes or returns is exported -----------------------------------


@cache
def _tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Top-level statements, with those under ``if TYPE_CHECKING:`` (and ``else``)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _statements(node.body)
            yield from _statements(node.orelse)
        else:
            yield node


@cache
def _origin(module: str, name: str) -> tuple[str, str] | str | None:
    """Where ``name``, as seen in llm_nb module ``module``, is defined: (module, name), a
    module's dotted name for a module, or None when it comes from outside llm_nb."""
    spec = importlib.util.find_spec(module)
    is_package = spec is not None and spec.submodule_search_locations is not None
    package = module if is_package else module.rpartition(".")[0]
    for node in _statements(_tree(module).body):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            for alias in node.names:
                if (alias.asname or alias.name) != name:
                    continue
                if not base.startswith("llm_nb"):
                    return None
                if _is_module(f"{base}.{alias.name}"):
                    return f"{base}.{alias.name}"
                return _origin(base, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if (alias.asname or alias.name.partition(".")[0]) == name:
                    return alias.name if alias.name.startswith("llm_nb") else None
        elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == name:
                return (module, name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return (module, name)
    return None


def _defined_in(module: str, expr: str) -> Iterator[tuple[str, str]]:
    """The llm_nb definitions an annotation (source text, as written in ``module``) names."""
    for node in ast.walk(ast.parse(expr, mode="eval")):
        chain: list[str] = []
        while isinstance(node, ast.Attribute):
            chain.insert(0, node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or (chain and not isinstance(node.ctx, ast.Load)):
            continue
        where = _origin(module, node.id)
        for attr in chain:
            if not isinstance(where, str):
                break
            where = f"{where}.{attr}" if _is_module(f"{where}.{attr}") else _origin(where, attr)
        if isinstance(where, tuple):
            yield where


class _Alias:
    """A type alias's definition, walked like an annotation."""

    def __init__(self, module: str, text: str) -> None:
        self.module, self.text = module, text


def _annotations(obj: Any) -> Iterator[tuple[str, str]]:
    """(module, annotation text) of what a public object takes, returns or holds."""
    if isinstance(obj, _Alias):
        yield obj.module, obj.text
    elif isinstance(obj, ModuleType):
        for name in getattr(obj, "__all__", ()):
            yield from _annotations(getattr(obj, name))
    elif inspect.isclass(obj):
        for klass in obj.__mro__:
            if not klass.__module__.startswith("llm_nb"):
                continue
            for name, note in vars(klass).get("__annotations__", {}).items():
                if not name.startswith("_"):
                    yield klass.__module__, str(note)
            for name, member in vars(klass).items():
                if name.startswith("_") and name not in ("__init__", "__call__"):
                    continue
                if name == "__init__" and klass.__name__ in MADE_BY_LLM_NB:
                    continue
                if isinstance(member, property):
                    member = member.fget
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if inspect.isfunction(member):
                    yield from _annotations(member)
    elif inspect.isfunction(obj):
        for note in inspect.unwrap(obj).__annotations__.values():
            yield obj.__module__, str(note)


def _alias_text(module: str, name: str) -> str:
    for node in _statements(_tree(module).body):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == name:
            return ast.unparse(node.value)
        if isinstance(node, ast.AnnAssign) and node.value and ast.unparse(node.target) == name:
            return ast.unparse(node.value)
    raise AssertionError(f"{module}.{name} is not assigned")


def test_every_llm_nb_type_in_the_public_api_is_exported() -> None:
    public = [getattr(llm_nb, name) for name in llm_nb.__all__]
    # ... or reachable through an exported module (llm_nb.scorers.Scorer)
    public += [getattr(m, name) for m in public if isinstance(m, ModuleType) for name in m.__all__]
    exported = {id(value) for value in public}
    seen: set[tuple[str, str]] = set()
    queue = [getattr(llm_nb, name) for name in llm_nb.__all__]
    missing: dict[str, str] = {}
    while queue:
        obj = queue.pop()
        for module, note in _annotations(obj):
            for where in _defined_in(module, note):
                if where in seen:
                    continue
                seen.add(where)
                value = getattr(importlib.import_module(where[0]), where[1])
                if isinstance(value, TypeVar):
                    continue
                if id(value) not in exported:
                    missing[".".join(where)] = f"in {note!r} ({module})"
                if inspect.isclass(value):
                    queue.append(value)
                elif not callable(value):  # a type alias: what it names counts too
                    queue.append(_Alias(where[0], _alias_text(*where)))
    assert not missing, "\n".join(f"{k}: {v}" for k, v in sorted(missing.items()))


def test_the_walk_finds_an_unexported_type() -> None:
    """The check above would see a public function returning a type llm_nb keeps private."""
    found = set(_defined_in("llm_nb._stream", "WireDialect | None"))
    assert found == {("llm_nb._stream", "WireDialect")}
    assert set(_defined_in("llm_nb.providers.base", "wire_errors.ErrorBody")) == {
        ("llm_nb._wire.errors", "ErrorBody")
    }
    assert set(_defined_in("llm_nb.providers.base", "HTTPConfig | None")) == {
        ("llm_nb._wire.http", "HTTPConfig")
    }
    assert set(_defined_in("llm_nb._stats", "pd.DataFrame | None")) == set()
