"""What bench/cpu_events.py and bench/cpu_steady.py share: agents started in a
lab's namespaces from a chosen src tree, their CPU time and wake-ups read from
/proc, sockets opened inside a namespace, the admin API asked inside one."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _src_arg() -> Path:
    """The ``--src DIR`` of the command line (else this repository's src): read
    before anything imports rais (tests/netlab.py does), so that the synthetic
    peers run the same tree as the agents."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--src" and i + 1 < len(argv):
            return Path(argv[i + 1]).resolve()
        if arg.startswith("--src="):
            return Path(arg.removeprefix("--src=")).resolve()
    return ROOT / "src"


SRC = _src_arg()
sys.path[:0] = [str(SRC), str(ROOT / "tests")]

from benchkit import add_to_readme, machine  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from failover import Procs  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from netlab import Lab  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

PREFIX = "cpu-bench"
"""Namespace prefix of these labs (``cpu-bench-PID-N-host``)."""
SCRATCH = Path("/tmp/cpu")
HEADING = "## CPU per event and steady state (netns lab)"
IP_MULTICAST_ALL = 49
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


# -- namespaces and sockets ----------------------------------------------------


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the calling thread in network namespace ``name`` (``ip netns``) for
    the block: sockets made in it stay in that namespace."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        if _libc.setns(own, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(fd)
        os.close(own)


def group_sockets(ns: str, ip: str, group: str, port: int) -> tuple[socket.socket, socket.socket]:
    """(receive, send) sockets of one host in ``ns`` for a multicast group on
    eth0, as rais.drivers.transport makes them; both non-blocking."""
    with netns(ns):
        index = socket.if_nametoindex("eth0")
        mreqn = struct.pack("4s4si", socket.inet_aton(group), bytes(4), index)
        recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        recv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        recv.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        recv.bind((group, port))
        recv.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        send.bind((ip, 0))
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    for s in (recv, send):
        s.setblocking(False)
    return recv, send


def drain(sock: socket.socket) -> list[tuple[bytes, str]]:
    """Every datagram waiting on ``sock``: (data, source address)."""
    out: list[tuple[bytes, str]] = []
    while True:
        try:
            data, src = sock.recvfrom(2048)
        except BlockingIOError:
            return out
        out.append((data, str(src[0])))


def api_status(net: Lab, host: str) -> dict[str, Any] | None:
    """``GET /v1/status`` of the agent in ``host`` (127.0.0.1:7400 there)."""
    try:
        with (
            netns(net.ns(host)),
            urllib.request.urlopen("http://127.0.0.1:7400/v1/status", timeout=2) as resp,
        ):
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except (OSError, ValueError):
        return None


# -- /proc ---------------------------------------------------------------------


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []


def schedstat(pid: int) -> tuple[int, int]:
    """(ns on a CPU, times scheduled in) of every thread of ``pid``:
    ``/proc/PID/task/*/schedstat`` fields 1 and 3, summed."""
    run = slices = 0
    for tid in _tasks(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
        except FileNotFoundError:
            continue
        run += int(fields[0])
        slices += int(fields[2])
    return run, slices


def switches(pid: int) -> int:
    """voluntary + nonvoluntary context switches of every thread of ``pid``."""
    total = 0
    for tid in _tasks(pid):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def threads(pid: int) -> int:
    return len(_tasks(pid))


_TICK = os.sysconf("SC_CLK_TCK")


class Others:
    """CPU the rest of the machine used over a window: all CPUs' busy time
    (``/proc/stat``: everything but idle and iowait) less the agents' and this
    script's own, in % of one core (other work on the machine while measuring)."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.start = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / _TICK
        mine = sum(schedstat(p)[0] for p in self.pids) / 1e9
        return time.monotonic(), busy, mine, time.process_time()

    def percent(self) -> float:
        end = self._now()
        t, busy, mine, own = (b - a for a, b in zip(self.start, end, strict=True))
        return max(0.0, 100.0 * (busy - mine - own) / t)  # /proc/stat counts in ticks


def wait_quiet(
    pids: Sequence[int], limit: float, timeout: float, keep: Callable[[], object] | None = None
) -> float:
    """Wait (up to ``timeout`` s) until the rest of the machine used under
    ``limit`` % of a core over 2 s (other work not under the bench lock:
    tests); ``keep()`` runs meanwhile (else a sleep). Returns the last figure."""
    end = time.monotonic() + timeout
    while True:
        others = Others(pids)
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            if keep is None:
                time.sleep(0.1)
            else:
                keep()
        other = others.percent()
        if other < limit or time.monotonic() >= end:
            return other
        print(f"waiting for a quiet machine: others use {other:.0f}% of a core", file=sys.stderr)


# -- agents --------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    name: str
    address: str
    port: int
    preferred: str | None = None


def config_text(
    control: str, state_dir: Path, key_file: Path, groups: Sequence[Group], hb_ms: int, dns: bool
) -> str:
    """An agent's config: one multicast group per ``groups`` entry on eth0,
    heartbeat ``hb_ms``, timeout 3 x, orphan_timeout 60 s (as bench/failover.py);
    with ``dns`` the embedded server on 127.0.0.1:5353 and a name per group."""
    text = (
        f'[host]\ncontrol = ["{control}"]\nstate_dir = "{state_dir}"\n'
        f'[auth]\nkey_file = "{key_file}"\n'
    )
    if dns:
        text += '[dns]\nlisten = ["127.0.0.1:5353"]\n'
    for g in groups:
        text += (
            f'[[group]]\nname = "{g.name}"\naddress = "{g.address}:{g.port}"\n'
            f'interface = "eth0"\nheartbeat = "{hb_ms}ms"\ntimeout = "{3 * hb_ms}ms"\n'
            'orphan_timeout = "60s"\n'
        )
        if g.preferred is not None:
            text += f'preferred = "{g.preferred}"\n'
        if dns:
            text += f'[group.dns]\nname = "{g.name}.example.test"\n'
    return text


class Agents:
    """``rais agent`` processes in a lab's hosts, run by ``python`` with
    PYTHONPATH=``src`` (the tree measured)."""

    def __init__(self, procs: Procs, net: Lab, tmp: Path, src: Path, python: str) -> None:
        self.procs, self.net, self.tmp, self.src, self.python = procs, net, tmp, src, python
        self.key = tmp / "key"
        self.key.write_text("bench-secret-key\n")
        self.pids: dict[str, int] = {}

    def write(self, host: str, groups: Sequence[Group], hb_ms: int, dns: bool = False) -> Path:
        conf = self.tmp / f"{host}.toml"
        ip = str(self.net.ipv4(host))
        conf.write_text(config_text(ip, self.tmp / host, self.key, groups, hb_ms, dns))
        return conf

    def start(self, host: str, groups: Sequence[Group], hb_ms: int, dns: bool = False) -> int:
        conf = self.write(host, groups, hb_ms, dns)
        argv = ["ip", "netns", "exec", self.net.ns(host), "env", f"PYTHONPATH={self.src}"]
        argv += [self.python, "-m", "rais", "agent", "--config", str(conf)]
        proc = self.procs.start(argv, self.tmp / f"{host}.log")
        self.pids[host] = proc.pid  # ip netns exec and env exec: this is the agent
        return int(proc.pid)

    def check(self) -> None:
        """Raise if an agent has exited (with the end of its log)."""
        for host, pid in self.pids.items():
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                log = (self.tmp / f"{host}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the agent in {host} exited:\n{log}")


def _zombie(pid: int) -> bool:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2] == "Z"


def src_commit(src: Path) -> str:
    """The last commit that changed the src tree (+ "-dirty" with changes in it)."""
    out = subprocess.run(
        ["git", "-C", str(src), "log", "-1", "--format=%h", "--", "."],
        capture_output=True,
        text=True,
    )
    commit = out.stdout.strip() or "?"
    dirty = subprocess.run(
        ["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True, text=True
    )
    return commit + ("-dirty" if dirty.stdout.strip() else "")


# -- figures and the README ----------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def heading(command: str, src: Path) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"### {now}, {machine()}\n\n`{command}`, src tree {src} at {src_commit(src)}.\n\n"


def append_readme(path: Path, subheading: str, method: str, section: str) -> None:
    """Add ``section`` under HEADING, after ``method`` under ``subheading`` the
    first time that one appears (benchkit.add_to_readme)."""
    add_to_readme(path, HEADING, INTRO, section, subheading=subheading, method=method)


INTRO = """\
Issue 14, goals 1 and 2. `bench/cpu_events.py` (parts A and B) and
`bench/cpu_steady.py` (part C) run real `rais agent` processes in network
namespaces (`tests/netlab.py`: hosts on a Linux bridge, eth0 192.0.2.1N/24,
multicast control on eth0, heartbeat 100 ms, timeout 300 ms, orphan_timeout
60 s) and read their CPU time from `/proc/PID/task/*/schedstat` (first field,
ns on a CPU, summed over threads; third field, times scheduled in) and their
wake-ups from `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` in
`/proc/PID/task/*/status`. `--src DIR` picks the src tree the agents (and the
synthetic peers) run, so one script measures before and after; each run holds
`flock /tmp/bench.lock`, and each measurement starts once the rest of the
machine (work not under the lock: CPU busy time from `/proc/stat` less the
agents' and the script's own) has used under 10% of a core over 2 s
(`--quiet-pct`, waiting at most `--quiet-wait` s); the tables show that
figure over the measurement itself as "other CPU %". Run as root:

```sh
flock /tmp/bench.lock .venv/bin/python bench/cpu_events.py [--src DIR] [--samples 10000]
flock /tmp/bench.lock .venv/bin/python bench/cpu_steady.py [--src DIR]
```"""


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet-pct",
        type=float,
        default=10.0,
        help="measure once the rest of the machine uses under this %% of a core (default 10)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=180.0,
        help="wait at most this many s for that, then measure anyway (default 180; 0: never)",
    )
