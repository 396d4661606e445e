"""The agent's scheduling settings (rais.runtime.sched, ``[host]``
scheduler_slice and realtime), applied in a child process so this one keeps
its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rais.config import ConfigError, load

BASE = '[host]\ncontrol = ["192.0.2.1"]\n{host}[auth]\nkey_file = "{key}"\n'


def config(tmp_path: Path, host: str = "") -> str:
    key = tmp_path / "key"
    key.write_text("k\n")
    path = tmp_path / "rais.toml"
    path.write_text(BASE.format(host=host, key=key))
    return str(path)


def test_defaults_and_limits(tmp_path: Path) -> None:
    host = load(config(tmp_path)).host
    assert host.scheduler_slice == pytest.approx(0.0001) and host.realtime is False
    assert host.nice == -10
    assert load(config(tmp_path, "nice = 5\n")).host.nice == 5
    with pytest.raises(ConfigError, match="nice"):
        load(config(tmp_path, "nice = -21\n"))
    host = load(config(tmp_path, 'scheduler_slice = "0"\nrealtime = true\n')).host
    assert host.scheduler_slice == 0 and host.realtime is True
    assert load(config(tmp_path, 'scheduler_slice = "3ms"\n')).host.scheduler_slice == 0.003
    for bad in ('"50us"', '"1s"', '"-1ms"', "true"):
        with pytest.raises(ConfigError, match="scheduler_slice"):
            load(config(tmp_path, f"scheduler_slice = {bad}\n"))


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout


def _sched_field(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.split(":")[0].strip() == name:
            return int(float(line.split(":")[1]))
    raise AssertionError(f"no {name} in {text!r}")


def test_slice_is_what_the_kernel_schedules_with() -> None:
    kernel = tuple(int(x) for x in Path("/proc/sys/kernel/osrelease").read_text().split(".")[:2])
    if kernel < (6, 12):
        pytest.skip("custom slices need Linux 6.12")
    out = _run(
        """
        from rais.runtime import sched
        assert sched.apply(0.0003, False) == []
        print(open("/proc/self/sched").read())
        """
    )
    assert _sched_field(out, "se.slice") == 300_000


def test_realtime_without_privileges_is_a_warning_not_a_failure() -> None:
    out = _run(
        """
        import os
        from rais.runtime import sched
        if os.geteuid() == 0:
            os.setgid(65534); os.setuid(65534)  # nobody: no CAP_SYS_NICE, no CAP_IPC_LOCK
        problems = sched.apply(0.0001, True, -10)
        print(len(problems), "setpriority" in problems[0], "SCHED_RR" in problems[1],
              os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
        """
    )
    assert out.split() == ["2", "True", "True", "0", "0"]


def test_realtime_as_root_is_round_robin_with_memory_locked() -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_SYS_NICE, CAP_IPC_LOCK)")
    out = _run(
        """
        import os
        from rais.runtime import sched
        assert sched.apply(0.0001, True) == []
        locked = [l for l in open("/proc/self/status") if l.startswith("VmLck")][0]
        print(os.sched_getscheduler(0), os.sched_getparam(0).sched_priority, locked.split()[1])
        """
    )
    policy, priority, locked_kb = map(int, out.split())
    assert (policy, priority) == (2, 10) and locked_kb > 1000
