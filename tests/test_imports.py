"""No import cycle anywhere in ``src/rais``.

The graph has one node per module (a package is its ``__init__``) and an edge
for every explicit import of a module of the tree: ``import x.y`` gives x.y,
``from x import y`` gives x.y if that is a module and x otherwise, and
relative imports are resolved. Imports inside functions count, and so do
those under ``if TYPE_CHECKING:``: a cycle that only type checking closes is
still a circle in the design (and the simulator's was one). The parent
packages that Python runs on the way (``rais.sim`` for ``rais.sim.engine``)
are not edges: a package's ``__init__`` that re-exports its modules would
otherwise close a cycle with each of them."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "rais"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under the package ``root``."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that module ``name`` (at ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    found.add(f"{base}.{alias.name}")
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found is not None:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            found = visit(start)
            if found is not None:
                return found
    return None


def test_the_tree_is_found() -> None:
    g = graph(SRC)
    assert {"rais", "rais.sim.engine", "rais.sim.world", "rais.core.core"} <= set(g)
    assert "rais.sim.world" in g["rais.sim.engine"]


def test_there_is_no_import_cycle() -> None:
    assert cycle(graph(SRC)) is None


def test_the_detector_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("import pkg.b\nA = 1\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n    return a\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..d import D\n"
    )
    (pkg / "d.py").write_text("from .sub import c\nD = 1\n")
    g = graph(pkg)
    assert g["pkg"] == {"pkg.a"}
    assert g["pkg.sub.c"] == {"pkg.d"}
    assert g["pkg.d"] == {"pkg.sub.c"}
    assert cycle(g) == ["pkg.a", "pkg.b", "pkg.a"]
    del g["pkg.a"]
    assert cycle(g) == ["pkg.d", "pkg.sub.c", "pkg.d"]
    del g["pkg.d"]
    assert cycle(g) is None


MAX_LINES = 500


def test_every_module_stays_under_500_lines() -> None:
    """The architecture's rule: modules stay well under 500 lines."""
    src = Path(__file__).resolve().parents[1] / "src" / "rais"
    big = {
        str(p.relative_to(src)): n
        for p in src.rglob("*.py")
        if (n := len(p.read_text().splitlines())) >= MAX_LINES
    }
    assert big == {}
