"""The three-host lab of bench/starved.py and bench/flood.py: hosts h1, h2, h3
of ``tests/netlab.py`` on a bridge, rais agents (h1 prefers 198.51.100.1/24,
h2 198.51.100.2/24, h3 the spare) or another system in them, every change of
the service addresses from ``ip -o monitor address``, and the agents' /metrics."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from failover import Procs, cpu_ticks, holders, wait_until  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from netlab import Lab, lab  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

HOSTS = ("h1", "h2", "h3")
STEADY = {"198.51.100.1": "h1", "198.51.100.2": "h2"}
"""Each service address and its steady holder."""
LATENESS_EDGES = ("0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1.0")
FETCH = (
    "import sys, urllib.request\n"
    "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:7400/metrics', timeout=5)"
    ".read().decode())\n"
)
OWN_SESSIONS = [False]
"""Start every process in a session of its own (its own scheduler autogroup)."""
_ADDR = re.compile(r"\sinet6?\s+([0-9a-f.:]+)/")

# -- watching addresses --------------------------------------------------------


class AddressLog:
    """``ip -o monitor address`` in every host; keeps the transitions of the
    service addresses (added where absent, deleted where present) with their
    monotonic time of arrival. Lifetime refreshes print lines too; a line for
    an address already present is not an add."""

    def __init__(self, procs: Procs, net: Lab, hosts: tuple[str, ...] = HOSTS) -> None:
        self.present: set[tuple[str, str]] = set()
        self.changes: list[tuple[float, str, str, bool]] = []
        """(time, host, address, added)"""
        self.lock = threading.Lock()
        for host in hosts:
            proc = procs.start(["ip", "-n", net.ns(host), "-o", "monitor", "address"], pipe=True)
            threading.Thread(target=self._read, args=(host, proc), daemon=True).start()

    def _read(self, host: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            m = _ADDR.search(line)
            if m is None or m.group(1) not in STEADY:
                continue
            key, added = (host, m.group(1)), not line.startswith("Deleted")
            with self.lock:
                if added != (key in self.present):
                    self.changes.append((time.monotonic(), host, m.group(1), added))
                    (self.present.add if added else self.present.discard)(key)

    def false_failovers(self, t0: float, t1: float) -> dict[str, int]:
        """Per address: adds on a host other than its steady holder in [t0, t1]."""
        out = dict.fromkeys(STEADY, 0)
        with self.lock:
            for t, host, addr, added in self.changes:
                if t0 <= t <= t1 and added and host != STEADY[addr]:
                    out[addr] += 1
        return out

    def holder_drops(self, t0: float, t1: float) -> int:
        """Deletions of an address on its steady holder in [t0, t1]."""
        with self.lock:
            return sum(
                1
                for t, host, addr, added in self.changes
                if t0 <= t <= t1 and not added and host == STEADY[addr]
            )


def steady(net: Lab) -> bool:
    return all(holders(net, a) == [h] for a, h in STEADY.items())


# -- metrics ---------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition: 'name{labels}' -> value (comments dropped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def lateness(after: dict[str, float], before: dict[str, float]) -> list[float]:
    """Heartbeats per lateness bucket (not cumulative): one count per edge of
    LATENESS_EDGES (up to it from the previous edge), then above the last."""
    cum = [
        delta(after, before, f'rais_heartbeat_lateness_seconds_bucket{{group="www",le="{e}"}}')
        for e in (*LATENESS_EDGES, "+Inf")
    ]
    return [cum[0], *(b - a for a, b in itertools.pairwise(cum))]


def event_count(after: dict[str, float], before: dict[str, float], kind: str) -> float:
    return delta(after, before, f'rais_events_total{{group="www",kind="{kind}"}}')


# -- rais ---------------------------------------------------------------


class System:
    name = ""

    def __init__(self, net: Lab, procs: Procs, tmp: Path, hb_ms: int) -> None:
        self.net, self.procs, self.tmp, self.hb_ms = net, procs, tmp, hb_ms
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        raise NotImplementedError

    def pids(self, host: str) -> list[int]:
        return [self.daemons[host].pid]

    def log(self, host: str) -> str:
        path = self.tmp / f"{host}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def ready(self) -> bool:
        return steady(self.net)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per host, what the daemon counts (rais: its /metrics)."""
        return {}


class Rais(System):
    name = "rais"
    src = ROOT / "src"
    realtime = False

    def start(self) -> None:
        key = self.tmp / "key"
        key.write_text("bench-secret-key\n")
        for n, host in enumerate(HOSTS, start=1):
            pref = f'preferred = "198.51.100.{n}/24"\n' if n <= 2 else ""
            conf = self.tmp / f"{host}.toml"
            conf.write_text(
                f'[host]\ncontrol = ["{self.net.ipv4(host)}"]\n'
                f'state_dir = "{self.tmp / host}"\n'
                + ("realtime = true\n" if self.realtime else "")
                + f'[auth]\nkey_file = "{key}"\n'
                f'[[group]]\nname = "www"\naddress = "239.192.0.1:7401"\n'
                f'interface = "eth0"\n{pref}heartbeat = "{self.hb_ms}ms"\n'
                f'timeout = "{3 * self.hb_ms}ms"\n'
            )
            argv = ["ip", "netns", "exec", self.net.ns(host), "env", f"PYTHONPATH={self.src}"]
            argv += [sys.executable, "-m", "rais", "agent", "--config", str(conf)]
            self.daemons[host] = self.procs.start(argv, self.tmp / f"{host}.log")

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {
            h: parse_metrics(self.net.run(h, sys.executable, "-c", FETCH).stdout) for h in HOSTS
        }


@contextlib.contextmanager
def started(
    kind: type[System], tmp: Path, hb_ms: int, prefix: str, extra: str | None = None
) -> Iterator[tuple[Lab, Procs, System, AddressLog]]:
    """A lab with ``kind`` running in h1..h3, settled + 2 s; ``extra`` adds a
    host namespace of that name (eth0 192.0.2.250/24 on the bridge). Every
    process is started in this session unless OWN_SESSIONS[0] (see
    failover.Procs). Removes everything on exit."""
    tmp.mkdir()
    os.chmod(tmp, 0o755)
    procs = Procs()
    procs.own_session = OWN_SESSIONS[0]
    with lab(len(HOSTS), prefix) as net, contextlib.ExitStack() as stack:
        stack.callback(procs.kill_all)
        if extra is not None:
            add_host(net, extra)
        log = AddressLog(procs, net)
        time.sleep(0.2)
        system = kind(net, procs, tmp, hb_ms)
        system.start()
        try:
            wait_until(lambda: not check_alive(system) and system.ready(), 30.0, "settling")
        except RuntimeError:
            logs = "\n".join(f"--- {h}\n{system.log(h)}" for h in HOSTS)
            raise RuntimeError(f"{kind.name} did not settle:\n{logs}") from None
        time.sleep(2.0)
        check_alive(system)
        yield net, procs, system, log


def add_host(net: Lab, name: str, address: str = "192.0.2.250/24") -> None:
    ns = net.ns(name)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    net.made.append(ns)
    net.ip(name, "link", "set", "lo", "up")
    net.ip(name, "link", "add", "eth0", "type", "veth", "peer", "name", name, "netns", net.ns("br"))
    net.ip(name, "link", "set", "eth0", "multicast", "on", "up")
    net.ip(name, "addr", "add", address, "dev", "eth0")
    net.ip("br", "link", "set", name, "master", "br0", "up")


def check_alive(system: System) -> list[str]:
    """Hosts whose daemon has exited (RuntimeError if all have)."""
    dead = [h for h, p in system.daemons.items() if p.poll() is not None]
    if len(dead) == len(system.daemons):
        raise RuntimeError(f"{system.name}: every daemon exited:\n{system.log(dead[0])}")
    return dead


def cpu_pct(system: System, before: dict[str, int], seconds: float) -> dict[str, float]:
    clk = os.sysconf("SC_CLK_TCK")
    now = {h: cpu_ticks(system.pids(h)) for h in HOSTS}
    return {h: 100.0 * (now[h] - before[h]) / clk / seconds for h in HOSTS}


def summed_lateness(
    after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]
) -> list[float]:
    rows = [lateness(after[h], before[h]) for h in HOSTS if after[h]]
    return [sum(col) for col in zip(*rows, strict=True)] if rows else []


BUCKETS = ("≤1", "1-2", "2-5", "5-10", "10-20", "20-50", "50-100", "100-200", "200-500")
BUCKETS_ABOVE = ("500-1000", ">1000")


def lateness_table(rows: list[tuple[str, list[float], list[float]]], what: str = "stress") -> str:
    """Heartbeats per lateness bucket in ms: per (label, quiet row, ``what`` row)."""
    head = "| run | window | heartbeats | " + " | ".join(BUCKETS + BUCKETS_ABOVE) + " |"
    lines = [head, "|" + "---|" * (14)]
    for name, quiet, loaded in rows:
        for label, row in (("quiet", quiet), (what, loaded)):
            if row:
                cells = " | ".join(f"{v:.0f}" for v in row)
                lines.append(f"| {name} | {label} | {sum(row):.0f} | {cells} |")
    return "\n".join(lines)


def loadavg() -> str:
    """The 1-minute load average and how busy the CPUs are over the next second."""

    def ticks() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]

    load = Path("/proc/loadavg").read_text().split()[0]
    a = ticks()
    time.sleep(1.0)
    b = ticks()
    d = [y - x for x, y in zip(a, b, strict=True)]
    busy = 100.0 * (1.0 - (d[3] + d[4]) / max(1, sum(d)))
    return f"{load}, CPUs {busy:.0f} % busy over 1 s"


def describe_src(src: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(src), "log", "-1", "--format=%h"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True, text=True
    )
    commit = out.stdout.strip() or "?"
    return f"`{src}` at {commit}" + (" (modified)" if dirty.stdout.strip() else "")


def ensure_stress_ng() -> None:
    if shutil.which("stress-ng") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "stress-ng"], env=env, check=True)
