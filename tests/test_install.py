"""scripts/install and scripts/uninstall, run as an operator would, with the
distribution's /usr/bin/python3, into a temporary root (--destdir): the machine
itself is untouched and no root is needed.

The virtual environment is made at DESTDIR/opt/rais and runs from there; the
/usr/local/bin/rais link and the unit name the final /opt/rais. Needs
/usr/bin/python3 (3.11+) with venv and ensurepip (Debian: python3-venv),
systemd-analyze (Debian: systemd), and PyPI or pip's cache for the
dependencies. Without them the tests skip, except as root with CI=true, where
./scripts/test has installed them, so a skip is a failure."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rais import __version__

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install"
UNINSTALL = ROOT / "scripts" / "uninstall"
SYSTEM_PYTHON = "/usr/bin/python3"
PREFIX = "/opt/rais"
INSTALL_TIMEOUT = 300.0


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _problem() -> str | None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (Debian: python3)"
    probe = "import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))"
    if subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode:
        return f"{SYSTEM_PYTHON} is older than 3.11 or lacks venv/ensurepip (Debian: python3-venv)"
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze not found (Debian: systemd)"
    return None


def require_tools() -> None:
    """Skip unless the install can run here; with CI=true as root, fail instead
    (./scripts/test installs the Debian packages then)."""
    problem = _problem()
    if problem is None:
        return
    if _ci() and os.geteuid() == 0:
        pytest.fail(f"install: {problem}; CI=true and root, so this is a failure, not a skip")
    pytest.skip(f"install: {problem}")


def _env() -> dict[str, str]:
    """The caller's environment without this test run's virtual environment."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop}


def run(*argv: str | Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=_env()
    )


def install(dest: Path) -> str:
    out = run(INSTALL, "--destdir", dest, "--python", SYSTEM_PYTHON, timeout=INSTALL_TIMEOUT)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@dataclass
class Installed:
    dest: Path
    output: str

    def at(self, path: str) -> Path:
        return self.dest / path.lstrip("/")

    @property
    def rais(self) -> Path:
        return self.at(f"{PREFIX}/bin/rais")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    require_tools()
    dest = tmp_path_factory.mktemp("root")
    yield Installed(dest, install(dest))


def test_layout(installed: Installed) -> None:
    cfg = installed.at(f"{PREFIX}/pyvenv.cfg").read_text()
    assert re.search(r"^home = /usr/bin$", cfg, re.M), cfg
    link = installed.at("/usr/local/bin/rais")
    assert link.is_symlink() and os.readlink(link) == f"{PREFIX}/bin/rais"
    # the unit as shipped (hardening included: tests/test_unit_file.py), naming /opt/rais
    unit = installed.at("/etc/systemd/system/rais.service").read_text()
    assert unit == (ROOT / "contrib" / "rais.service").read_text()
    assert f"ExecStart={PREFIX}/bin/rais agent --config /etc/rais/rais.toml" in unit
    assert installed.at(f"{PREFIX}/share/doc/rais/operations.md").is_file()
    etc = installed.at("/etc/rais")
    assert etc.stat().st_mode & 0o777 == 0o700
    assert (etc / "rais.toml").read_text() == (ROOT / "contrib" / "rais.toml").read_text()


def test_runs_on_the_system_python_from_its_own_environment(installed: Installed) -> None:
    out = run(installed.rais, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"rais {__version__}", out
    where = "import sys, rais; print(sys.base_prefix); print(rais.__file__)"
    out = run(installed.at(f"{PREFIX}/bin/python"), "-c", where)
    base, module = out.stdout.split()
    assert base == "/usr", out
    # the built wheel, not this source tree
    assert Path(module).is_relative_to(installed.at(f"{PREFIX}/lib")), module


def test_prints_the_next_steps(installed: Installed) -> None:
    for step in (
        "head -c 32 /dev/urandom | base64 > /etc/rais/group.key",
        "rais check-config /etc/rais/rais.toml",
        "systemctl enable --now rais",
    ):
        assert step in installed.output, installed.output


def test_check_config_on_the_installed_example(installed: Installed) -> None:
    etc = installed.at("/etc/rais")
    toml = etc / "rais.toml"
    key = etc / "group.key"
    key.unlink(missing_ok=True)
    out = run(installed.rais, "check-config", toml)
    assert out.returncode == 2 and f"cannot read {key}" in out.stderr, out
    key.write_text("c2VjcmV0IGtleSBmb3IgdGhlIHRlc3QgZ3JvdXAgb25seQ==\n")
    out = run(installed.rais, "check-config", toml)
    assert out.returncode == 0 and "groups: none" in out.stdout, out
    # the commented-out group is valid too, once uncommented as the file says
    uncommented = etc / "uncommented.toml"
    uncommented.write_text(re.sub(r"(?m)^#(?=[\[a-z])", "", toml.read_text()))
    out = run(installed.rais, "check-config", uncommented)
    assert out.returncode == 0 and "groups: www" in out.stdout, out


def test_systemd_analyze_verify_with_the_installed_paths(
    installed: Installed, tmp_path: Path
) -> None:
    unit = installed.at("/etc/systemd/system/rais.service").read_text()
    resolved = tmp_path / "rais.service"
    resolved.write_text(unit.replace(f"{PREFIX}/", f"{installed.at(PREFIX)}/"))
    assert str(installed.rais) in resolved.read_text()
    tool = shutil.which("systemd-analyze")
    assert tool is not None
    out = run(tool, "verify", "--man=no", resolved)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out


def test_again_upgrades_in_place_keeps_etc_then_uninstall(tmp_path: Path) -> None:
    require_tools()
    dest = tmp_path / "root"
    install(dest)
    venv = dest / PREFIX.lstrip("/")
    toml = dest / "etc" / "rais" / "rais.toml"
    toml.write_text(
        toml.read_text() + '\n# this host\'s own edits\n[dns]\nlisten = ["127.0.0.1:5353"]\n'
    )
    mine = toml.read_text()
    # an older rais of the same version number: the next install replaces it
    init = next((venv / "lib").glob("python3.*/site-packages/rais/__init__.py"))
    init.write_text('__version__ = "0.0.0-old"\n')
    assert run(venv / "bin" / "rais", "--version").stdout.strip() == "rais 0.0.0-old"

    output = install(dest)
    assert "rais.toml kept" in output, output
    assert toml.read_text() == mine
    assert run(venv / "bin" / "rais", "--version").stdout.strip() == f"rais {__version__}"

    out = run(UNINSTALL, "--destdir", dest)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not venv.exists()
    assert not os.path.lexists(dest / "usr" / "local" / "bin" / "rais")
    assert not (dest / "etc" / "systemd" / "system" / "rais.service").exists()
    assert toml.read_text() == mine


def test_without_ensurepip_it_names_the_debian_package(tmp_path: Path) -> None:
    """Debian's /usr/bin/python3 without python3-venv has no ensurepip: the
    install stops before it changes anything and says what to install."""
    require_tools()
    fake = tmp_path / "no-ensurepip"
    (fake / "ensurepip").mkdir(parents=True)
    (fake / "ensurepip" / "__init__.py").write_text("raise ImportError('python3-venv')\n")
    python = tmp_path / "python3"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={fake} exec {SYSTEM_PYTHON} "$@"\n')
    python.chmod(0o755)
    dest = tmp_path / "root"
    out = run(INSTALL, "--destdir", dest, "--python", python)
    assert out.returncode == 1, out
    assert "apt-get install python3-venv" in out.stderr, out
    assert not any(dest.iterdir())
