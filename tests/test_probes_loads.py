"""Tests of the load samplers (src/rais/probes/loads.py): a fake /proc/stat and
/sys tree in tmp_path, the real /proc/stat, commands."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rais.probes.loads import (
    CommandSampler,
    CpuSampler,
    LoadError,
    NetSampler,
    StaticSampler,
    clamp,
    combine,
    make_sampler,
    parse_load_output,
)
from rais.probes.spec import U32_MAX, LoadSpec


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def stat(*cpus: tuple[int, int, int, int, int]) -> str:
    """A /proc/stat with the aggregate line and one line per CPU, each
    (user, system, idle, iowait, guest) in ticks."""

    def line(name: str, user: int, system: int, idle: int, iowait: int, guest: int) -> str:
        # user nice system idle iowait irq softirq steal guest guest_nice
        return f"{name} {user} 0 {system} {idle} {iowait} 0 0 0 {guest} 0"

    total = tuple(sum(c[i] for c in cpus) for i in range(5))
    lines = [line("cpu ", *total)] + [line(f"cpu{i}", *c) for i, c in enumerate(cpus)]
    return "\n".join([*lines, "intr 12345 0 0", "ctxt 999", "btime 1700000000", ""])


# ---------------------------------------------------------------- cpu


async def test_cpu_from_two_snapshots(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text(stat((1000, 500, 8000, 0, 0), (0, 0, 9000, 500, 0)))
    sampler = CpuSampler(str(tmp_path))
    assert await sampler.sample() is None  # primes
    # In the interval: cpu0 busy 150 of 200 ticks, cpu1 idle 200 of 200 (50 of them iowait).
    (tmp_path / "stat").write_text(stat((1100, 550, 8050, 0, 0), (0, 0, 9150, 550, 0)))
    assert await sampler.sample() == (750, 2000)  # 150/400 of 2 CPUs = 0.75 CPU
    # Both fully busy; guest time is inside user time and is not counted twice.
    (tmp_path / "stat").write_text(stat((1200, 650, 8050, 0, 80), (200, 0, 9150, 550, 200)))
    assert await sampler.sample() == (2000, 2000)
    # cpu0: 100 ticks of guest (counted in user) and 100 idle; cpu1: 200 idle.
    (tmp_path / "stat").write_text(stat((1300, 650, 8150, 0, 180), (200, 0, 9350, 550, 200)))
    assert await sampler.sample() == (500, 2000)


async def test_cpu_idle_and_no_time_passed(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text(
        stat(
            (10, 10, 100, 0, 0),
        )
    )
    sampler = CpuSampler(str(tmp_path))
    assert await sampler.sample() is None
    assert await sampler.sample() is None  # no ticks in between: nothing to say
    (tmp_path / "stat").write_text(
        stat(
            (10, 10, 300, 0, 0),
        )
    )
    assert await sampler.sample() == (0, 1000)


async def test_cpu_counters_going_back_reprime(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text(stat((500, 0, 500, 0, 0), (500, 0, 500, 0, 0)))
    sampler = CpuSampler(str(tmp_path))
    await sampler.sample()
    (tmp_path / "stat").write_text(
        stat(
            (510, 0, 590, 0, 0),
        )
    )  # cpu1 went offline
    assert await sampler.sample() is None
    (tmp_path / "stat").write_text(
        stat(
            (560, 0, 640, 0, 0),
        )
    )
    assert await sampler.sample() == (500, 1000)


async def test_cpu_errors(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"cannot read .*/stat: No such file"):
        await CpuSampler(str(tmp_path)).sample()
    (tmp_path / "stat").write_text("intr 1 2 3\n")
    with pytest.raises(LoadError, match="no cpu lines"):
        await CpuSampler(str(tmp_path)).sample()
    (tmp_path / "stat").write_text("cpu  1 2 x 4\ncpu0 1 2 3 4\n")
    with pytest.raises(LoadError, match="cannot parse 'cpu  1 2 x 4'"):
        await CpuSampler(str(tmp_path)).sample()


async def test_cpu_from_the_real_proc_stat() -> None:
    sampler = CpuSampler()
    busy, total, cpus = sampler.read()
    assert 0 <= busy <= total
    assert cpus >= len(os.sched_getaffinity(0))
    assert await sampler.sample() is None
    x = 0
    for i in range(3_000_000):  # burn some CPU so that ticks pass
        x += i
    sample = await sampler.sample()
    assert sample is not None, "no tick passed in the busy loop"
    load, capacity = sample
    assert capacity == cpus * 1000
    assert 0 < load <= capacity  # the busy loop kept one CPU busy


# ---------------------------------------------------------------- net


def sysfs(root: Path, ifname: str, rx: int, tx: int, speed: str | None = "1000") -> None:
    base = root / "class" / "net" / ifname
    (base / "statistics").mkdir(parents=True, exist_ok=True)
    (base / "statistics" / "rx_bytes").write_text(f"{rx}\n")
    (base / "statistics" / "tx_bytes").write_text(f"{tx}\n")
    if speed is not None:
        (base / "speed").write_text(f"{speed}\n")


async def test_net_bytes_per_second_and_link_speed(tmp_path: Path) -> None:
    clock = Clock()
    sysfs(tmp_path, "eth0", 1_000, 2_000, "1000")
    sysfs(tmp_path, "eth1", 0, 0, "100")
    sampler = NetSampler(["eth0", "eth1"], sys_root=str(tmp_path), clock=clock)
    assert await sampler.sample() is None
    clock.now += 2.0
    sysfs(tmp_path, "eth0", 1_000 + 3_000_000, 2_000 + 1_000_000, "1000")
    sysfs(tmp_path, "eth1", 500_000, 500_000, "100")
    # (4 MB + 1 MB) / 2 s; 1000 + 100 Mb/s = 137.5 MB/s
    assert await sampler.sample() == (2_500_000, 137_500_000)


async def test_net_configured_capacity_needs_no_speed(tmp_path: Path) -> None:
    clock = Clock()
    sysfs(tmp_path, "veth0", 0, 0, speed=None)
    spec = LoadSpec("lan", "net", interfaces=("veth0",), capacity=12_345)
    sampler = make_sampler(spec, sys_root=str(tmp_path), clock=clock)
    assert await sampler.sample() is None
    clock.now += 0.5
    sysfs(tmp_path, "veth0", 100, 0, speed=None)
    assert await sampler.sample() == (200, 12_345)


@pytest.mark.parametrize("speed", [None, "-1", "0", "unknown"])
async def test_net_unknown_speed_without_capacity_is_an_error(
    tmp_path: Path, speed: str | None
) -> None:
    sysfs(tmp_path, "eth0", 0, 0, speed=speed)
    sampler = NetSampler(["eth0"], sys_root=str(tmp_path), clock=Clock())
    with pytest.raises(LoadError) as info:
        await sampler.sample()
    assert str(info.value) == (
        f"the link speed of eth0 is unknown ({tmp_path}/class/net/eth0/speed); "
        "set capacity (bytes/s)"
    )


async def test_net_missing_interface(tmp_path: Path) -> None:
    sysfs(tmp_path, "eth0", 0, 0)
    sampler = NetSampler(["eth0", "eth9"], capacity=1, sys_root=str(tmp_path), clock=Clock())
    with pytest.raises(LoadError, match=r"^no interface eth9$"):
        await sampler.sample()


async def test_net_counter_reset_reprimes(tmp_path: Path) -> None:
    clock = Clock()
    sysfs(tmp_path, "eth0", 5_000, 5_000)
    sampler = NetSampler(["eth0"], sys_root=str(tmp_path), clock=clock)
    await sampler.sample()
    clock.now += 1
    sysfs(tmp_path, "eth0", 10, 10)  # interface re-created
    assert await sampler.sample() is None
    clock.now += 1
    sysfs(tmp_path, "eth0", 110, 10)
    assert await sampler.sample() == (100, 125_000_000)


async def test_net_load_is_clamped_to_u32(tmp_path: Path) -> None:
    clock = Clock()
    sysfs(tmp_path, "eth0", 0, 0, "400000")  # 400 Gb/s = 50 GB/s capacity
    sampler = NetSampler(["eth0"], sys_root=str(tmp_path), clock=clock)
    await sampler.sample()
    clock.now += 1
    sysfs(tmp_path, "eth0", 40_000_000_000, 0, "400000")
    assert await sampler.sample() == (U32_MAX, U32_MAX)


# ---------------------------------------------------------------- command and static


async def test_command_load() -> None:
    assert await CommandSampler("echo 250 1000", 1.0).sample() == (250, 1000)
    assert await CommandSampler("printf '  7\\t9\\n'", 1.0).sample() == (7, 9)
    assert await CommandSampler("echo 99999999999 0", 1.0).sample() == (U32_MAX, 0)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            "echo 1",
            "command 'echo 1': expected 'LOAD CAPACITY' (two unsigned integers), got '1\\n'",
        ),
        ("echo -1 5", "expected 'LOAD CAPACITY'"),
        ("echo 1 2 3", "expected 'LOAD CAPACITY'"),
        ("echo 1.5 2", "expected 'LOAD CAPACITY'"),
        ("echo 1 2; exit 4", "command 'echo 1 2; exit 4': exit status 4"),
        ("sleep 5", "command 'sleep 5': killed after timeout 0.3s"),
    ],
)
async def test_command_load_errors(command: str, message: str) -> None:
    with pytest.raises(LoadError) as info:
        await CommandSampler(command, 0.3).sample()
    assert message in str(info.value)


async def test_static_load() -> None:
    sampler = make_sampler(LoadSpec("s", "static", load=3, capacity=10))
    assert isinstance(sampler, StaticSampler)
    assert await sampler.sample() == (3, 10)
    assert await sampler.sample() == (3, 10)


def test_parse_load_output() -> None:
    assert parse_load_output("0 0\n") == (0, 0)
    assert parse_load_output(f"{2**40} {2**32}") == (U32_MAX, U32_MAX)
    with pytest.raises(LoadError, match="two unsigned integers"):
        parse_load_output("")
    with pytest.raises(LoadError, match="two unsigned integers"):
        parse_load_output("\uff11 2")  # a full-width digit


# ---------------------------------------------------------------- helpers


def test_clamp() -> None:
    assert [clamp(v) for v in (-5, 0, 7, U32_MAX, U32_MAX + 1)] == [0, 0, 7, U32_MAX, U32_MAX]


def test_combine() -> None:
    assert combine([], "max") is None
    assert combine([], "sum") is None
    samples = [(500, 2000), (300, 1000), (10, 100)]
    assert combine(samples, "max") == (300, 1000)  # 30 % beats 25 % and 10 %
    assert combine(samples, "sum") == (810, 3100)
    assert combine([(1, 3), (333, 1000)], "max") == (1, 3)  # exact, not rounded
    assert combine([(5, 10), (1, 2)], "max") == (5, 10)  # equal: the first
    # capacity 0: no load object (0/0) is idle, a load against it is full
    assert combine([(9, 10), (0, 0)], "max") == (9, 10)
    assert combine([(0, 0), (1, 1000)], "max") == (1, 1000)
    assert combine([(900, 1000), (500, 0)], "max") == (500, 0)
    assert combine([(1000, 1000), (500, 0)], "max") == (1000, 1000)  # equal: the first
    assert combine([(500, 0), (1500, 1000)], "max") == (1500, 1000)  # overload is above full
    assert combine([(U32_MAX, U32_MAX), (5, 5)], "sum") == (U32_MAX, U32_MAX)
