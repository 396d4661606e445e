"""Failover of a crashed holder with each guard (issue 13): none, majority, etcd.

Needs root, iproute2 and (for the etcd guard) Debian's ``etcd-server``. Run::

    .venv/bin/python bench/guard_failover.py [--runs 5] [--guards none,majority,etcd] [--no-readme]

The lab is tests/guardlab.py: five hosts (h1..h4 prefer 198.51.100.1..4, h5 is
the spare), control traffic on eth1 only, the service network on eth0, etcd
(one member) on the arbiter network; heartbeat 100 ms, timeout 300 ms, lease
2 s, etcd ttl 2 s. For each guard a fresh lab, and for each run fresh agents:
once every address is on its preferred host (and 1 s more), a UDP echo server
runs in every host and a client (c, on the service network) sends a numbered
datagram to 198.51.100.2 every 5 ms; after 1 s and a random 0-100 ms the
holder h2 dies: SIGKILL of its agent, then its switch-side service port goes
down (the host is gone from the network; its kernel keeps the address until
the lifetime ends, unseen).

* **failover**: from the SIGKILL to the first ``ip monitor`` line of
  198.51.100.2 on another host (``ip -ts`` stamps);
* **client outage**: from h2's last answer to the first answer of another
  host (traffic.py's prober and echo servers).

Everything it makes is removed at the end, also on failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchkit import add_to_readme, interruptible, machine  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from etcdlab import EtcdLab, etcd_cluster  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from guardlab import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    ETCD,
    ETCD_IP,
    HOSTS,
    SERVICE,
    Agents,
    Guard,
    GuardLab,
    guard_lab,
)
from traffic import UdpProbe  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

PREFIX = "rais-gbench"
GUARDS = ("none", "majority", "etcd")
VICTIM = "h2"
VIP = SERVICE[VICTIM]
LEASE = 2.0
HEADING = "## Failover of a crashed holder with each guard (issue 13)"


@dataclass
class Run:
    guard: str
    index: int
    failover_ms: float
    outage_ms: float
    taker: str
    answered_by: str


def preferred(net: GuardLab) -> bool:
    return bool(net.placement() == {a: [h] for h, a in SERVICE.items()})


async def wait(check: object, timeout: float, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s: {what}")
        await asyncio.sleep(0.01)


async def one_run(net: GuardLab, guard: str, index: int, tmp: Path) -> Run:
    agents = Agents(net, tmp / f"{guard}-{index}", Guard(guard, lease=LEASE))
    probe = None
    try:
        agents.start()
        try:
            await wait(lambda: preferred(net), 20.0, "settle")
        except RuntimeError:
            raise RuntimeError(f"not settled: {net.placement()}\n{agents.logs()}") from None
        await asyncio.sleep(1.0)
        probe = UdpProbe(net, list(HOSTS), VIP, agents.tmp)
        await asyncio.sleep(1.0 + random.uniform(0, 0.1))
        killed = agents.signal(VICTIM, signal.SIGKILL)
        net.unplug(VICTIM)
        others = tuple(h for h in HOSTS if h != VICTIM)
        await wait(lambda: any(VIP in net.service_addresses(h) for h in others), 10.0, "failover")
        await asyncio.sleep(0.3)
        answers = probe.stop()
        taken = next(
            (
                (x.at, x.host)
                for x in net.watch.changes(VIP, killed)
                if not x.deleted and x.host in others
            ),
            None,
        )
        assert taken is not None
        gap, by = answers.outage(VICTIM)
        return Run(guard, index, 1000 * (taken[0] - killed), 1000 * gap, taken[1], by or "-")
    finally:
        if probe is not None:
            probe.kill()
        net.restore()
        agents.stop_all()


async def measure(guard: str, runs: int, tmp: Path) -> list[Run]:
    out: list[Run] = []
    with guard_lab(PREFIX) as net:
        etcd: contextlib.AbstractAsyncContextManager[EtcdLab] | None = None
        if guard == "etcd":
            etcd = etcd_cluster(1, netns=net.ns(ETCD), host=ETCD_IP)
        async with etcd if etcd is not None else contextlib.nullcontext():
            for index in range(1, runs + 1):
                run = await one_run(net, guard, index, tmp)
                out.append(run)
                print(
                    f"{guard} run {index}: failover {run.failover_ms:.0f} ms ({run.taker}), "
                    f"client outage {run.outage_ms:.0f} ms ({run.answered_by})",
                    file=sys.stderr,
                    flush=True,
                )
    return out


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} / {max(values):.0f}"


def report(runs: list[Run], args: argparse.Namespace) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### {today}, {machine()}",
        "",
        f"`bench/guard_failover.py --runs {args.runs} --guards {args.guards}`: heartbeat "
        "100 ms, timeout 300 ms, lease 2 s, etcd ttl 2 s; h2 crashes (SIGKILL, port down).",
        "",
        "| guard | runs | failover ms median / max | client outage ms median / max |"
        " every failover ms |",
        "|---|---|---|---|---|",
    ]
    for guard in args.guards.split(","):
        mine = [r for r in runs if r.guard == guard]
        if not mine:
            continue
        every = ", ".join(f"{r.failover_ms:.0f}" for r in mine)
        lines.append(
            f"| {guard} | {len(mine)} | {fmt([r.failover_ms for r in mine])} | "
            f"{fmt([r.outage_ms for r in mine])} | {every} |"
        )
    return "\n".join([*lines, ""])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per guard (default 5)")
    parser.add_argument("--guards", default=",".join(GUARDS), help="comma-separated")
    parser.add_argument("--readme", type=Path, default=ROOT / "bench" / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only print the table")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    runs: list[Run] = []
    with interruptible(), tempfile.TemporaryDirectory(prefix="rais-gbench-") as tmp:
        os.chmod(tmp, 0o755)
        for guard in args.guards.split(","):
            if guard not in GUARDS:
                parser.error(f"unknown guard {guard!r}")
            runs += asyncio.run(measure(guard, args.runs, Path(tmp)))
    section = report(runs, args)
    print(section)
    if not args.no_readme:
        add_to_readme(args.readme, HEADING, __doc__.split("\n\n", 1)[1], section)
        print(f"appended to {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
