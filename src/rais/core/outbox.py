"""The queue of effects a core produces, stamped with its group and host."""

from __future__ import annotations

from rais.core.addr import Addr
from rais.core.effects import Acquire, Announce, Effect, Event, EventKind, Release

Extras = tuple[tuple[Addr, int], ...]


class Outbox:
    """Collects effects in order; events carry the ``now`` of the input that
    caused them, passed explicitly."""

    __slots__ = ("group", "host", "items")

    def __init__(self, group: str, host: Addr) -> None:
        self.group = group
        self.host = host
        self.items: list[Effect] = []

    def event(
        self, now: float, kind: EventKind, address: Addr | None = None, reason: str = ""
    ) -> None:
        self.items.append(Event(now, kind, self.group, self.host, address, reason))

    def acquire(
        self, address: Addr, prefixlen: int, extras: Extras = (), *, extras_only: bool = False
    ) -> None:
        self.items.append(Acquire(address, prefixlen, extras, extras_only))

    def release(
        self, address: Addr, prefixlen: int, extras: Extras = (), *, extras_only: bool = False
    ) -> None:
        self.items.append(Release(address, prefixlen, extras, extras_only))

    def announce(self, address: Addr, prefixlen: int, extras: Extras = ()) -> None:
        self.items.append(Announce(address, prefixlen, extras))

    def drain(self) -> list[Effect]:
        items, self.items = self.items, []
        return items
