"""The guard on real hosts (issue 13, part 4 "End to end"): five ``rais agent``
processes in the lab of tests/guardlab.py (service network eth0, control
network eth1 that the tests split, etcd on its own network eth2), every
host's eth0 watched with ``ip monitor address`` from the lab's start.

Every scenario asserts zero overlap (no instant at which two hosts on the
service network hold one address, from every kernel's own notifications, not
samples) and a bounded outage per address, and prints its figures (run with
``-s``). One lab serves the whole module; each scenario starts its own agents
and removes what they left.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from guardlab import HOSTS, SERVICE, SPARE, Agents, Figures, GuardLab, guard_lab
from netlab import require_root

pytestmark = pytest.mark.e2e

HEARTBEAT, TIMEOUT = 0.1, 0.3
MARGIN = 0.2
"""Beyond the protocol's bounds: netlink, ``ip monitor``'s stamps, five
agents and their watchers scheduled on two cores."""
SETTLE = 15.0


@pytest.fixture(scope="module")
def net() -> Iterator[GuardLab]:
    require_root()
    with guard_lab() as lab:
        yield lab


async def until(check: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


def preferred(net: GuardLab) -> bool:
    """Every service address on its preferred host, and only there."""
    return net.placement() == {a: [h] for h, a in SERVICE.items()}


async def settle(net: GuardLab, agents: Agents) -> float:
    """Wait until every address is on its preferred host; returns that time."""
    ok = await until(lambda: preferred(net), SETTLE)
    assert ok, f"not settled: {net.placement()}\n{agents.logs()}"
    return time.time()


def report(net: GuardLab, title: str, since: float, until: float | None = None) -> list[Figures]:
    """Figures of every service address over [since, until], printed."""
    figs = [net.watch.figures(a, since, until) for a in SERVICE.values()]
    print(f"\n{title}")
    for f in figs:
        print(f"  {f.address}: overlap {1000 * f.overlap:.0f} ms, outage {1000 * f.outage:.0f} ms")
        print(f"    {f.story()}")
    return figs


def no_overlap(figs: list[Figures], net: GuardLab, since: float) -> None:
    bad = [f for f in figs if f.overlaps]
    assert not bad, "\n".join(f.story() for f in bad) + "\n" + net.watch.dump(since)


def first_added(net: GuardLab, address: str, since: float, hosts: tuple[str, ...]) -> float | None:
    return next(
        (x.at for x in net.watch.changes(address, since) if not x.deleted and x.host in hosts),
        None,
    )


# -- (e) guard "none": behaviour and failover speed as before -----------------------


async def test_none_crash_fails_over_as_before_and_a_split_gives_two_holders(
    net: GuardLab, tmp_path: Path
) -> None:
    """Without a guard: a crashed holder (agent SIGKILLed, the host's service
    port down) is replaced within timeout + heartbeat, its return fails back,
    never two holders. Then the control network is split 2|3: both sides hold
    every address (the split brain the guard exists for). That the watch sees
    it is this lab's proof that it would see an overlap."""
    agents = Agents(net, tmp_path)
    vip = SERVICE["h2"]
    try:
        agents.start()
        start = await settle(net, agents)
        await asyncio.sleep(0.5)
        killed = agents.signal("h2", signal.SIGKILL)
        net.unplug("h2")
        others = tuple(h for h in HOSTS if h != "h2")
        moved = await until(lambda: net.holders(vip) == [SPARE], 3.0, interval=0.005)
        assert moved, f"{net.placement()}\n{agents.logs()}"
        taken = first_added(net, vip, killed, others)
        assert taken is not None
        failover = taken - killed
        print(f"\nguard none: crashed holder's {vip} on {SPARE} after {1000 * failover:.0f} ms")
        assert failover <= TIMEOUT + HEARTBEAT + MARGIN, failover
        agents.wait("h2")
        # its kernel lifetime (about the timeout, whole seconds) removes the leftover
        gone = await until(lambda: vip not in net.service_addresses("h2"), 3.0)
        assert gone, net.service_addresses("h2")
        net.plug("h2")
        agents.start("h2")
        back = await until(lambda: preferred(net), SETTLE)
        assert back, f"{net.placement()}\n{agents.log('h2')}"
        await asyncio.sleep(0.5)
        figs = report(net, "guard none, crash of h2 and its return", start)
        no_overlap(figs, net, start)
        (f2,) = [f for f in figs if f.address == vip]
        assert f2.outage <= TIMEOUT + HEARTBEAT + MARGIN, f2.story()
        assert all(f.outage == 0 for f in figs if f.address != vip), [f.story() for f in figs]

        cut = net.split(("h1", "h2"))
        both = await until(
            lambda: all(len(hs) == 2 for hs in net.placement().values()), 3.0, interval=0.01
        )
        net.heal()
        assert both, net.placement()
        figs = report(net, "guard none, control split 2|3 (two holders expected)", cut)
        assert all(f.overlaps for f in figs), [f.story() for f in figs]
        healed = await until(lambda: preferred(net), SETTLE)
        assert healed, net.placement()
    finally:
        net.restore()
        agents.stop_all()
