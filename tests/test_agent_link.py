"""Link tracking in the agent (issue 13) with a fake link watcher: a holder
whose service link goes down gives its address up and it moves; it comes back
after the hold-down; ``track_link = false`` changes nothing; the watcher is a
part restarted with backoff, during which the last known state holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_agent import Cluster, Host

from rais.core.effects import EventKind
from rais.drivers.base import Links
from rais.drivers.links import FakeLinks
from rais.runtime.events import AgentEventKind

WWW2 = "198.51.100.2"
HOLD = 0.3


def link(host: Host) -> dict[str, Any]:
    assert host.agent is not None
    out: dict[str, Any] = host.agent.api.status()["groups"][0]["link"]
    return out


def events(host: Host, kind: EventKind | AgentEventKind) -> list[Any]:
    assert host.agent is not None
    return [e for e in host.agent.events if e.kind == kind]


async def start(c: Cluster) -> list[FakeLinks]:
    links = [FakeLinks(["eth0"]) for _ in c.hosts]
    for h, fake in zip(c.hosts, links, strict=True):
        await c.start(h, links=fake)
    await c.until(c.settled)
    return links


async def stop_all(c: Cluster) -> None:
    for h in c.hosts:
        if h.task is not None and not h.task.done():
            await c.stop(h)


async def test_a_holder_whose_link_goes_down_gives_its_address_away(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, link_hold=HOLD)
    links = await start(c)
    h2, spare = c.hosts[1], c.hosts[2]
    try:
        first = link(h2)
        assert first == {
            "interface": "eth0",
            "tracked": True,
            "state": "up",
            "reason": "eth0: up",
            "since_s": first["since_s"],
            "hold_left_s": None,
        }
        assert first["since_s"] >= 0
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        links[1].set("eth0", "no carrier")
        assert not h2.held or WWW2 in h2.held  # the release runs in a task
        await c.until(lambda: spare.held == {WWW2} and not h2.held)
        assert loop.time() - t0 < 0.2  # the others hear OK = false at once
        (down,) = events(h2, EventKind.LINK_DOWN)
        assert down.reason == "eth0: no carrier"
        assert link(h2)["state"] == "down" and link(h2)["reason"] == "eth0: no carrier"
        assert h2.agent is not None and h2.agent.api.status()["groups"][0]["ok"] is False

        back = loop.time()
        links[1].set("eth0", "up")
        assert link(h2)["state"] == "holding" and 0 < link(h2)["hold_left_s"] <= HOLD
        await c.until(lambda: h2.held == {WWW2} and not spare.held)
        assert loop.time() - back >= HOLD
        (up,) = events(h2, EventKind.LINK_UP)
        assert up.reason.startswith("eth0: up")
        assert link(h2)["state"] == "up"
    finally:
        await stop_all(c)


async def test_a_link_down_at_start_brings_nothing_in(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, link_hold=HOLD)
    h1, h2, spare = c.hosts
    try:
        await c.start(h1, links=FakeLinks(["eth0"]))
        await c.start(spare, links=FakeLinks(["eth0"]))
        await c.start(h2, links=FakeLinks([]))  # no eth0 at all
        await asyncio.sleep(1.0)
        assert not h2.held and WWW2 not in spare.held  # never introduced
        assert link(h2)["state"] == "down" and link(h2)["reason"] == "eth0: not found"
        assert [e.reason for e in events(h2, EventKind.LINK_DOWN)] == ["eth0: not found"]
    finally:
        await stop_all(c)


async def test_with_track_link_false_nothing_moves(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, track_link=False)
    links = await start(c)
    h2 = c.hosts[1]
    try:
        links[1].set("eth0", "no carrier")
        await asyncio.sleep(0.5)
        assert h2.held == {WWW2}
        assert events(h2, EventKind.LINK_DOWN) == []
        assert link(h2)["tracked"] is False and link(h2)["state"] == "untracked"
    finally:
        await stop_all(c)


async def test_the_watcher_restarts_and_the_last_state_holds_meanwhile(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, link_hold=HOLD)
    links = await start(c)
    h2, spare = c.hosts[1], c.hosts[2]
    try:
        links[1].fail(OSError("netlink: no buffer space"))
        await c.until(lambda: bool(events(h2, AgentEventKind.PART_FAILED)))
        assert h2.agent is not None
        (part,) = [p for p in h2.agent.api.status()["parts"] if p["name"] == "links"]
        assert part["state"] == "restarting" and not part["essential"]
        await asyncio.sleep(0.2)
        assert h2.held == {WWW2} and link(h2)["state"] == "up"
        # the carrier goes while the watcher is down: the restart reads it
        links[1].change_unseen("eth0", "no carrier")
        await c.until(lambda: bool(events(h2, AgentEventKind.PART_RESTARTED)), limit=2.0)
        await c.until(lambda: spare.held == {WWW2} and not h2.held)
        assert link(h2)["state"] == "down"
    finally:
        await stop_all(c)


def test_the_watchers_are_links() -> None:
    from rais.drivers.links import NetlinkLinks

    watchers: list[Links] = [NetlinkLinks(), FakeLinks()]
    assert len(watchers) == 2
