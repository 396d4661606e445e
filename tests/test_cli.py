"""The rais command: exit statuses and messages operators see."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def rais(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rais", *argv], capture_output=True, text=True, timeout=30
    )


def config(tmp: Path, control: str) -> Path:
    (tmp / "key").write_text("secret\n")
    path = tmp / "rais.toml"
    path.write_text(
        f'[host]\ncontrol = ["{control}"]\napi = "127.0.0.1:7499"\nstate_dir = "{tmp}/state"\n'
        f'[auth]\nkey_file = "{tmp}/key"\n'
        '[[group]]\nname = "www"\naddress = "239.192.0.1:7401"\ninterface = "eth0"\n'
    )
    return path


def test_check_config_ok_and_bad(tmp_path: Path) -> None:
    good = config(tmp_path, "192.0.2.11")
    proc = rais("check-config", str(good))
    assert proc.returncode == 0 and "OK" in proc.stdout
    good.write_text(good.read_text().replace('interface = "eth0"', 'interface = "eth0"\nbogus = 1'))
    proc = rais("check-config", str(good))
    assert proc.returncode == 2
    assert f"{good}: group.www.bogus:" in proc.stderr


def test_agent_with_a_bad_config_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    path = config(tmp_path, "192.0.2.11")
    (tmp_path / "key").write_text("")
    proc = rais("agent", "--config", str(path))
    assert proc.returncode == 2 and "auth.key_file" in proc.stderr
    assert not (tmp_path / "state").exists()


def test_agent_that_cannot_bind_says_why(tmp_path: Path) -> None:
    proc = rais("agent", "--config", str(config(tmp_path, "192.0.2.77")))
    assert proc.returncode == 1
    assert "192.0.2.77 is not on any interface" in proc.stderr


def test_status_without_an_agent(tmp_path: Path) -> None:
    proc = rais("status", "--api", "127.0.0.1:1")
    assert proc.returncode != 0 and "cannot reach the agent" in proc.stderr
