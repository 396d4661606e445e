"""The agent's event log: every event as a JSON-ready record with a sequence
number and wall-clock time, for ``GET /v1/events``, the live stream and
``rais events``; subscribers get new records on bounded queues."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import Any

from rais.core.addr import fmt
from rais.core.effects import Event


def record(ev: Event, seq: int, wall: float) -> dict[str, Any]:
    return {
        "seq": seq,
        "time": round(wall, 3),
        "group": ev.group,
        "host": fmt(ev.host),
        "kind": ev.kind.value,
        "address": fmt(ev.address) if ev.address is not None else None,
        "reason": ev.reason,
    }


class EventLog:
    def __init__(self, size: int = 1000, clock: Callable[[], float] = time.time) -> None:
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self.clock = clock
        self.seq = 0
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def add(self, ev: Event) -> dict[str, Any]:
        self.seq += 1
        rec = record(ev, self.seq, self.clock())
        self.records.append(rec)
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(rec)
        return rec

    def since(self, seq: int) -> list[dict[str, Any]]:
        """Recent records with a sequence number above ``seq``, oldest first."""
        return [r for r in self.records if r["seq"] > seq]

    def subscribe(self, size: int = 1000) -> asyncio.Queue[dict[str, Any]]:
        """A queue that gets every new record (bounded: a slow reader loses some)."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=size)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(q)


def line(rec: dict[str, Any]) -> str:
    """One readable line (``rais events``)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec["time"]))
    stamp += f".{int(rec['time'] * 1000) % 1000:03d}Z"
    address = f" {rec['address']}" if rec.get("address") else ""
    reason = f": {rec['reason']}" if rec.get("reason") else ""
    return f"{stamp} {rec['group']} {rec['host']} {rec['kind']}{address}{reason}"
