"""The declared dependency ranges and the constraints CI tests them with stay in step:
constraints/lowest.txt pins every runtime dependency (and the keyboard extra) to its declared
minimum, and Colab's
pins (constraints/colab.txt) are inside every declared range."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def pins(path: Path) -> dict[str, Version]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    pairs = [line.split("==") for line in lines if line]
    return {canonicalize_name(name): Version(version) for name, version in pairs}


#: Optional extras whose minimums are tested like the runtime dependencies' (the test extra
#: installs them, so CI's lowest job runs them at their minimum).
TESTED_EXTRAS = ("keys",)


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    specs = [*project["dependencies"], *(s for name in TESTED_EXTRAS for s in extras[name])]
    return [Requirement(spec) for spec in specs]


def test_tested_extras_are_installed_by_the_test_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    test = {canonicalize_name(Requirement(s).name) for s in extras["test"]}
    for name in TESTED_EXTRAS:
        for spec in extras[name]:
            assert canonicalize_name(Requirement(spec).name) in test, spec


def test_lowest_constraints_are_the_declared_minimums() -> None:
    lowest = pins(ROOT / "constraints" / "lowest.txt")
    minimums = {}
    for req in requirements():
        (low,) = [s.version for s in req.specifier if s.operator == ">="]
        minimums[canonicalize_name(req.name)] = Version(low)
    assert lowest == minimums


def test_colabs_pins_are_inside_the_declared_ranges() -> None:
    colab = pins(ROOT / "constraints" / "colab.txt")
    checked = []
    for req in requirements():
        have = colab.get(canonicalize_name(req.name))
        if have is not None:  # a package Colab does not have is simply added
            assert req.specifier.contains(have), f"Colab has {req.name} {have}, we need {req}"
            checked.append(canonicalize_name(req.name))
    assert {"ipython", "ipywidgets", "traitlets", "pandas", "httpx"} <= set(checked)
