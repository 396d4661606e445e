"""Samplers of load objects: each sample is ``(load, capacity)``, unsigned 32-bit.

- cpu: busy CPU time between two reads of /proc/stat, in milli-CPUs (1000 =
  one CPU fully busy); capacity = online CPUs * 1000.
- net: received + sent bytes/s of the interfaces between two samples;
  capacity from the config, or the links' speeds (Mb/s * 125000), summed.
- command: a /bin/sh -c command that prints "LOAD CAPACITY".
- static: the configured values.

``sample()`` returns None when there is nothing to report yet (the first
sample of cpu and net only primes the counters) and raises ``LoadError``
with a readable message when the load cannot be measured.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from rais.core.utilization import share
from rais.probes.checks import run_shell
from rais.probes.spec import U32_MAX, LoadSpec

Sample = tuple[int, int]


class LoadError(Exception):
    """The load cannot be measured; ``str()`` says why."""


def clamp(value: int) -> int:
    """Into 0..2**32-1 (the wire's unsigned 32-bit)."""
    return max(0, min(value, U32_MAX))


def combine(samples: Sequence[Sample], how: Literal["max", "sum"]) -> Sample | None:
    """Several loads as one: "max" is the pair with the highest utilization
    (the first of equals), "sum" adds the loads and the capacities. None when
    there are no samples.

    "max" compares the exact shares (``rais.core.utilization.share``, the rule
    every reader of a load uses, unrounded): 0/0 is idle, a load against
    capacity 0 is full, so 500/0 wins over 900/1000 and 100/1000 over 0/0."""
    if not samples:
        return None
    if how == "sum":
        return clamp(sum(s[0] for s in samples)), clamp(sum(s[1] for s in samples))
    best = samples[0]
    top = share(*best)
    for sample in samples[1:]:
        value = share(*sample)
        if value > top:
            best, top = sample, value
    return best


class Sampler(Protocol):
    async def sample(self) -> Sample | None: ...


def _read_int(path: str) -> int:
    with open(path, encoding="ascii") as f:
        return int(f.read().strip())


class CpuSampler:
    """Busy CPU time from ``PROC_ROOT/stat`` between consecutive samples."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.path = os.path.join(proc_root, "stat")
        self._last: tuple[int, int] | None = None

    def read(self) -> tuple[int, int, int]:
        """(busy ticks, total ticks, online CPUs) from the stat file."""
        try:
            with open(self.path, encoding="ascii") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise LoadError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        total = busy = cpus = 0
        found = False
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            if fields[0] == "cpu":
                try:
                    ticks = [int(x) for x in fields[1:9]]  # user .. steal; guest is in user
                except ValueError:
                    raise LoadError(f"{self.path}: cannot parse {line[:80]!r}") from None
                if len(ticks) < 4:
                    raise LoadError(f"{self.path}: too few fields in {line[:80]!r}")
                idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
                total = sum(ticks)
                busy = total - idle
                found = True
            elif fields[0].startswith("cpu") and fields[0][3:].isdigit():
                cpus += 1
        if not found or cpus == 0:
            raise LoadError(f"{self.path}: no cpu lines")
        return busy, total, cpus

    async def sample(self) -> Sample | None:
        busy, total, cpus = self.read()
        last, self._last = self._last, (busy, total)
        if last is None:
            return None
        d_busy, d_total = busy - last[0], total - last[1]
        if d_total <= 0 or d_busy < 0:
            return None  # too soon, or the counters went back (a CPU went offline)
        milli = (d_busy * cpus * 1000 + d_total // 2) // d_total
        return clamp(min(milli, cpus * 1000)), clamp(cpus * 1000)


class NetSampler:
    """Bytes/s (received + sent) of the interfaces, from ``SYS_ROOT/class/net``."""

    def __init__(
        self,
        interfaces: Sequence[str],
        capacity: int | None = None,
        *,
        sys_root: str = "/sys",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interfaces:
            raise ValueError("no interfaces")
        self.interfaces = tuple(interfaces)
        self.capacity = capacity
        self.root = os.path.join(sys_root, "class", "net")
        self.clock = clock
        self._last: tuple[float, int] | None = None

    def _bytes(self, ifname: str) -> int:
        total = 0
        for counter in ("rx_bytes", "tx_bytes"):
            path = os.path.join(self.root, ifname, "statistics", counter)
            try:
                total += _read_int(path)
            except FileNotFoundError:
                if not os.path.isdir(os.path.join(self.root, ifname)):
                    raise LoadError(f"no interface {ifname}") from None
                raise LoadError(f"cannot read {path}: missing") from None
            except OSError as exc:
                raise LoadError(f"cannot read {path}: {exc.strerror or exc}") from None
            except ValueError:
                raise LoadError(f"{path}: not a number") from None
        return total

    def link_capacity(self) -> int:
        """The configured capacity, or the sum of the link speeds in bytes/s."""
        if self.capacity is not None:
            return self.capacity
        total = 0
        for ifname in self.interfaces:
            path = os.path.join(self.root, ifname, "speed")
            try:
                mbits = _read_int(path)
            except (OSError, ValueError):
                mbits = -1  # EINVAL for virtual links, no file, ...
            if mbits <= 0:
                raise LoadError(
                    f"the link speed of {ifname} is unknown ({path}); set capacity (bytes/s)"
                )
            total += mbits * 125_000
        return total

    async def sample(self) -> Sample | None:
        capacity = self.link_capacity()
        now = self.clock()
        count = sum(self._bytes(ifname) for ifname in self.interfaces)
        last, self._last = self._last, (now, count)
        if last is None:
            return None
        elapsed, delta = now - last[0], count - last[1]
        if elapsed <= 0 or delta < 0:
            return None  # too soon, or a counter was reset (interface re-created)
        return clamp(round(delta / elapsed)), clamp(capacity)


class CommandSampler:
    """Runs a /bin/sh -c command that prints "LOAD CAPACITY"."""

    def __init__(self, command: str, timeout: float) -> None:
        self.command = command
        self.timeout = timeout

    async def sample(self) -> Sample | None:
        what = f"command {self.command[:60]!r}"
        try:
            result = await run_shell(self.command, self.timeout, stdout=True)
        except OSError as exc:
            raise LoadError(f"{what}: cannot run: {exc.strerror or exc}") from None
        if result.returncode is None:
            raise LoadError(f"{what}: killed after timeout {self.timeout:g}s")
        if result.returncode != 0:
            raise LoadError(f"{what}: exit status {result.returncode}")
        return parse_load_output(result.stdout.decode(errors="replace"), what)


def parse_load_output(text: str, what: str = "output") -> Sample:
    """ "LOAD CAPACITY": two unsigned integers (values above 2**32-1 are clamped)."""
    fields = text.split()
    if len(fields) != 2 or not all(f.isascii() and f.isdigit() for f in fields):
        raise LoadError(
            f"{what}: expected 'LOAD CAPACITY' (two unsigned integers), got {text[:60]!r}"
        )
    return clamp(int(fields[0])), clamp(int(fields[1]))


class StaticSampler:
    def __init__(self, load: int, capacity: int) -> None:
        self.value = (clamp(load), clamp(capacity))

    async def sample(self) -> Sample | None:
        return self.value


def make_sampler(
    spec: LoadSpec,
    *,
    proc_root: str = "/proc",
    sys_root: str = "/sys",
    clock: Callable[[], float] = time.monotonic,
) -> Sampler:
    if spec.kind == "cpu":
        return CpuSampler(proc_root)
    if spec.kind == "net":
        return NetSampler(spec.interfaces, spec.capacity, sys_root=sys_root, clock=clock)
    if spec.kind == "command":
        return CommandSampler(spec.command or "", spec.timeout)
    return StaticSampler(spec.load or 0, spec.capacity or 0)
