"""The agent's event bus (rais.runtime.events) and the JSON edge of it (rais.admin.facade):
one buffer of typed events, every sink fed from one place, the records exactly
as ``GET /v1/events`` has always shown them."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
from typing import Any

import pytest

from rais.admin.facade import AgentFacade
from rais.admin.metrics import Metrics
from rais.admin.status_view import AgentStatus
from rais.core.addr import Addr
from rais.core.effects import Event, EventKind
from rais.runtime.events import AgentEvent, AgentEventKind, Entry, EventBus, record
from rais.runtime.group import to_addr

HOST = to_addr(ipaddress.ip_address("192.0.2.1"))
VIP = to_addr(ipaddress.ip_address("198.51.100.7"))


class Traps:
    def __init__(self) -> None:
        self.submitted: list[Event] = []

    def submit(self, event: Event) -> None:
        self.submitted.append(event)


def bus(**kw: Any) -> tuple[EventBus, list[tuple[str, str]]]:
    counted: list[tuple[str, str]] = []
    wall = (1_700_000_000 + i + 0.12345 for i in itertools.count())
    b = EventBus(
        HOST,
        count=lambda kind, group: counted.append((kind, group)),
        clock=lambda: next(wall),
        monotonic=lambda: 42.0,
        **kw,
    )
    return b, counted


def acquired(host: Addr = HOST) -> Event:
    return Event(3.5, EventKind.ACQUIRED, "www", host, VIP, "preferred")


def test_one_publish_feeds_history_metrics_traps_subscribers_and_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b, counted = bus()
    b.traps = traps = Traps()
    delivered: list[Entry] = []
    b.subscribe(delivered.append)
    with caplog.at_level(logging.INFO, logger="rais.agent"):
        b.publish(acquired())
    (entry,) = b.history
    assert entry.seq == 1 and entry.event == acquired()
    assert b.events == [acquired()]
    assert counted == [("acquired", "www")]
    assert traps.submitted == [acquired()]
    assert delivered == [entry]
    assert caplog.messages == ["192.0.2.1 group www: acquired 198.51.100.7: preferred"]


def test_the_record_is_the_json_the_api_has_always_given() -> None:
    b, _ = bus()
    b.publish(acquired())
    b.emit(AgentEventKind.PART_FAILED, "", "dns: boom")
    first, second = (record(e) for e in b.history)
    assert first == {
        "seq": 1,
        "time": 1700000000.123,
        "group": "www",
        "host": "192.0.2.1",
        "kind": "acquired",
        "address": "198.51.100.7",
        "reason": "preferred",
    }
    assert second == {
        "seq": 2,
        "time": 1700000001.123,
        "group": "",
        "host": "192.0.2.1",
        "kind": "part-failed",
        "address": None,
        "reason": "dns: boom",
    }


def test_agent_events_carry_this_host_and_the_loop_time_and_are_never_trapped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b, counted = bus()
    b.traps = traps = Traps()
    with caplog.at_level(logging.INFO, logger="rais.agent"):
        b.emit(AgentEventKind.DNS_PUBLISHED, "www", "www.rais.test. serial 2")
    assert b.events == [
        AgentEvent(42.0, AgentEventKind.DNS_PUBLISHED, "www", HOST, None, "www.rais.test. serial 2")
    ]
    assert counted == [("dns-published", "www")]
    assert traps.submitted == []
    assert caplog.messages == ["192.0.2.1 group www: dns-published: www.rais.test. serial 2"]


def test_agent_kinds_keep_their_names_and_are_not_core_kinds() -> None:
    assert [k.value for k in AgentEventKind] == [
        "dns-published",
        "dns-failed",
        "part-failed",
        "part-restarted",
        "agent-failed",
    ]
    assert not {k.value for k in AgentEventKind} & {k.value for k in EventKind}


def test_the_history_is_bounded_and_since_skips_what_was_seen() -> None:
    b, _ = bus(size=3)
    for _ in range(5):
        b.publish(acquired())
    assert [e.seq for e in b.history] == [3, 4, 5]
    assert [e.seq for e in b.since(3)] == [4, 5]
    assert b.since(5) == []


def test_an_ended_subscription_hears_nothing_more() -> None:
    b, _ = bus()
    heard: list[int] = []
    end = b.subscribe(lambda e: heard.append(e.seq))
    b.publish(acquired())
    end()
    end()  # twice is harmless
    b.publish(acquired())
    assert heard == [1]


async def test_the_facade_renders_at_the_edge_and_a_full_queue_loses_events() -> None:
    b, _ = bus()
    empty = AgentStatus(version="0", host="192.0.2.1", epoch=1, parts=(), groups=())
    facade = AgentFacade({}, status=lambda: empty, bus=b, metrics=Metrics(lambda: empty))
    assert facade.status() == {
        "version": "0",
        "host": "192.0.2.1",
        "epoch": 1,
        "parts": [],
        "groups": [],
    }
    q = facade.subscribe()
    b.publish(acquired())
    assert facade.events_since(0) == [q.get_nowait()] == [record(b.history[0])]
    for _ in range(q.maxsize + 5):
        b.publish(acquired())
    assert q.qsize() == q.maxsize  # the overflow was dropped, nothing raised
    facade.unsubscribe(q)
    facade.unsubscribe(q)
    while not q.empty():
        q.get_nowait()
    b.publish(acquired())
    assert q.empty()
    assert isinstance(q, asyncio.Queue)
