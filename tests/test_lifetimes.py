"""Kernel lifetimes of held addresses under a guard (rais.runtime.actions,
rais.runtime.refresh) on a group runner with the fake address driver: the
whole seconds of the lease left at the moment of the add, nothing refreshed
with under ``MIN_KERNEL`` left, an acquire that comes too late fails; and
without a guard the lifetime stays the timeout's, as before."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from typing import Any

import pytest

from rais.config import GroupConfig
from rais.core.config import MIN_KERNEL
from rais.core.effects import Acquire
from rais.core.messages import AddrState
from rais.drivers.fake_addresses import FakeAddresses, FakeAnnouncer
from rais.drivers.fake_transport import FakeNetwork
from rais.drivers.scripts import ScriptRunner
from rais.runtime.actions import guarded_lifetime, to_addr
from rais.runtime.group import Drivers, GroupRunner
from rais.runtime.state import HeldFile

ME = ipaddress.ip_address("192.0.2.1")
ADDR = ipaddress.ip_address("198.51.100.1")
EXTRA = ipaddress.ip_address("198.51.100.9")


class Runner(GroupRunner):
    """A group runner that records what it tells its core of each action."""

    done: list[tuple[bytes, bool, str]]

    def _done(self, address: bytes, ok: bool, reason: str) -> None:
        self.done.append((address, ok, reason))
        super()._done(address, ok, reason)


def runner(**group: Any) -> tuple[Runner, FakeAddresses]:
    config = GroupConfig(
        name="www",
        address=ipaddress.ip_address("239.192.0.1"),
        port=7401,
        interface="eth0",
        preferred=ipaddress.ip_interface(f"{ADDR}/24"),
        timeout=0.3,
        heartbeat=0.1,
        **group,
    )
    addresses = FakeAddresses()
    drivers = Drivers(
        transport=FakeNetwork().transport(ME),
        addresses=addresses,
        announcer=FakeAnnouncer(),
        scripts=ScriptRunner(1.0),
    )
    r = Runner(
        config,
        control=(ME,),
        keys=(b"k" * 32,),
        epoch=1,
        drivers=drivers,
        held=HeldFile(None),
        on_event=lambda _: None,
        rng=random.Random(1),
    )
    r.done = []
    return r, addresses


def guarded() -> tuple[Runner, FakeAddresses]:
    return runner(guard="majority", voters=(ME,), lease=4.0)


def lease(r: Runner, seconds: float) -> None:
    """The core's lease on ADDR ends ``seconds`` from now."""
    r.core.guard.leased(to_addr(ADDR), r.loop.time() + seconds)


@pytest.mark.parametrize(
    ("left", "lifetime"), [(0.0, None), (0.99, None), (1.0, 1), (1.99, 1), (2.0, 2), (3.7, 3)]
)
def test_the_lifetime_is_the_whole_seconds_of_the_lease_left(
    left: float, lifetime: int | None
) -> None:
    assert guarded_lifetime(left) == lifetime
    assert MIN_KERNEL == 1.0


async def test_without_a_guard_the_lifetime_is_the_timeouts() -> None:
    r, addresses = runner()
    assert r.core.lease_left(to_addr(ADDR), r.loop.time()) is None
    await r._acquire(Acquire(to_addr(ADDR), 24))
    assert addresses.lifetimes[("eth0", ADDR)] == 1 == r.lifetime
    assert r.done == [(to_addr(ADDR), True, "")]


async def test_an_acquire_sets_what_the_lease_has_left() -> None:
    r, addresses = guarded()
    lease(r, 3.5)
    await r._acquire(Acquire(to_addr(ADDR), 24, ((to_addr(EXTRA), 24),)))
    assert addresses.lifetimes[("eth0", ADDR)] == 3
    assert addresses.lifetimes[("eth0", EXTRA)] == 3
    assert r.done == [(to_addr(ADDR), True, "")]


async def test_an_acquire_with_under_a_second_of_lease_left_fails() -> None:
    r, addresses = guarded()
    lease(r, 0.6)  # e.g. it waited in the address's queue behind a long script
    await r._acquire(Acquire(to_addr(ADDR), 24, ((to_addr(EXTRA), 24),)))
    ((address, ok, reason),) = r.done
    assert (address, ok) == (to_addr(ADDR), False)
    assert reason.startswith("lease: 0.") and "under 1s" in reason
    assert addresses.snapshot("eth0") == set() and not r.held.current()
    assert not any(c.op == "add" for c in addresses.calls)
    assert r.counters["acquire_failed"] == 1


async def held(r: Runner) -> None:
    """ADDR configured and held ONLINE by the core (as after a takeover)."""
    lease(r, 3.5)
    await r._acquire(Acquire(to_addr(ADDR), 24))
    r.core.resume(r.loop.time(), [(to_addr(ADDR), 24)])
    r.core.effects()
    assert r.core.holding(to_addr(ADDR)) == AddrState.ONLINE


async def test_refreshes_follow_the_lease_and_stop_under_a_second() -> None:
    r, addresses = guarded()
    await held(r)
    lease(r, 2.4)
    await r._refresh(ADDR, 24)
    assert addresses.lifetimes[("eth0", ADDR)] == 2 and r.counters["refreshes"] == 1
    lease(r, 1.2)
    await r._refresh(ADDR, 24)
    assert addresses.lifetimes[("eth0", ADDR)] == 1 and r.counters["refreshes"] == 2
    adds = sum(1 for c in addresses.calls if c.op == "add")
    lease(r, 0.8)
    await r._refresh(ADDR, 24)
    assert sum(1 for c in addresses.calls if c.op == "add") == adds  # not refreshed
    assert r.counters["refreshes_skipped"] == 1


async def test_the_refresher_does_not_fail_for_a_lease_running_out() -> None:
    """With under a second of lease left nothing is refreshed, and that is no
    ``RefreshFailed``, however long it lasts (the core releases at the lease's
    end); the refresher keeps going."""
    r, addresses = guarded()
    await held(r)
    r.refresh_every = 0.01
    lease(r, 0.5)
    r._fresh[ADDR] = r.loop.time() - 100.0  # as if not refreshed for long
    task = asyncio.create_task(r.refresh_forever())
    try:
        await asyncio.sleep(0.1)
        assert not task.done()
        assert not any(c.op == "add" and c.address == ADDR for c in addresses.calls[1:])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
