"""The arbiter loop of guard "etcd" (src/rais/runtime/arbiter.py) against the
in-memory etcd (src/rais/drivers/fake_etcd.py), on a clock the test moves: no
real waiting. Campaign won and lost, the key lost under a keepalive, etcd
unreachable and back (before and after the lease ran out), refused, and the
resignation when the core no longer wants the key or the loop is stopped."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from rais.drivers.base import Holder, Leadership
from rais.drivers.fake_etcd import FakeEtcd, FakeEtcdClient
from rais.runtime.arbiter import REFUSED_RETRY, RETRY_MAX, RETRY_MIN, Campaigner

KEY = "/rais/www"
ME = b"192.0.2.1"
TTL = 3.0


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


class Clock:
    """A clock and a ``sleep`` on it: sleepers wake when ``advance`` passes their time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._order), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        end = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            when, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            self.now = max(self.now, when)
            fut.set_result(None)
            await settle()
        self.now = end
        await settle()


@dataclass
class Told:
    at: float
    reachable: bool
    held: bool
    token: int
    until: float
    key_there: bool
    """Whether the key was in etcd when this was reported."""


class Harness:
    def __init__(self, clock: Clock, arbiter: Any = None) -> None:
        self.clock = clock
        self.etcd = FakeEtcd(clock=clock)
        self.client = self.etcd.client()
        self.told: list[Told] = []
        self.loop = Campaigner(
            arbiter or self.client,
            key=KEY,
            value=ME,
            ttl=TTL,
            report=self.report,
            clock=clock,
            sleep=clock.sleep,
            name="www",
        )
        self.task: asyncio.Task[None] | None = None

    def report(self, *, reachable: bool, held: bool, token: int = 0, until: float = 0.0) -> None:
        there = KEY in self.etcd.keys
        self.told.append(Told(self.clock.now, reachable, held, token, until, there))

    @property
    def last(self) -> Told:
        return self.told[-1]

    def holder(self) -> bytes | None:
        kv = self.etcd.keys.get(KEY)
        return None if kv is None else kv.value


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness(Clock())
    harness.task = asyncio.create_task(harness.loop.run())
    await settle()
    yield harness
    harness.task.cancel()
    await asyncio.gather(harness.task, return_exceptions=True)


async def test_nothing_happens_until_the_core_wants_the_key(h: Harness) -> None:
    await h.clock.advance(10)
    assert h.told == [] and h.holder() is None and h.loop.counters == {}


async def test_won_renewed_every_third_of_the_ttl(h: Harness) -> None:
    h.loop.want(True)
    await settle()
    assert h.holder() == ME
    token = h.etcd.keys[KEY].create_revision
    assert h.last == Told(1000.0, True, True, token, 1000.0 + TTL, True)
    await h.clock.advance(TTL / 3)
    assert h.last == Told(1001.0, True, True, token, 1001.0 + TTL, True)
    await h.clock.advance(10 * TTL)
    assert h.loop.counters == {"campaigns": 1, "won": 1, "renewals": 31}
    assert all(t.held and t.token == token for t in h.told)
    assert h.last.until == pytest.approx(h.clock.now + TTL)


async def test_lost_to_another_holder_then_won_once_it_resigns(h: Harness) -> None:
    other = h.etcd.client()
    theirs = await other.campaign(KEY, b"192.0.2.2", TTL)
    assert isinstance(theirs, Leadership)
    h.loop.want(True)
    await settle()
    assert h.last == Told(1000.0, True, False, 0, 0.0, True)
    await h.clock.advance(TTL / 3 - 0.01)
    assert h.loop.counters["campaigns"] == 1  # not before about ttl / 3
    await h.clock.advance(0.02)
    assert h.loop.counters["campaigns"] == 2 and not h.last.held
    await other.resign(theirs)
    await h.clock.advance(TTL / 3)
    assert h.holder() == ME and h.last.held and h.last.token > theirs.revision


async def test_the_key_lost_under_the_keepalive(h: Harness) -> None:
    h.loop.want(True)
    await settle()
    first = h.last.token
    lease = h.etcd.keys[KEY].lease
    h.etcd.revoke(lease)  # e.g. an operator deleted it
    await h.clock.advance(TTL / 3)
    assert h.last.reachable and not h.last.held
    assert h.loop.counters["keys_lost"] == 1
    await h.clock.advance(TTL / 3)
    assert h.last.held and h.last.token > first and h.holder() == ME


async def test_unreachable_then_back_before_the_lease_ran_out(h: Harness) -> None:
    h.loop.want(True)
    await settle()
    token, until = h.last.token, h.last.until
    h.etcd.down = True
    await h.clock.advance(TTL / 3)
    assert h.last == Told(1001.0, False, True, token, until, True)
    # retried quickly, with a bounded backoff, still "held" until the lease ends
    await h.clock.advance(1.0)
    tries = [t.at for t in h.told if not t.reachable]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps and all(RETRY_MIN - 1e-9 <= g <= RETRY_MAX + 1e-9 for g in gaps), gaps
    assert gaps[0] == pytest.approx(RETRY_MIN)
    assert all(t.held and t.until == until for t in h.told if not t.reachable)
    h.etcd.down = False
    await h.clock.advance(RETRY_MAX)
    assert h.last.reachable and h.last.held and h.last.token == token  # kept, not re-won
    assert h.last.until > until
    assert h.loop.counters["campaigns"] == 1


async def test_unreachable_past_the_lease_then_won_again(h: Harness) -> None:
    h.loop.want(True)
    await settle()
    token, until = h.last.token, h.last.until
    h.etcd.down = True
    await h.clock.advance(TTL + 0.3)
    held = [t for t in h.told if not t.reachable and t.held]
    assert held and max(t.at for t in held) < until
    dropped = [t for t in h.told if not t.reachable and not t.held]
    assert dropped and dropped[0].at == pytest.approx(until)  # told when it ran out
    assert all(t.at <= until + RETRY_MAX for t in dropped[:1])
    h.etcd.down = False  # the lease lapsed in etcd meanwhile
    await h.clock.advance(RETRY_MAX)
    assert h.last.reachable and h.last.held and h.last.token > token
    assert h.loop.counters["campaigns"] == 2


async def test_a_lease_etcd_kept_is_held_again_with_its_token(h: Harness) -> None:
    """etcd restarted: the lease this host saw lapse is alive again (etcd gives
    restored leases a fresh TTL), so is the key: the loop renews it and holds
    the key again with the same token, never telling the core "not held" while
    etcd answers."""
    h.loop.want(True)
    await settle()
    token = h.last.token
    lease = next(iter(h.etcd.leases))
    h.etcd.down = True
    await h.clock.advance(TTL + 0.3)
    assert not h.last.held
    h.etcd.leases[lease] = h.clock() + TTL  # restored by the restart
    h.etcd.down = False
    seen = len(h.told)
    await h.clock.advance(RETRY_MAX)
    after = h.told[seen:]
    assert after and all(t.reachable and t.held and t.token == token for t in after), after
    assert h.loop.counters["campaigns"] == 2


async def test_unreachable_from_the_start(h: Harness) -> None:
    h.client.reachable = False
    h.loop.want(True)
    await h.clock.advance(2.0)
    assert h.told and all(not t.reachable and not t.held for t in h.told)
    assert 4 <= len(h.told) <= 2.0 / RETRY_MIN + 1
    h.client.reachable = True
    await h.clock.advance(RETRY_MAX)
    assert h.last.reachable and h.last.held


async def test_refused_is_retried_slowly(h: Harness) -> None:
    h.etcd.refuse = True
    h.loop.want(True)
    await settle()
    assert h.last == Told(1000.0, False, False, 0, 0.0, False)
    assert "refuses" in h.loop.last_error
    await h.clock.advance(REFUSED_RETRY - 0.1)
    assert h.loop.counters["refused"] == 1
    h.etcd.refuse = False
    await h.clock.advance(0.2)
    assert h.last.held and h.loop.last_error == ""


async def test_resigns_when_the_core_no_longer_wants_it(h: Harness) -> None:
    h.loop.want(True)
    await settle()
    assert h.holder() == ME
    h.loop.want(False)
    await settle()
    assert h.holder() is None
    assert not h.last.held and h.last.key_there  # told before the key went
    assert h.loop.counters["resigned"] == 1
    n = len(h.told)
    await h.clock.advance(10)
    assert len(h.told) == n  # quiet until wanted again
    h.loop.want(True)
    await settle()
    assert h.last.held and h.holder() == ME


async def test_stopping_the_loop_resigns(h: Harness) -> None:
    h.loop.want(True)
    await settle()
    assert h.task is not None
    h.task.cancel()
    await asyncio.gather(h.task, return_exceptions=True)
    assert h.holder() is None and not h.last.held and h.last.key_there


class Gated:
    """An arbiter whose campaign waits for ``go``."""

    def __init__(self, inner: FakeEtcdClient) -> None:
        self.inner = inner
        self.go = asyncio.Event()

    async def campaign(self, key: str, value: bytes, ttl: float) -> Leadership | Holder:
        await self.go.wait()
        return await self.inner.campaign(key, value, ttl)

    async def keepalive(self, leadership: Leadership) -> bool:
        return await self.inner.keepalive(leadership)

    async def resign(self, leadership: Leadership) -> None:
        await self.inner.resign(leadership)

    async def holder(self, key: str) -> Holder | None:
        return await self.inner.holder(key)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_campaign_won_after_the_wish_changed_is_resigned() -> None:
    clock = Clock()
    etcd = FakeEtcd(clock=clock)
    gated = Gated(etcd.client())
    h = Harness(clock, gated)
    h.etcd = etcd
    task = asyncio.create_task(h.loop.run())
    try:
        h.loop.want(True)
        await settle()
        h.loop.want(False)  # while the campaign is in flight
        gated.go.set()
        await settle()
        assert KEY not in etcd.keys
        assert h.loop.counters["won"] == 1 and h.loop.counters["resigned"] == 1
        assert all(not t.held for t in h.told)  # the core never heard it held
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("ticks", range(6))
async def test_stopped_while_a_resignation_fails_the_loop_ends(ticks: int) -> None:
    """A cancellation that meets a resignation finishing in the same loop
    iteration ends the loop (asyncio.wait_for on 3.11 would swallow it)."""
    h = Harness(Clock())
    task = asyncio.create_task(h.loop.run())
    h.loop.want(True)
    await settle()
    assert h.holder() == ME
    h.etcd.down = True
    h.loop.want(False)
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()
    await settle()
    assert task.done()
    assert not h.last.held and h.loop.counters["resigned"] == 1
