"""contrib/rais.service: the hardening the operations guide promises, and the
commands it runs exist."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "contrib" / "rais.service"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_hardening() -> None:
    s = unit()["Service"]
    assert set(s["CapabilityBoundingSet"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert s["NoNewPrivileges"] == "yes"
    assert s["ProtectSystem"] == "strict"
    assert "/var/lib/rais" in s["ReadWritePaths"]
    assert set(s["RestrictAddressFamilies"].split()) >= {"AF_NETLINK", "AF_PACKET", "AF_INET"}
    assert s["KillSignal"] == "SIGTERM" and "-HUP" in s["ExecReload"]
    assert s["Nice"] == "-10"  # [host] nice's default, without CAP_SYS_NICE


def test_realtime_drop_in_grants_only_what_realtime_needs() -> None:
    """contrib/rais-realtime.conf: CAP_SYS_NICE and CAP_IPC_LOCK, real-time
    scheduling allowed; the unit itself allows neither."""
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string((UNIT.parent / "rais-realtime.conf").read_text())
    d, s = parser["Service"], unit()["Service"]
    added = {"CAP_SYS_NICE", "CAP_IPC_LOCK"}
    base = set(s["CapabilityBoundingSet"].split())
    assert set(d["CapabilityBoundingSet"].split()) == base | added
    assert set(d["AmbientCapabilities"].split()) == set(s["AmbientCapabilities"].split()) | added
    assert d["RestrictRealtime"] == "no" and s["RestrictRealtime"] == "yes"
    assert int(d["LimitRTPRIO"]) >= 10  # rais.runtime.sched.RT_PRIORITY


def test_commands_parse() -> None:
    s = unit()["Service"]
    for key in ("ExecStartPre", "ExecStart"):
        argv = s[key].split()
        assert argv[0].endswith("/rais")
        from rais.cli import build_parser

        args = build_parser().parse_args(argv[1:])
        assert args.command in ("agent", "check-config")


def test_systemd_analyze_when_present(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    out = subprocess.run(
        [tool, "verify", "--man=no", str(UNIT)], capture_output=True, text=True, timeout=30
    )
    # only complaints about the binary's path on this machine are acceptable
    bad = [ln for ln in out.stderr.splitlines() if ln.strip() and "/opt/rais/bin/rais" not in ln]
    assert not bad, out.stderr
