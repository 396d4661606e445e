"""Steady-state CPU of rais agents (issue 14, goal 2), in a netns lab.

Needs root and iproute2. Run::

    flock /tmp/bench.lock .venv/bin/python bench/cpu_steady.py [--src DIR]
        [--layouts 3,3dns,16x4] [--seconds 20] [--no-readme]

Layouts (heartbeat 100 ms, timeout 300 ms, multicast on eth0):

* ``3``: bench/failover.py's lab: h1 prefers 198.51.100.1/24, h2
  198.51.100.2/24, h3 is the hot spare;
* ``3dns``: the same with DNS: ``[dns] listen = ["127.0.0.1:5353"]`` and a
  ``[group.dns]`` name (www.example.test) in every agent;
* ``16x4``: 16 hosts, every agent in 4 groups (239.192.0.1-4, ports
  7401-7404); host i prefers 198.51.100.i/24 in group (i - 1) mod 4 + 1, so
  every group has 4 preferred addresses and 12 spares.

Once settled (every agent's /v1/status shows every host of each of its groups
live, every preferred address is on its host alone, with DNS every name
answers with the held addresses) plus 3 s: each agent's CPU over ``--seconds``
(schedstat, all threads) and wake-ups (context switches).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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
    heading,
    schedstat,
    switches,
    wait_quiet,
)
from failover import Procs, wait_until  # type: ignore[import-not-found, unused-ignore]
from netlab import Lab, lab  # type: ignore[import-not-found, unused-ignore]

HB_MS = 100


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    hosts: int
    groups: Callable[[int], list[Group]]
    """The groups of host i (1-based)."""
    dns: bool = False
    what: str = ""


def three(i: int) -> list[Group]:
    return [Group("www", "239.192.0.1", 7401, f"198.51.100.{i}/24" if i <= 2 else None)]


def sixteen(i: int) -> list[Group]:
    mine = (i - 1) % 4 + 1
    return [
        Group(f"g{k}", f"239.192.0.{k}", 7400 + k, f"198.51.100.{i}/24" if k == mine else None)
        for k in range(1, 5)
    ]


LAYOUTS = {
    "3": Layout("3", 3, three, what="3 hosts, 1 group, h1 and h2 hold one address each"),
    "3dns": Layout("3dns", 3, three, dns=True, what="the same with DNS (embedded server)"),
    "16x4": Layout("16x4", 16, sixteen, what="16 hosts x 4 groups, one address per host"),
}


@dataclasses.dataclass
class Steady:
    layout: Layout
    settle_s: float
    seconds: float
    cpu_pct: dict[str, float]
    wakeups: dict[str, float]
    other_pct: float


def settled(net: Lab, agents: Agents, layout: Layout) -> bool:
    """Every agent sees every host of its groups live, every preferred address
    is on its host alone, and (DNS) every agent's name gives the held ones."""
    agents.check()
    wanted: dict[str, set[str]] = {h: set() for h in net.hosts}
    for n, host in enumerate(net.hosts, start=1):
        for g in layout.groups(n):
            if g.preferred is not None:
                wanted[host].add(g.preferred.split("/")[0])
    for host in net.hosts:
        have = {str(a) for a in net.addresses(host)}
        others = set().union(*(w for h, w in wanted.items() if h != host))
        if not wanted[host] <= have or have & others:
            return False
    for n, host in enumerate(net.hosts, start=1):
        status = api_status(net, host)
        if status is None:
            return False
        groups = {g.get("name"): g for g in status.get("groups", [])}
        for g in layout.groups(n):
            got = groups.get(g.name)
            if got is None:
                return False
            if sum(1 for h in got.get("hosts", []) if h.get("live")) != layout.hosts:
                return False
            if layout.dns and not dns_ok(got, layout, wanted):
                return False
    return True


def dns_ok(group: dict[str, object], layout: Layout, wanted: dict[str, set[str]]) -> bool:
    dns = group.get("dns")
    if not isinstance(dns, dict):
        return False
    shown = {str(ipaddress.ip_interface(a).ip) for a in dns.get("addresses", [])}
    return shown == set().union(*wanted.values())


def run_layout(args: argparse.Namespace, layout: Layout, tmp: Path) -> Steady:
    procs = Procs()
    with lab(layout.hosts, PREFIX) as net, contextlib.ExitStack() as stack:
        stack.callback(procs.kill_all)
        agents = Agents(procs, net, tmp, args.src, args.python)
        start = time.monotonic()
        for n, host in enumerate(net.hosts, start=1):
            agents.start(host, layout.groups(n), HB_MS, dns=layout.dns)
        wait_until(lambda: settled(net, agents, layout), args.settle_timeout, layout.what)
        settle_s = time.monotonic() - start
        time.sleep(3.0)
        pids = agents.pids
        wait_quiet(list(pids.values()), args.quiet_pct, args.quiet_wait)
        others = Others(list(pids.values()))
        t0 = time.monotonic()
        cpu0 = {h: schedstat(p)[0] for h, p in pids.items()}
        w0 = {h: switches(p) for h, p in pids.items()}
        time.sleep(args.seconds)
        cpu1 = {h: schedstat(p)[0] for h, p in pids.items()}
        w1 = {h: switches(p) for h, p in pids.items()}
        t1 = time.monotonic()
        other = others.percent()
        if not settled(net, agents, layout):
            raise RuntimeError(f"{layout.what}: no longer settled after the measurement")
        dt = t1 - t0
        return Steady(
            layout,
            settle_s,
            dt,
            {h: 100.0 * (cpu1[h] - cpu0[h]) / 1e9 / dt for h in pids},
            {h: (w1[h] - w0[h]) / dt for h in pids},
            other,
        )


def table(results: list[Steady]) -> str:
    lines = [
        "| layout | agents | settled after s | CPU % of a core per agent: mean / median / max "
        "| each agent | wake-ups / s per agent: mean / max | CPU µs per wake-up (mean) "
        "| other CPU % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cpu = list(r.cpu_pct.values())
        wake = list(r.wakeups.values())
        each = " / ".join(f"{v:.2f}" for v in cpu) if len(cpu) <= 4 else "-"
        per_wake = statistics.fmean(c * 1e4 / w for c, w in zip(cpu, wake, strict=True) if w)
        lines.append(
            f"| {r.layout.what} | {len(cpu)} | {r.settle_s:.0f} "
            f"| {statistics.fmean(cpu):.2f} / {statistics.median(cpu):.2f} / {max(cpu):.2f} "
            f"| {each} | {statistics.fmean(wake):.1f} / {max(wake):.1f} | {per_wake:.0f} "
            f"| {r.other_pct:.0f} |"
        )
    out = "\n".join(lines) + "\n"
    for r in results:
        if len(r.cpu_pct) > 4:
            shown = ", ".join(f"{h} {v:.2f}" for h, v in r.cpu_pct.items())
            out += f"\n{r.layout.what}, CPU % per agent: {shown}.\n"
    return out


METHOD = """\
`bench/cpu_steady.py`: issue 14 goal 2. Every host runs `rais agent`
(heartbeat 100 ms, timeout 300 ms, multicast on eth0, orphan_timeout 60 s).
Layouts: **3**, bench/failover.py's lab (h1 prefers 198.51.100.1/24, h2
198.51.100.2/24, h3 the spare); **3 + DNS**, the same with `[dns] listen =
["127.0.0.1:5353"]` and `[group.dns] name = "www.example.test"` in every
agent; **16 x 4**, 16 hosts on one bridge, every agent in 4 groups
(239.192.0.1-4:7401-7404), host i preferring 198.51.100.i/24 in group
(i - 1) mod 4 + 1 (4 preferred addresses and 12 spares per group). Settled:
every agent's `/v1/status` shows all hosts of each of its groups live, every
preferred address is on its host alone (and, with DNS, every agent's DNS
status lists the held addresses); then 3 s more, then each agent's CPU %
(schedstat, all threads) and wake-ups / s (context switches) over 20 s
(`--seconds`). The status polling stops before the measurement."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--src", type=Path, default=SRC, help="src tree to run (default: ours)")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the agents")
    parser.add_argument("--layouts", default="3,3dns,16x4", help="of " + ", ".join(LAYOUTS))
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    add_quiet(parser)
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    parser.add_argument("--readme", type=Path, default=Path(__file__).parent / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only print the table")
    args = parser.parse_args()
    args.src = args.src.resolve()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    layouts = [LAYOUTS[name.strip()] for name in args.layouts.split(",")]
    SCRATCH.mkdir(exist_ok=True)
    results: list[Steady] = []
    with tempfile.TemporaryDirectory(prefix="steady-", dir=SCRATCH) as tmp_root:
        for layout in layouts:
            tmp = Path(tmp_root) / layout.name
            tmp.mkdir()
            results.append(run_layout(args, layout, tmp))
            print(table(results[-1:]), file=sys.stderr, flush=True)
    command = f"bench/cpu_steady.py --layouts {args.layouts} --seconds {args.seconds:g}"
    section = heading(command, args.src) + table(results)
    print(section)
    if not args.no_readme:
        append_readme(args.readme, "### Steady state: `bench/cpu_steady.py`", METHOD, section)
        print(f"appended to {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    with interruptible():
        sys.exit(main())
