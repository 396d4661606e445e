"""The core is sans-I/O: no I/O, clock, threads or global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "src" / "rais" / "core"
FORBIDDEN = {"asyncio", "socket", "time", "subprocess", "threading"}
SOURCES = sorted(CORE.glob("*.py"))


def test_the_core_sources_are_found() -> None:
    assert {"core.py", "control.py", "membership.py"} <= {p.name for p in SOURCES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_forbidden_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
            if node.module == "random":
                # ``from random import Random`` is the class, nothing else
                assert [a.name for a in node.names] == ["Random"], ast.dump(node)
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name}:{node.lineno} {name}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_module_level_random_functions(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    aliases = {
        a.asname or a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for a in node.names
        if a.name == "random"
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            # random.Random as a type or a constructor is fine; random.choice() etc. is not
            assert node.attr == "Random", f"{path.name}:{node.lineno} random.{node.attr}"


def test_the_scan_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import random\nx = random.choice([1])\n")
    with pytest.raises(AssertionError):
        test_no_module_level_random_functions(bad)
    bad.write_text("import time as t\n")
    with pytest.raises(AssertionError):
        test_no_forbidden_imports(bad)
    bad.write_text("from asyncio import sleep\n")
    with pytest.raises(AssertionError):
        test_no_forbidden_imports(bad)
    good = tmp_path / "good.py"
    good.write_text("import random\ndef f(r: random.Random) -> None:\n    random.Random(1)\n")
    test_no_module_level_random_functions(good)
    test_no_forbidden_imports(good)
