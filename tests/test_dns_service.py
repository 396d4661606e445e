"""The DNS thread follows its groups' cores without a wake-up of its own: it
recomputes an answer when a group's hosts changed (told after each input
of the core, in the core's own wake-up), at most every ``TICK``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from rais.config import GroupConfig
from rais.dns.group import GroupDns
from rais.runtime.dns_service import TICK, DnsService
from rais.runtime.group import GroupRunner


class FakeCore:
    def __init__(self) -> None:
        self.key = 0
        self.keys_read = 0

    def hosts_key(self) -> tuple[object, ...]:
        self.keys_read += 1
        return (self.key,)

    def view(self, now: float) -> int:
        return self.key


class FakeRunner:
    def __init__(self) -> None:
        self.core = FakeCore()
        self.on_pumped: Any = None
        self.unsubscribe: Any = None

    def pump(self, key: int | None = None) -> None:
        """One input of the core (changing the hosts to ``key``, if given)."""
        if key is not None:
            self.core.key = key
        if self.on_pumped is not None:
            self.on_pumped()


class Recorder:
    """A group's DNS that records each answer computed from a view."""

    def __init__(self, config: object, **_: object) -> None:
        self.views: list[int] = []
        self.changed = asyncio.Event()

    def refresh(self, cv: int) -> bool:
        self.views.append(cv)
        self.changed.set()
        return True


def service() -> tuple[DnsService, FakeRunner, Recorder]:
    """A DNS service with group "www" followed as the agent follows it
    (``follow``'s unsubscribe kept on the fake runner)."""
    runner = FakeRunner()
    runners = cast(dict[str, GroupRunner], {"www": runner})
    made: list[Recorder] = []

    def make(config: object, **kw: object) -> GroupDns:
        made.append(Recorder(config, **kw))
        return cast(GroupDns, made[-1])

    svc = DnsService(runners, ns=(), emit=lambda *_: None, published=lambda *_: None)
    svc.make_group_dns = make
    group = SimpleNamespace(name="www", dns=object(), load_scale=1.0)
    svc.add(cast(GroupConfig, group))
    runner.unsubscribe = svc.follow("www", cast(GroupRunner, runner))
    return svc, runner, made[0]


async def next_answer(dns: Recorder, limit: float = 2.0) -> list[int]:
    dns.changed.clear()
    await asyncio.wait_for(dns.changed.wait(), limit)
    return dns.views


Running = tuple[DnsService, FakeRunner, Recorder]


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    """A DNS service with one group, its thread running, past its first answer."""
    svc, runner, dns = service()
    task = asyncio.create_task(svc.run())
    try:
        assert await next_answer(dns) == [0]  # the first computation
        yield svc, runner, dns
    finally:
        task.cancel()


async def test_nothing_changes_nothing_runs(running: Running) -> None:
    _, runner, dns = running
    read = runner.core.keys_read
    runner.pump()  # inputs that change nothing: a look at the key, no wake-up
    runner.pump()
    await asyncio.sleep(5 * TICK)
    assert dns.views == [0]
    assert runner.core.keys_read - read <= 2  # no polling of its own


async def test_a_change_is_answered_and_changes_close_together_are_taken_together(
    running: Running,
) -> None:
    _, runner, dns = running
    await asyncio.sleep(1.5 * TICK)  # idle now: past the wait after a computation
    loop = asyncio.get_running_loop()
    start = loop.time()
    runner.pump(1)
    assert await next_answer(dns) == [0, 1]
    assert loop.time() - start < TICK  # idle: at once
    for key in range(2, 12):  # ten changes at once: at most one more answer per TICK
        runner.pump(key)
    assert (await next_answer(dns))[-1] == 11
    assert len(dns.views) == 3


async def test_a_removed_group_is_no_longer_followed(running: Running) -> None:
    svc, runner, dns = running
    svc.remove("www")
    runner.pump(5)  # still hooked: the hook knows the group is gone
    runner.unsubscribe()  # the agent unsubscribes on leave
    assert runner.on_pumped is None
    runner.pump(6)
    await asyncio.sleep(2 * TICK)
    assert dns.views == [0]
