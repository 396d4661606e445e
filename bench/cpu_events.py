"""CPU per event of a rais agent (issue 14, goal 1), in a netns lab.

Needs root and iproute2. Run::

    flock /tmp/bench.lock .venv/bin/python bench/cpu_events.py [--src DIR] [--samples 10000]
        [--hosts 3,16] [--parts A,B] [--seconds 20] [--no-readme]

A. Per received info: ``rais agent`` in h1 (preferred 198.51.100.1/24,
   heartbeat 100 ms) and N-1 synthetic peers h2..hN: rais's own core
   (rais.core.core.Core, its CoreConfig built from a config file as
   rais.runtime.group builds it) driven by this script, on sockets in each
   peer's namespace (multicast, as rais.drivers.transport). The agent hears
   valid peers and the peers hear the agent and each other. One sample: read
   the agent's schedstat, send one peer datagram, sleep ``--gap-ms``, read it
   again. Peers take turns; a peer whose queue is empty is given a timer pass
   (its core's heartbeat is set to 1 ms, so every pass is one new info), so
   each peer beats once per N-1 samples, faster than 100 ms.
B. Two lone agents (no peers) at 100 ms, at once, each alone in a group of
   its own: h1 holding nothing (no preferred), h2 holding one address; CPU,
   wake-ups, datagrams sent (heard in h3) and netlink refreshes (``ip -o
   monitor address`` lines) over ``--seconds``.
"""

from __future__ import annotations

import argparse
import collections
import collections.abc
import contextlib
import dataclasses
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from benchkit import interruptible  # type: ignore[import-not-found, unused-ignore]
from cpukit import (  # type: ignore[import-not-found, unused-ignore]
    PREFIX,
    SCRATCH,
    SRC,
    Agents,
    Group,
    Others,
    add_quiet,
    api_status,
    append_readme,
    drain,
    group_sockets,
    heading,
    mean,
    pct,
    schedstat,
    switches,
    threads,
    wait_quiet,
)
from failover import AddressWatch, Procs, wait_until  # type: ignore[import-not-found, unused-ignore]
from netlab import Lab, lab  # type: ignore[import-not-found, unused-ignore]

from rais.config import load
from rais.config.keys import core_settings
from rais.core.config import CoreConfig
from rais.core.core import Core
from rais.core.effects import Acquire, Release, Send
from rais.runtime.group import to_addr

HB_MS = 100
GROUP = Group("www", "239.192.0.1", 7401)
VIP = "198.51.100.1"
PEER_BEAT = 0.001
"""The synthetic peers' core heartbeat: every timer pass the script gives one is due."""


class Peer:
    """A synthetic host: rais's core, driven here, on real sockets in its namespace."""

    def __init__(self, conf: Path, ns: str, ip: str, seed: int) -> None:
        cfg = load(str(conf))
        group = cfg.groups[0]
        config = CoreConfig(
            control=tuple(to_addr(c) for c in cfg.host.control),
            keys=cfg.auth.keys,
            **core_settings(group),
        )
        config = dataclasses.replace(config, heartbeat=PEER_BEAT)
        self.core = Core(config, epoch=1, rng=random.Random(seed), now=time.monotonic())
        self.recv, self.sock = group_sockets(ns, ip, str(group.address), group.port)
        self.dest = (str(group.address), group.port)
        self.queue: collections.deque[bytes] = collections.deque()
        self.core.start_listening(time.monotonic())
        self.pump()

    def pump(self) -> None:
        """Queue the datagrams the core sends; every action succeeds at once."""
        done = True
        while done:
            done = False
            for eff in self.core.effects():
                if isinstance(eff, Send):
                    self.queue.append(eff.data)
                elif isinstance(eff, Acquire | Release):
                    self.core.action_done(time.monotonic(), eff.address, True)
                    done = True

    def next_datagram(self) -> bytes:
        if not self.queue:
            self.core.handle_timer(time.monotonic())
            self.pump()
        return self.queue.popleft()


def exchange(peers: list[Peer], agent_ip: str) -> bool:
    """Hand every peer what its socket got; True if the agent sent anything."""
    now = time.monotonic()
    heard = False
    for p in peers:
        for data, src in drain(p.recv):
            p.core.datagram_received(now, data, 0)
            heard = heard or src == agent_ip
        p.pump()
    return heard


@dataclasses.dataclass(frozen=True)
class Sample:
    cpu_ns: int
    slices: int
    agent_sent: bool
    size: int


class Driver:
    """Peers taking turns, one datagram per ``gap`` s window."""

    def __init__(self, peers: list[Peer], pid: int, agent_ip: str, gap: float) -> None:
        self.peers, self.pid, self.agent_ip, self.gap = peers, pid, agent_ip, gap
        self.turn = 0

    def step(self) -> Sample:
        self.exchange()
        peer = self.peers[self.turn % len(self.peers)]
        self.turn += 1
        data = peer.next_datagram()
        cpu0, slices0 = schedstat(self.pid)
        peer.sock.sendto(data, peer.dest)
        time.sleep(self.gap)
        cpu1, slices1 = schedstat(self.pid)
        sent = self.exchange()
        return Sample(cpu1 - cpu0, slices1 - slices0, sent, len(data))

    def exchange(self) -> bool:
        return exchange(self.peers, self.agent_ip)

    def run_for(self, seconds: float, ready: collections.abc.Callable[[], bool]) -> None:
        """Keep the peers going until ``ready()`` (checked every 0.5 s) or time is up."""
        end = time.monotonic() + seconds
        check = 0.0
        while time.monotonic() < end:
            self.step()
            if time.monotonic() >= check:
                if ready():
                    return
                check = time.monotonic() + 0.5
        raise RuntimeError(f"not ready after {seconds:.0f} s")


@dataclasses.dataclass
class EventsResult:
    hosts: int
    samples: list[Sample]
    leader: str
    threads: int
    other_pct: float


def view(net: Lab, host: str) -> tuple[int, str]:
    """(live hosts, leader) of group www as the agent in ``host`` reports them
    (no leader: "?"; leader "-" until it has settled)."""
    status = api_status(net, host)
    for g in [] if status is None else status.get("groups", []):
        if g.get("name") == GROUP.name:
            live = sum(1 for h in g.get("hosts", []) if h.get("live"))
            return live, str(g.get("leader")) if g.get("settled") else "-"
    return 0, "?"


def part_a(args: argparse.Namespace, n_hosts: int, tmp: Path) -> EventsResult:
    procs = Procs()
    with lab(n_hosts, PREFIX) as net, contextlib.ExitStack() as stack:
        stack.callback(procs.kill_all)
        agents = Agents(procs, net, tmp, args.src, args.python)
        pid = agents.start("h1", [dataclasses.replace(GROUP, preferred=f"{VIP}/24")], HB_MS)
        peers = []
        for n, host in enumerate(net.hosts[1:], start=2):
            conf = agents.write(host, [GROUP], HB_MS)
            peers.append(Peer(conf, net.ns(host), str(net.ipv4(host)), n))
        agent_ip = str(net.ipv4("h1"))
        driver = Driver(peers, pid, agent_ip, args.gap_ms / 1000)

        def ready() -> bool:
            agents.check()
            holds = bool({str(a) for a in net.addresses("h1")} & {VIP})
            # h1 has the lowest id: it leads once it has settled.
            return holds and view(net, "h1") == (n_hosts, agent_ip)

        driver.run_for(120.0, ready)
        warm = time.monotonic() + 2.0
        while time.monotonic() < warm:
            driver.step()
        wait_quiet([pid], args.quiet_pct, args.quiet_wait, driver.step)
        others = Others([pid])
        samples = [driver.step() for _ in range(args.samples)]
        other = others.percent()
        agents.check()
        live, leader = view(net, "h1")
        if live != n_hosts:
            raise RuntimeError("the agent lost a synthetic peer during the run")
        return EventsResult(n_hosts, samples, leader, threads(pid), other)


@dataclasses.dataclass
class LoneResult:
    held: bool
    seconds: float
    cpu_ns: int
    wakeups: int
    datagrams: int
    refreshes: int
    threads: int
    other_pct: float


LONE = {"h1": GROUP, "h2": Group("solo", "239.192.0.2", 7402, f"{VIP}/24")}
"""Part B's two lone agents, at once in one lab, each alone in a group of its
own: h1 holding nothing, h2 holding 198.51.100.1; h3 only listens."""


def part_b(args: argparse.Namespace, tmp: Path) -> list[LoneResult]:
    procs = Procs()
    with lab(3, PREFIX) as net, contextlib.ExitStack() as stack:
        stack.callback(procs.kill_all)
        agents = Agents(procs, net, tmp, args.src, args.python)
        pids = {h: agents.start(h, [g], HB_MS) for h, g in LONE.items()}
        ns, listen = net.ns("h3"), str(net.ipv4("h3"))
        recv = {h: group_sockets(ns, listen, g.address, g.port)[0] for h, g in LONE.items()}
        watch = {h: AddressWatch(procs, net, h) for h in LONE}
        ips = {h: str(net.ipv4(h)) for h in LONE}

        def ready() -> bool:
            agents.check()
            if any(api_status(net, h) is None for h in LONE):
                return False
            return VIP in {str(a) for a in net.addresses("h2")}

        wait_until(ready, 30.0, "the lone agents")
        time.sleep(3.0)
        wait_quiet(list(pids.values()), args.quiet_pct, args.quiet_wait)
        for sock in recv.values():
            drain(sock)
        others = Others(list(pids.values()))
        t0 = time.monotonic()
        cpu0 = {h: schedstat(p)[0] for h, p in pids.items()}
        w0 = {h: switches(p) for h, p in pids.items()}
        sent = dict.fromkeys(LONE, 0)
        while time.monotonic() - t0 < args.seconds:
            time.sleep(0.1)
            for h, sock in recv.items():
                sent[h] += sum(1 for _, src in drain(sock) if src == ips[h])
        cpu1 = {h: schedstat(p)[0] for h, p in pids.items()}
        w1 = {h: switches(p) for h, p in pids.items()}
        t1 = time.monotonic()
        for h, sock in recv.items():
            sent[h] += sum(1 for _, src in drain(sock) if src == ips[h])
            sock.close()
        other = others.percent()
        agents.check()
        return [
            LoneResult(
                g.preferred is not None,
                t1 - t0,
                cpu1[h] - cpu0[h],
                w1[h] - w0[h],
                sent[h],
                sum(1 for when, _ in list(watch[h].lines) if t0 <= when < t1),
                threads(pids[h]),
                other,
            )
            for h, g in LONE.items()
        ]


# -- report ---------------------------------------------------------------------


def us3(values: list[float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{pct(values, q) / 1000:.0f}" for q in (0.5, 0.9, 0.99))


def table_a(results: list[EventsResult]) -> str:
    lines = [
        "| hosts | agent leads | datagram bytes | samples | µs median / p90 / p99, all "
        "| no agent send in the window: samples; µs median / p90 / p99 "
        "| no send, scheduled in once: samples; µs median / p90 / p99 | other CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        every = [float(s.cpu_ns) for s in r.samples]
        quiet = [float(s.cpu_ns) for s in r.samples if not s.agent_sent]
        once = [float(s.cpu_ns) for s in r.samples if not s.agent_sent and s.slices == 1]
        size = mean([float(s.size) for s in r.samples])
        leads = "yes" if r.leader == "192.0.2.11" else f"no ({r.leader})"
        lines.append(
            f"| {r.hosts} | {leads} | {size:.0f} | {len(every)} | {us3(every)} "
            f"| {len(quiet)}; {us3(quiet)} | {len(once)}; {us3(once)} | {r.other_pct:.0f} |"
        )
    return "\n".join(lines)


def table_b(results: list[LoneResult]) -> str:
    lines = [
        "| lone agent | CPU % of a core | CPU µs / s | wake-ups / s | CPU µs / wake-up "
        "| datagrams sent / s | netlink refreshes / s | threads | other CPU % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    per_s: dict[bool, float] = {}
    rates: dict[bool, tuple[float, float]] = {}
    for r in results:
        us_s = r.cpu_ns / 1000 / r.seconds
        wake = r.wakeups / r.seconds
        per_s[r.held] = us_s
        rates[r.held] = (r.datagrams / r.seconds, r.refreshes / r.seconds)
        name = "holding 198.51.100.1" if r.held else "holding nothing (no preferred)"
        lines.append(
            f"| {name} | {us_s / 1e4:.3f} | {us_s:.0f} | {wake:.1f} "
            f"| {us_s / wake if wake else 0:.0f} | {rates[r.held][0]:.2f} "
            f"| {rates[r.held][1]:.2f} | {r.threads} | {r.other_pct:.0f} |"
        )
    out = "\n".join(lines) + "\n"
    if False in per_s and rates[False][0]:
        out += (
            f"\nPer sent heartbeat (the agent holding nothing: all its CPU / its datagrams): "
            f"**{per_s[False] / rates[False][0]:.0f} µs**."
        )
    if True in per_s and False in per_s:
        extra = per_s[True] - per_s[False]
        refreshes = rates[True][1]
        each = f", {extra / refreshes:.0f} µs per refresh" if refreshes else ""
        out += (
            f" Holding one address (refreshes and all) costs **{extra:.0f} µs per second "
            f"of holding** ({refreshes:.2f} refreshes / s{each}).\n"
        )
    return out


METHOD = """\
`bench/cpu_events.py`: parts A and B of issue 14 goal 1.

* **A, per received info.** `rais agent` in h1 (preferred 198.51.100.1/24,
  multicast 239.192.0.1:7401, heartbeat 100 ms) and N-1 *synthetic peers*
  h2..hN: each is rais's own sans-I/O core (`rais.core.core.Core`, its
  `CoreConfig` built from a config file like the agent's, as
  `rais.runtime.group` builds it; same src tree), driven by the script on
  sockets in the peer's namespace (a receive socket joined to the group and a
  send socket bound to the peer's control address, as the transport makes
  them). The peers hear the agent and each other; every `Acquire`/`Release`
  they emit succeeds at once. Once the agent holds its address, reports N live
  hosts and leads, plus 2 s, one *sample* is: read the agent's schedstat
  (summed over threads), send one peer datagram, sleep 3 ms (`--gap-ms`), read
  it again; the difference is the agent's CPU for that datagram, from the
  socket to drained effects, wake-up included. Peers take turns, and a peer
  with nothing queued gets a timer pass first (its core's heartbeat is set to
  1 ms so that each pass is one new info), so each peer beats every N-1
  samples (about every 7 ms at 3 hosts, 55 ms at 16), faster than its 100 ms.
  "No agent send" leaves out the samples in whose window the agent itself sent
  (heard on the peers' sockets: its heartbeat timer fired); "scheduled in
  once" also leaves out those in which the agent was scheduled in more than
  once (schedstat's third field: another wake-up, e.g. its 250 ms address
  refresh, or a preemption). The agent is the group's leader (lowest id), as
  h1 of bench/failover.py is.
* **B, per sent heartbeat and per refresh.** Two lone agents at once, each
  alone in a group of its own (239.192.0.1:7401 and 239.192.0.2:7402),
  heartbeat 100 ms: h1 with no preferred address (it holds nothing), h2
  preferring 198.51.100.1/24 (it holds it once settled); h3 only listens. 3 s
  after both are up and h2 holds, over 20 s (`--seconds`), for each: CPU
  (schedstat), wake-ups (context switches), datagrams it sent (counted on
  h3's sockets) and netlink refreshes (`ip -o monitor address` lines in its
  namespace: one per lifetime refresh). Run at the same time, the two see the
  same machine.
  Per heartbeat = the no-address agent's CPU / s over its datagrams / s (timers
  and everything else included); refresh = the difference between the two
  agents' CPU / s."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--src", type=Path, default=SRC, help="src tree to run (default: ours)")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the agents")
    parser.add_argument("--samples", type=int, default=10000, help="part A samples per size")
    parser.add_argument("--hosts", default="3,16", help="part A group sizes (default 3,16)")
    parser.add_argument("--gap-ms", type=float, default=3.0, help="part A window (default 3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="part B window (default 20)")
    add_quiet(parser)
    parser.add_argument("--parts", default="A,B", help="parts to run (default A,B)")
    parser.add_argument("--readme", type=Path, default=Path(__file__).parent / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only print the tables")
    args = parser.parse_args()
    args.src = args.src.resolve()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    parts = {p.strip().upper() for p in args.parts.split(",")}
    SCRATCH.mkdir(exist_ok=True)
    results_a: list[EventsResult] = []
    results_b: list[LoneResult] = []
    with tempfile.TemporaryDirectory(prefix="events-", dir=SCRATCH) as tmp_root:
        for n in [int(x) for x in args.hosts.split(",")] if "A" in parts else []:
            tmp = Path(tmp_root) / f"a{n}"
            tmp.mkdir()
            results_a.append(part_a(args, n, tmp))
            print(table_a(results_a[-1:]), file=sys.stderr, flush=True)
        if "B" in parts:
            tmp = Path(tmp_root) / "b"
            tmp.mkdir()
            results_b = part_b(args, tmp)
    command = f"bench/cpu_events.py --parts {args.parts}"
    if results_a:
        command += f" --samples {args.samples} --hosts {args.hosts} --gap-ms {args.gap_ms:g}"
    if results_b:
        command += f" --seconds {args.seconds:g}"
    section = heading(command, args.src)
    if results_a:
        section += "Part A, CPU per received info (µs of the agent's CPU per datagram):\n\n"
        section += table_a(results_a) + "\n\n"
    if results_b:
        section += "Part B, two lone agents at once, heartbeat 100 ms:\n\n" + table_b(results_b)
    print(section)
    if not args.no_readme:
        append_readme(args.readme, "### Per event: `bench/cpu_events.py`", METHOD, section)
        print(f"appended to {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    with interruptible():
        sys.exit(main())
