"""An earlier release of rais, built from this repository's own history, for
the rolling-upgrade tests (tests/test_e2e_upgrade.py).

``export_release(tmp)`` finds the repository (``git rev-parse --show-toplevel``
from this file's directory), checks that the commit is there (``git cat-file
-e COMMIT^{commit}``), and exports its ``src`` and ``pyproject.toml`` with
``git archive`` into ``tmp``. Without the history (a tarball, a shallow clone)
the calling test skips with a message saying so; with CI=true and root, where
the history must be there (CI clones main with it), that is a failure.

How the old code runs: with the test's own interpreter and libraries, and
``PYTHONPATH=<export>/src`` in front, so ``import rais`` finds the old tree
before the installed one. That is honest only while the old release pins the
same dependencies as this tree, so ``export_release`` compares the two
``[project] dependencies`` lists and fails (not skips) if they differ: the
harness then needs a virtual environment of its own for the old release
(``sys.executable -m venv`` and ``pip install <export>``). It also runs
``import rais`` in that environment and fails unless the module comes from
the exported tree. Nothing is cached between runs: the export lives in the
test's temporary directory and is deleted with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

RELEASE_1 = "1c67e61cf6b93f39a7e33991e9bc4b1f3cb6bcf4"
"""The release operators run (wire version 1), issue 12."""

GIT_TIMEOUT = 60.0


def _ci_root() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true" and os.geteuid() == 0


def _missing(why: str, commit: str = RELEASE_1) -> NoReturn:
    """The history is not there: skip, or fail under CI as root."""
    message = f"old release {commit[:8]} not available: {why}"
    if _ci_root():
        pytest.fail(f"{message}; CI=true and root, so this is a failure, not a skip")
    pytest.skip(message)


def _git(root: Path, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(root), *argv], capture_output=True, timeout=GIT_TIMEOUT, check=False
    )


def repository_root() -> Path:
    """The top of the git work tree holding this file (skips without one)."""
    here = Path(__file__).resolve().parent
    try:
        proc = _git(here, "rev-parse", "--show-toplevel")
    except OSError as exc:
        _missing(f"git cannot run ({exc})")
    if proc.returncode != 0:
        _missing(f"{here} is not in a git work tree ({proc.stderr.decode().strip()})")
    return Path(proc.stdout.decode().strip())


def _dependencies(pyproject: str) -> list[str]:
    deps: list[str] = tomllib.loads(pyproject)["project"]["dependencies"]
    return sorted(deps)


@dataclass(frozen=True)
class Release:
    """An exported release: ``python -m rais`` with ``env()`` runs it."""

    commit: str
    tree: Path
    """The exported tree (``src/rais`` inside)."""

    def env(self) -> dict[str, str]:
        """The environment that makes ``python -m rais`` the old code."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.tree / "src")
        env.pop("PYTHONHOME", None)
        return env

    def module_file(self) -> Path:
        """Where ``import rais`` comes from in ``env()`` (run from ``tree``)."""
        proc = subprocess.run(
            [sys.executable, "-c", "import rais; print(rais.__file__)"],
            env=self.env(),
            cwd=self.tree,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=True,
        )
        return Path(proc.stdout.strip()).resolve()


def current_module_file() -> Path:
    """Where ``import rais`` comes from for the new code (no PYTHONPATH)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", "import rais; print(rais.__file__)"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
        check=True,
    )
    return Path(proc.stdout.strip()).resolve()


def export_release(tmp: Path, commit: str = RELEASE_1) -> Release:
    """Export ``commit`` into ``tmp/release-COMMIT`` and check that it runs as
    itself (see the module docstring)."""
    root = repository_root()
    if _git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        _missing(f"commit {commit} is not in the history of {root} (a shallow clone?)", commit)
    tree = tmp / f"release-{commit[:8]}"
    tree.mkdir(parents=True)
    archive = tmp / f"release-{commit[:8]}.tar"
    proc = _git(
        root, "archive", "--format=tar", "-o", str(archive), commit, "src", "pyproject.toml"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(tree)], check=True, timeout=GIT_TIMEOUT)
    archive.unlink()

    old_deps = _dependencies((tree / "pyproject.toml").read_text())
    new_deps = _dependencies((root / "pyproject.toml").read_text())
    assert old_deps == new_deps, (
        f"{commit[:8]} pins other dependencies than this tree; running it on this "
        f"venv's libraries would not be that release: give it a venv of its own.\n"
        f"old: {old_deps}\nnew: {new_deps}"
    )
    release = Release(commit, tree)
    where = release.module_file()
    assert where.is_relative_to(tree.resolve()), f"old release imports rais from {where}"
    return release
