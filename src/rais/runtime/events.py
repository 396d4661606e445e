"""The agent's event bus: every event, from the groups' cores or from the agent
itself, enters through :meth:`EventBus.publish` and from there reaches the log,
the metrics, the SNMP traps and the history, in that one place.

The history is one bounded buffer of typed events, each with a sequence number
and a wall-clock time (:class:`Entry`); it is rendered to JSON (:func:`record`)
only at the API edge, for ``GET /v1/events``, the live stream and ``rais events``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from rais.core.addr import Addr, fmt
from rais.core.effects import Event

log = logging.getLogger("rais.agent")


class AgentEventKind(StrEnum):
    """What the agent reports itself (never a core): its DNS and its supervision
    (rais.runtime.supervise)."""

    DNS_PUBLISHED = "dns-published"
    DNS_FAILED = "dns-failed"
    PART_FAILED = "part-failed"
    PART_RESTARTED = "part-restarted"
    AGENT_FAILED = "agent-failed"


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """An event of the agent itself; the same fields as a core ``Event``."""

    time: float
    kind: AgentEventKind
    group: str
    host: Addr
    address: Addr | None = None
    reason: str = ""


AnyEvent = Event | AgentEvent
"""Every event the agent handles: a core's or its own."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One event of the history: its sequence number and when (wall clock) it came."""

    seq: int
    wall: float
    event: AnyEvent


def record(entry: Entry) -> dict[str, Any]:
    """The JSON form of an event (``GET /v1/events``, the stream, ``rais events``)."""
    ev = entry.event
    return {
        "seq": entry.seq,
        "time": round(entry.wall, 3),
        "group": ev.group,
        "host": fmt(ev.host),
        "kind": ev.kind.value,
        "address": fmt(ev.address) if ev.address is not None else None,
        "reason": ev.reason,
    }


class Traps(Protocol):
    """Where core events go to become SNMP notifications (rais.snmp.sender.TrapSender)."""

    def submit(self, event: Event) -> None: ...


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class EventBus:
    def __init__(
        self,
        host: Addr,
        *,
        count: Callable[[str, str], None],
        size: int = 1000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = _loop_time,
    ) -> None:
        """``host``: this host's id, for the agent's own events; ``count(kind,
        group)``: the metrics; ``clock``: wall time for the history;
        ``monotonic``: the time of the agent's own events (the loop's clock,
        like the cores')."""
        self.host = host
        self.count = count
        self.clock = clock
        self.monotonic = monotonic
        self.traps: Traps | None = None
        """Set once the SNMP sender runs (only core events have notifications)."""
        self.history: collections.deque[Entry] = collections.deque(maxlen=size)
        self.seq = 0
        self._subscribers: list[Callable[[Entry], None]] = []

    def emit(self, kind: AgentEventKind, group: str, reason: str) -> None:
        """An event of the agent itself, now."""
        self.publish(AgentEvent(self.monotonic(), kind, group, self.host, None, reason))

    def publish(self, ev: AnyEvent) -> None:
        """The one way in: history, metrics, traps, subscribers, log."""
        self.seq += 1
        entry = Entry(self.seq, self.clock(), ev)
        self.history.append(entry)
        self.count(ev.kind.value, ev.group)
        if self.traps is not None and isinstance(ev, Event):
            self.traps.submit(ev)
        for deliver in list(self._subscribers):
            deliver(entry)
        address = f" {fmt(ev.address)}" if ev.address is not None else ""
        reason = f": {ev.reason}" if ev.reason else ""
        where = f"group {ev.group}" if ev.group else "agent"
        log.info("%s %s: %s%s%s", fmt(ev.host), where, ev.kind.value, address, reason)

    @property
    def events(self) -> list[AnyEvent]:
        """The recent events, oldest first."""
        return [entry.event for entry in self.history]

    def since(self, seq: int) -> list[Entry]:
        """Recent entries with a sequence number above ``seq``, oldest first."""
        return [entry for entry in self.history if entry.seq > seq]

    def subscribe(self, deliver: Callable[[Entry], None]) -> Callable[[], None]:
        """Call ``deliver`` with every new entry (it must not block); returns
        the function that ends the subscription."""
        self._subscribers.append(deliver)
        return lambda: self._unsubscribe(deliver)

    def _unsubscribe(self, deliver: Callable[[Entry], None]) -> None:
        if deliver in self._subscribers:
            self._subscribers.remove(deliver)


def line(rec: dict[str, Any]) -> str:
    """One readable line (``rais events``)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec["time"]))
    stamp += f".{int(rec['time'] * 1000) % 1000:03d}Z"
    address = f" {rec['address']}" if rec.get("address") else ""
    reason = f": {rec['reason']}" if rec.get("reason") else ""
    return f"{stamp} {rec['group']} {rec['host']} {rec['kind']}{address}{reason}"
