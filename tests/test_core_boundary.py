"""Code outside ``rais.core`` reads a core only through its public face: the
inputs, ``effects()``, ``get_timer()``, the read model ``view(now)``
(rais.core.view) and the driver's questions (``holding``,
``is_service_address``, ``has_work``, ``entry()``). It never reaches into a
core's parts (its table, members, served states, outbox, inbox, controller,
requests) nor its private names, and imports only the core's public modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "rais"
OUTSIDE = sorted(p for p in SRC.rglob("*.py") if "core" not in p.relative_to(SRC).parts[:1])

PARTS = {"table", "members", "served", "out", "inbox", "control", "requests", "_pages"}
"""A Core's sub-objects: its state, not its interface."""

PUBLIC_MODULES = {
    "addr",
    "config",
    "core",
    "effects",
    "features",
    "hosts",
    "messages",
    "utilization",
    "view",
    "wire",
}
"""Modules of rais.core that others may import: the Core, its config, its
inputs and outputs (messages, effects, the wire codec), the read model and the
shared leaves (addresses, the host predicates, utilization, the feature names)."""

SHARED_RULES = {
    ("requests", "winning"),
    ("pause", "out_of_bounds"),
    ("pause", "kernel_lifetime"),
    ("pause", "KERNEL_MARGIN"),
    ("pause", "bounds"),
}
"""Pure rules outside those modules that others may use as they are (the
simulator's checker judges operator requests with the core's own rule; the
agent bounds a pause, sets its kernel lifetime and judges its record by the
core's own rules of ``rais pause``; the simulator draws pauses within its bounds)."""


def _is_core(node: ast.expr) -> bool:
    """``core``, ``self.core``, ``h.core``, ``runner.core`` ...: an expression
    that names a Core by the project's convention."""
    if isinstance(node, ast.Name):
        return node.id == "core"
    return isinstance(node, ast.Attribute) and node.attr == "core"


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_core(node.value):
            if node.attr in PARTS or node.attr.startswith("_"):
                found.append(f"{path.name}:{node.lineno} reads core.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rais.core."):
            module = (node.module or "").split(".")[2]
            if module in PUBLIC_MODULES:
                continue
            for alias in node.names:
                if (module, alias.name) not in SHARED_RULES:
                    found.append(
                        f"{path.name}:{node.lineno} imports {alias.name} from rais.core.{module}"
                    )
    return found


def test_the_sources_are_found() -> None:
    names = {p.name for p in OUTSIDE}
    assert {"status.py", "group.py", "views.py", "engine.py", "invariants.py"} <= names
    assert not any(p.parent.name == "core" for p in OUTSIDE)


@pytest.mark.parametrize("path", OUTSIDE, ids=lambda p: str(p.relative_to(SRC)))
def test_nothing_outside_the_core_reads_its_parts(path: Path) -> None:
    assert problems(path) == []


def test_the_scan_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from rais.core.addrtable import AddressTable\n"
        "def f(core, runner):\n"
        "    core.table.rows\n"
        "    runner.core.served.states\n"
        "    core._timer_stale\n"
    )
    assert len(problems(bad)) == 4
    good = tmp_path / "good.py"
    good.write_text(
        "from rais.core.view import CoreView\n"
        "from rais.core.requests import winning\n"
        "def f(core, now):\n"
        "    core.view(now).rows\n"
        "    core.holding(b'x')\n"
        "    core.entry().served\n"
    )
    assert problems(good) == []
