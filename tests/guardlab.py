"""A lab for the guard's end-to-end tests and benches (issue 13): five hosts
whose control network can be split while their service network stays whole,
an etcd on a third network that a control split does not touch, and every
host's service interface watched with ``ip monitor`` from the start.

Layout of ``guard_lab()`` named NAME (``rais-guard-PID-N``)::

    NAME-sw    the switches: Linux bridges svc, ctl, ctl2, ctl3 and arb
               (no STP, no multicast snooping); host N's ports are sN, cN, aN
    NAME-hN    N = 1..5
               eth0 -- svc  198.51.100.(100+N)/24  service network
               eth1 -- ctl  192.0.2.(10+N)/25      control network: host id,
                                                    the agents' multicast
               eth2 -- arb  192.0.2.(128+N)/25     arbiter network (etcd)
    NAME-c     eth0 -- svc  198.51.100.200/24      a client
    NAME-etcd  eth0 -- arb  192.0.2.254/25         etcd (tests/etcdlab.py, netns=)

The service addresses are 198.51.100.1..4/24, preferred by h1..h4; h5 is the
spare. Each host's own 198.51.100.(100+N) is eth0's primary address, so that
a service address is always a *secondary* and removing one never takes the
others with it (field notes: promote_secondaries=0). Only 192.0.2.0/24 and
198.51.100.0/24 are used; nothing links to the outside.

``split(side, side, ...)`` partitions the control network only: each side's
control ports go onto a bridge of its own (ctl, ctl2, ctl3; the hosts named in
no side are one more side), so each side hears itself only; ``heal()`` puts
them all back on ctl. The service and arbiter
networks are never cut. ``unplug(host)`` / ``plug(host)`` take a host's
switch-side service port down and up (a dead host: it leaves the service
network, its kernel keeps whatever it had).

``Watch`` (started while the lab is built, before any agent) runs
``ip -o -ts monitor address dev eth0`` in every host and keeps every line with
``ip``'s own wall-clock stamp; ``figures`` replays them into holder intervals
per address and computes the overlap (any instant two hosts on the service
network hold the address) and the outage (the longest stretch nobody holds
it). All times in this module are wall-clock (``time.time()``), the clock of
``ip -ts``.

``Agents`` runs ``rais agent --config FILE`` in each host (control on eth1
only, the service interface eth0) with the guard settings given.

Everything is removed when the lab ends, also after a failure; namespaces
left by a killed run go when the next lab starts (netlab.remove_stale).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netlab import Lab, _ip, delete_namespaces, remove_stale

PREFIX = "rais-guard"
HOSTS = ("h1", "h2", "h3", "h4", "h5")
SPARE = "h5"
SWITCH = "sw"
ETCD = "etcd"
CLIENT = "c"
SERVICE = {f"h{n}": f"198.51.100.{n}" for n in range(1, 5)}
"""Each host's preferred service address (h5 has none)."""
PREFIXLEN = 24
ETCD_IP = "192.0.2.254"
CONTROL_BRIDGES = ("ctl", "ctl2", "ctl3")
GROUP = "239.192.0.1:7401"
START_TIMEOUT = 10.0

_counter = iter(range(1, 1 << 30))


def control_ip(host: str) -> str:
    return f"192.0.2.{10 + int(host[1:])}"


def arbiter_ip(host: str) -> str:
    return f"192.0.2.{128 + int(host[1:])}"


def own_ip(host: str) -> str:
    return "198.51.100.200" if host == CLIENT else f"198.51.100.{100 + int(host[1:])}"


# -- the watcher ----------------------------------------------------------------

_STAMP = re.compile(r"^\[([^\]]+)\] ?")
_ADDR = re.compile(r"^(Deleted )?\d+: (\S+)\s+inet6? (\S+?)/(\d+)\b(?:.*valid_lft (\S+))?")


@dataclass(frozen=True)
class Line:
    at: float
    """``ip``'s stamp (wall clock): when it read the kernel's notification."""
    host: str
    address: str
    deleted: bool
    valid_lft: str
    """"2sec", "forever" (or "" when ``ip`` did not print it)."""
    text: str


def parse(host: str, raw: str) -> Line | None:
    """One ``ip -o -ts monitor address`` line (None: not an address line). ``ip``
    sometimes prints several stamps before one message: the last is its own."""
    at = None
    text = raw.rstrip("\n")
    while m := _STAMP.match(text):
        at = datetime.datetime.fromisoformat(m.group(1)).timestamp()
        text = text[m.end() :]
    m = _ADDR.match(text)
    if at is None or m is None:
        return None
    address = str(ipaddress.ip_address(m.group(3)))
    return Line(at, host, address, bool(m.group(1)), m.group(5) or "", text)


@dataclass
class Figures:
    """One address over a window [since, until] of the watch."""

    address: str
    holds: dict[str, list[tuple[float, float]]]
    """Per host: the intervals it held the address on the service network."""
    overlaps: list[tuple[float, float, frozenset[str]]]
    """Every stretch (start, end, hosts) with two hosts or more holding it."""
    outage: float
    """The longest stretch in the window that nobody held it (seconds)."""
    outage_at: float
    since: float
    until: float

    @property
    def overlap(self) -> float:
        return sum(end - start for start, end, _ in self.overlaps)

    def story(self) -> str:
        """Who held it when, relative to ``since`` (for a failing assertion)."""
        spans = sorted((a, b, h) for h, s in self.holds.items() for a, b in s)
        parts = [
            f"{h} {a - self.since:+.3f}..{'' if b >= self.until else f'{b - self.since:+.3f}'}"
            for a, b, h in spans
            if b > self.since
        ]
        return f"{self.address}: " + (", ".join(parts) or "never held")


class Watch:
    """``ip -o -ts monitor address dev eth0`` in each host, from the lab's start."""

    def __init__(self, net: Lab, hosts: Sequence[str]) -> None:
        self.net = net
        self.hosts = tuple(hosts)
        self.lines: list[Line] = []
        self.raw: list[tuple[str, str]] = []
        self.offline: dict[str, list[tuple[float, float]]] = {h: [] for h in self.hosts}
        """Per host, the stretches its service port was unplugged."""
        self._procs: list[subprocess.Popen[str]] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        for h in self.hosts:
            argv = ["ip", "-n", self.net.ns(h), "-o", "-ts", "monitor", "address", "dev", "eth0"]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            self._procs.append(proc)
            thread = threading.Thread(target=self._read, args=(h, proc), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read(self, host: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = parse(host, raw)
            with self._lock:
                self.raw.append((host, raw.rstrip("\n")))
                if line is not None:
                    self.lines.append(line)

    def stop(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for t in self._threads:
            t.join(10)
        for p in self._procs:
            if p.stdout is not None:
                p.stdout.close()
        self._procs.clear()

    def seen(self, host: str, address: str) -> bool:
        with self._lock:
            return any(x.host == host and x.address == address for x in self.lines)

    def changes(self, address: str, since: float = 0.0, until: float = float("inf")) -> list[Line]:
        with self._lock:
            return [x for x in self.lines if x.address == address and since <= x.at <= until]

    def unplugged(self, host: str, at: float) -> None:
        self.offline[host].append((at, float("inf")))

    def plugged(self, host: str, at: float) -> None:
        start, _ = self.offline[host][-1]
        self.offline[host][-1] = (start, at)

    def holds(self, address: str, until: float) -> dict[str, list[tuple[float, float]]]:
        """Per host, the intervals it had ``address`` on eth0 while plugged in,
        from the start of the watch to ``until`` (an interval still open ends
        there)."""
        with self._lock:
            lines = sorted((x for x in self.lines if x.address == address), key=lambda x: x.at)
        out: dict[str, list[tuple[float, float]]] = {}
        for h in self.hosts:
            spans: list[tuple[float, float]] = []
            start: float | None = None
            for x in lines:
                if x.host != h or x.at > until:
                    continue
                if not x.deleted and start is None:
                    start = x.at
                elif x.deleted and start is not None:
                    spans.append((start, x.at))
                    start = None
            if start is not None:
                spans.append((start, until))
            out[h] = [s for span in spans for s in _minus(span, self.offline[h])]
        return out

    def figures(self, address: str, since: float, until: float | None = None) -> Figures:
        until = time.time() if until is None else until
        holds = self.holds(address, until)
        edges = sorted({since, until, *(t for spans in holds.values() for s in spans for t in s)})
        edges = [t for t in edges if since <= t <= until]
        overlaps: list[tuple[float, float, frozenset[str]]] = []
        outage, outage_at, empty_since = 0.0, since, None
        for a, b in itertools.pairwise(edges):
            mid = (a + b) / 2
            who = frozenset(h for h, spans in holds.items() for s, e in spans if s <= mid < e)
            if len(who) > 1:
                if overlaps and overlaps[-1][1] == a and overlaps[-1][2] == who:
                    overlaps[-1] = (overlaps[-1][0], b, who)
                else:
                    overlaps.append((a, b, who))
            if not who:
                empty_since = a if empty_since is None else empty_since
                if b - empty_since > outage:
                    outage, outage_at = b - empty_since, empty_since
            else:
                empty_since = None
        return Figures(address, holds, overlaps, outage, outage_at, since, until)

    def dump(self, since: float = 0.0, addresses: Iterable[str] = ()) -> str:
        """The monitor lines (with host) from ``since`` on, for a report."""
        wanted = set(addresses)
        with self._lock:
            rows = [
                f"{x.host} {datetime.datetime.fromtimestamp(x.at).isoformat()} {x.text}"
                for x in sorted(self.lines, key=lambda x: x.at)
                if x.at >= since and (not wanted or x.address in wanted)
            ]
        return "\n".join(rows)


def _minus(
    span: tuple[float, float], holes: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    out = [span]
    for ha, hb in holes:
        out = [p for a, b in out for p in ((a, min(b, ha)), (max(a, hb), b)) if p[0] < p[1]]
    return out


# -- the lab --------------------------------------------------------------------


class GuardLab(Lab):
    """The running lab: hosts h1..h5, the client c; ``watch`` is running."""

    def __init__(self, name: str) -> None:
        super().__init__(name, len(HOSTS), True)
        self.watch = Watch(self, HOSTS)
        self.sides: dict[str, str] = {h: "ctl" for h in HOSTS}

    def split(self, *sides: Iterable[str]) -> float:
        """Partition the control network: the hosts of each side hear each
        other only; the hosts named in no side are one more side. Returns the
        wall-clock time of the cut."""
        groups = [set(side) for side in sides]
        rest = set(HOSTS).difference(*groups)
        groups += [rest] if rest else []
        if len(groups) > len(CONTROL_BRIDGES):
            raise ValueError(f"at most {len(CONTROL_BRIDGES)} sides")
        return self._move({h: CONTROL_BRIDGES[i] for i, side in enumerate(groups) for h in side})

    def heal(self) -> float:
        return self._move({h: "ctl" for h in HOSTS})

    def _move(self, where: dict[str, str]) -> float:
        batch = "".join(
            f"link set c{h[1:]} master {br}\n" for h, br in where.items() if self.sides[h] != br
        )
        at = time.time()
        if batch:
            _ip("-n", self.ns(SWITCH), "-batch", "-", stdin=batch)
        self.sides.update(where)
        return at

    def unplug(self, host: str) -> float:
        at = time.time()
        self.ip(SWITCH, "link", "set", f"s{host[1:]}", "down")
        self.watch.unplugged(host, at)
        return at

    def plug(self, host: str) -> float:
        self.ip(SWITCH, "link", "set", f"s{host[1:]}", "up")
        at = time.time()
        self.watch.plugged(host, at)
        return at

    def cut_arbiter(self) -> float:
        """Take etcd's switch port down: etcd runs on, nobody reaches it."""
        at = time.time()
        self.ip(SWITCH, "link", "set", "ae", "down")
        return at

    def mend_arbiter(self) -> float:
        self.ip(SWITCH, "link", "set", "ae", "up")
        return time.time()

    def restore(self) -> None:
        """Heal the control network, reconnect etcd and plug every unplugged
        host back in."""
        self.heal()
        self.mend_arbiter()
        for h, spans in self.watch.offline.items():
            if spans and spans[-1][1] == float("inf"):
                self.plug(h)

    def service_addresses(self, host: str) -> set[str]:
        """The service addresses (198.51.100.1..99) on ``host``'s eth0 now."""
        return {
            str(a)
            for a in self.addresses(host)
            if a.version == 4 and str(a).startswith("198.51.100.") and int(str(a)[11:]) < 100
        }

    def holders(self, address: str) -> list[str]:
        return [h for h in HOSTS if address in self.service_addresses(h)]

    def placement(self) -> dict[str, list[str]]:
        """Every service address -> the hosts holding it now."""
        return {a: self.holders(a) for a in SERVICE.values()}

    def flush(self) -> None:
        """Remove every service address left on any host (between scenarios)."""
        for h in HOSTS:
            for a in self.service_addresses(h):
                self.ip(h, "addr", "del", f"{a}/{PREFIXLEN}", "dev", "eth0", check=False)


def _build(net: GuardLab) -> None:
    sw = net.ns(SWITCH)
    _ip("netns", "add", sw)
    net.made.append(sw)
    bridges = ("svc", *CONTROL_BRIDGES, "arb")
    _ip(
        "-n",
        sw,
        "-batch",
        "-",
        stdin="link set lo up\n"
        + "".join(
            f"link add {b} type bridge stp_state 0 forward_delay 0 mcast_snooping 0\n"
            f"link set {b} up\n"
            for b in bridges
        ),
    )
    ports: list[tuple[str, str]] = []
    for member in (*HOSTS, CLIENT, ETCD):
        ns = net.ns(member)
        _ip("netns", "add", ns)
        net.made.append(ns)
        if member == CLIENT:
            links = [("eth0", "sc", "svc", f"{own_ip(CLIENT)}/24")]
        elif member == ETCD:
            links = [("eth0", "ae", "arb", f"{ETCD_IP}/25")]
        else:
            n = member[1:]
            links = [
                ("eth0", f"s{n}", "svc", ""),  # its address once the watch runs
                ("eth1", f"c{n}", "ctl", f"{control_ip(member)}/25"),
                ("eth2", f"a{n}", "arb", f"{arbiter_ip(member)}/25"),
            ]
        batch = "link set lo up\n"
        for dev, port, bridge, cidr in links:
            batch += f"link add {dev} type veth peer name {port} netns {sw}\n"
            batch += f"link set {dev} multicast on up\n"
            batch += f"addr add {cidr} dev {dev}\n" if cidr else ""
            ports.append((port, bridge))
        _ip("-n", ns, "-batch", "-", stdin=batch)
    _ip("-n", sw, "-batch", "-", stdin="".join(f"link set {p} master {b} up\n" for p, b in ports))


@contextlib.contextmanager
def guard_lab(prefix: str = PREFIX) -> Iterator[GuardLab]:
    """Build the lab, start the watch (checked: each watcher saw its host's own
    address appear), yield it; delete everything."""
    remove_stale(prefix)
    net = GuardLab(f"{prefix}-{os.getpid()}-{next(_counter)}")
    try:
        _build(net)
        net.watch.start()
        deadline = time.monotonic() + START_TIMEOUT
        pending = set(HOSTS)
        while pending:
            for h in sorted(pending):
                # (re)added until its watcher reports it: then it is subscribed
                net.ip(h, "addr", "replace", f"{own_ip(h)}/24", "dev", "eth0")
                if net.watch.seen(h, own_ip(h)):
                    pending.discard(h)
            if time.monotonic() > deadline:
                raise RuntimeError(f"ip monitor silent in {sorted(pending)}")
            time.sleep(0.05)
        yield net
    finally:
        net.watch.stop()
        delete_namespaces(net.made, "guard lab teardown")


# -- the agents -----------------------------------------------------------------


@dataclass
class Guard:
    """A group's guard settings (written only when ``mode`` is not "none")."""

    mode: str = "none"
    voters: tuple[str, ...] = HOSTS
    lease: float = 2.0
    on_arbiter_loss: str = "hold"
    etcd_ttl: int = 2

    def toml(self) -> str:
        if self.mode == "none":
            return ""
        text = f'guard = "{self.mode}"\nlease = "{self.lease:g}s"\n'
        if self.mode == "majority":
            text += "voters = [" + ", ".join(f'"{control_ip(h)}"' for h in self.voters) + "]\n"
        if self.mode == "etcd":
            text += f'on_arbiter_loss = "{self.on_arbiter_loss}"\n'
        return text


@dataclass
class Agents:
    """``rais agent`` in each host, configs and logs under ``tmp``."""

    net: GuardLab
    tmp: Path
    guard: Guard = field(default_factory=Guard)
    heartbeat: str = "100ms"
    timeout: str = "300ms"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        (self.tmp / "key").write_text("guard-e2e-secret-key\n")
        for h in HOSTS:
            self.config(h).write_text(self._toml(h))

    def config(self, host: str) -> Path:
        return self.tmp / f"{host}.toml"

    def _toml(self, host: str) -> str:
        pref = f'preferred = "{SERVICE[host]}/{PREFIXLEN}"\n' if host in SERVICE else ""
        etcd = ""
        if self.guard.mode == "etcd":
            etcd = (
                f'[etcd]\nendpoints = ["http://{ETCD_IP}:2379"]\nttl = "{self.guard.etcd_ttl}s"\n'
            )
        return (
            f'[host]\ncontrol = ["{control_ip(host)}"]\nstate_dir = "{self.tmp / host}"\n'
            f'[auth]\nkey_file = "{self.tmp / "key"}"\n{etcd}'
            f'[[group]]\nname = "www"\naddress = "{GROUP}"\ninterface = "eth0"\n{pref}'
            f'heartbeat = "{self.heartbeat}"\ntimeout = "{self.timeout}"\n'
            f'orphan_timeout = "60s"\n{self.guard.toml()}'
        )

    def start(self, *hosts: str) -> None:
        for h in hosts or HOSTS:
            argv = ["ip", "netns", "exec", self.net.ns(h), sys.executable, "-m", "rais"]
            argv += ["agent", "--config", str(self.config(h))]
            with open(self.tmp / f"{h}.log", "ab") as log:
                self.procs[h] = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )

    def signal(self, host: str, sig: int) -> float:
        at = time.time()
        self.procs[host].send_signal(sig)
        return at

    def wait(self, host: str, timeout: float = 10.0) -> int:
        return self.procs[host].wait(timeout)

    def running(self, host: str) -> bool:
        return host in self.procs and self.procs[host].poll() is None

    def cli(self, host: str, *argv: str, check: bool = True) -> str:
        return self.net.run(host, sys.executable, "-m", "rais", *argv, check=check).stdout

    def status(self, host: str) -> dict[str, Any]:
        """``rais status --json`` of ``host``'s group www."""
        data = json.loads(self.cli(host, "status", "--json"))
        return dict(data["groups"][0])

    def log(self, host: str) -> str:
        with contextlib.suppress(OSError):
            return (self.tmp / f"{host}.log").read_text(errors="replace")
        return ""

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {h} ---\n{self.log(h)[-chars:]}" for h in HOSTS)

    def stop_all(self) -> None:
        """SIGKILL (and SIGCONT, for a stopped one) every agent, then remove
        what they left on the hosts."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
                    proc.send_signal(signal.SIGCONT)
                proc.wait(10)
        self.net.flush()
