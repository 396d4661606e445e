"""What a client and the kernels see, for the end-to-end tests and bench/:
a UDP echo server per host and a prober in the client namespace, and
``ip monitor address`` in every host (every change, not a sampled view)."""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from netlab import Lab

ECHO_PORT = 9

# A UDP echo server: answers the 8-byte sequence number followed by its host name.
ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
print("ready", flush=True)
tag = sys.argv[1].encode()
while True:
    data, src = s.recvfrom(2048)
    s.sendto(data[:8] + tag, src)
"""

# The prober: one datagram every INTERVAL s on a fixed schedule, until SIGTERM
# (or MAX s); writes {"sent": [t...], "got": [[seq, t, host]...]} (monotonic
# clock, shared with the parent) to OUT.
PROBER = r"""
import json, select, signal, socket, struct, sys, time
target, port, interval, out, limit = (
    sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sent, got = [], []
start = time.monotonic()
due = start
while not stop and time.monotonic() - start < limit:
    now = time.monotonic()
    if now >= due:
        try:
            s.sendto(struct.pack("!Q", len(sent)), (target, port))
        except OSError:
            pass
        sent.append(now)
        due += interval
        if due < now:
            due = now + interval
        continue
    ready, _, _ = select.select([s], [], [], due - now)
    while ready:
        try:
            data, _src = s.recvfrom(2048)
        except BlockingIOError:
            break
        if len(data) >= 8:
            got.append([struct.unpack("!Q", data[:8])[0], time.monotonic(), data[8:].decode()])
with open(out, "w") as f:
    json.dump({"sent": sent, "got": got}, f)
"""


@dataclass
class Answers:
    sent: list[float]
    got: list[tuple[int, float, str]]
    """(sequence number, arrival time, answering host), in arrival order."""

    def longest_loss(self) -> float:
        """The longest time the service did not answer, by the prober's own
        clock: from the sending of the last answered probe before a run of
        unanswered ones to the sending of the next answered one (0: every
        probe answered). A prober or echo server kept off the CPU by a busy
        machine delays answers but loses none, so this, unlike the gap between
        arrivals, is the service's outage alone."""
        answered = sorted({seq for seq, _, _ in self.got})
        return max(
            (self.sent[b] - self.sent[a] for a, b in itertools.pairwise(answered) if b > a + 1),
            default=0.0,
        )

    def outage(self, failed: str) -> tuple[float, str | None]:
        """The gap from the last answer of host ``failed`` to the first answer of
        another host after it (seconds), and that host (None: nobody answered)."""
        last = max((t for _, t, h in self.got if h == failed), default=None)
        if last is None:
            return float("inf"), None
        after = [(t, h) for _, t, h in self.got if t > last and h != failed]
        if not after:
            return float("inf"), None
        return after[0][0] - last, after[0][1]


class UdpProbe:
    """Echo servers in ``hosts`` and a prober in the client sending to ``target``."""

    def __init__(
        self, net: Lab, hosts: list[str], target: str, tmp: Path, interval: float = 0.005
    ) -> None:
        self.out = tmp / f"probe-{target}.json"
        self.procs: list[subprocess.Popen[bytes]] = []
        for h in hosts:
            argv = ["ip", "netns", "exec", net.ns(h), sys.executable, "-c", ECHO, h]
            echo = subprocess.Popen([*argv, str(ECHO_PORT)], stdout=subprocess.PIPE)
            self.procs.append(echo)
            assert echo.stdout is not None
            if echo.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"echo server on {h} did not start")
        argv = ["ip", "netns", "exec", net.ns("c"), sys.executable, "-c", PROBER, target]
        argv += [str(ECHO_PORT), str(interval), str(self.out), "120"]
        self.prober = subprocess.Popen(argv)

    def stop(self) -> Answers:
        self.prober.send_signal(signal.SIGTERM)
        self.prober.wait(10)
        self.kill()
        data = json.loads(self.out.read_text())
        return Answers(data["sent"], [(s, t, h) for s, t, h in data["got"]])

    def kill(self) -> None:
        for p in [self.prober, *self.procs]:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            if p.stdout is not None:
                p.stdout.close()


_MON = re.compile(r"^(?:\[(\S+)\] ?)?(Deleted )?\d+: (\S+)\s+inet6? (\S+?)/(\d+)")


@dataclass
class Change:
    time: float
    """time.monotonic() when the line was read (``stamped``: when ``ip`` got
    the change, its wall-clock stamp moved onto the monotonic clock)."""
    host: str
    address: str
    added: bool


@dataclass
class AddrMonitor:
    """``ip -o monitor address`` in each host; ``holders_over_time`` replays the
    changes to find every moment two hosts held an address."""

    net: Lab
    hosts: list[str]
    stamped: bool = False
    """``ip -ts``: time each change by ``ip``'s own stamp, not by when this
    process read the line (no skew from a busy reader between hosts)."""
    changes: list[Change] = field(default_factory=list)
    _procs: list[subprocess.Popen[str]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _initial: dict[str, set[str]] = field(default_factory=dict)

    def start(self) -> None:
        for h in self.hosts:
            argv = ["ip", "-n", self.net.ns(h), "-o", *(["-ts"] if self.stamped else [])]
            argv += ["monitor", "address"]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            self._procs.append(proc)
            t = threading.Thread(target=self._read, args=(h, proc), daemon=True)
            t.start()
            self._threads.append(t)
        # Called when nothing changes (a settled group): whether a monitor
        # subscribed before or after this snapshot makes no difference then.
        for h in self.hosts:
            self._initial[h] = {str(ip) for ip in self.net.addresses(h)}

    def _read(self, host: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = _MON.match(line)
            if m:
                at = time.monotonic()
                if m.group(1):
                    at -= time.time() - datetime.fromisoformat(m.group(1)).timestamp()
                self.changes.append(Change(at, host, m.group(4), not m.group(2)))

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

    def overlaps(self, address: str, since: float = 0.0) -> list[tuple[float, set[str]]]:
        """Each moment (after a change, from ``since`` on) at which more than one
        host held ``address``."""
        ip = str(ipaddress.ip_address(address))
        held = {h for h in self.hosts if ip in self._initial.get(h, set())}
        out = []
        # In time order: each host's monitor appends from its own thread.
        for c in sorted(self.changes, key=lambda c: c.time):
            if c.address != ip:
                continue
            if c.added:
                held.add(c.host)
            else:
                held.discard(c.host)
            if len(held) > 1 and c.time >= since:
                out.append((c.time, set(held)))
        return out

    def seen(self, address: str) -> int:
        ip = str(ipaddress.ip_address(address))
        return sum(1 for c in self.changes if c.address == ip)
