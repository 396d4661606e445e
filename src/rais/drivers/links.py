"""The carrier of the host's interfaces, for link tracking (issue 13).

:class:`LinkTable` keeps each interface's state (by name) and tells the
subscribers of an interface of every change; :class:`NetlinkLinks` fills it
from rtnetlink: one dump of every link at start, then the kernel's link
events (``RTMGRP_LINK``: RTM_NEWLINK / RTM_DELLINK), never polling. An
interface is up when it is administratively up (``IFF_UP``) and has a
carrier (``IFF_LOWER_UP``; a veth whose peer is down, a cable pulled:
``NO-CARRIER``); down otherwise, and when it does not exist or was deleted.
The fake (:class:`FakeLinks`) is set by hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

from rais.drivers.base import OnLink

log = logging.getLogger("rais.drivers.links")

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RTM_NEWLINK = 16
RTM_DELLINK = 17

UP = "up"
NO_CARRIER = "no carrier"
ADMIN_DOWN = "admin down"
DELETED = "deleted"
ABSENT = "not found"


def why(flags: int) -> str:
    """The state of a link from its flags: ``UP`` or why it is down."""
    if not flags & IFF_UP:
        return ADMIN_DOWN
    if not flags & IFF_LOWER_UP:
        return NO_CARRIER
    return UP


class LinkError(Exception):
    """The link watcher cannot follow the kernel's events."""


class LinkTable:
    """Interface name -> state ("up" or why it is down), and the subscribers."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.known = False
        """The state has been read (before: nothing is reported)."""
        self._ready = asyncio.Event()
        self._subs: dict[str, list[OnLink]] = {}
        self._told: dict[str, str] = {}
        """What the subscribers of each interface were told last."""

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def subscribe(self, interface: str, callback: OnLink) -> Callable[[], None]:
        self._subs.setdefault(interface, []).append(callback)
        if self.known:
            self._told[interface] = self.state(interface)
            self._tell(callback, interface, self.state(interface))

        def unsubscribe() -> None:
            subs = self._subs.get(interface, [])
            if callback in subs:
                subs.remove(callback)

        return unsubscribe

    def state(self, interface: str) -> str:
        return self.states.get(interface, ABSENT)

    def load(self, states: Iterable[tuple[str, str]]) -> None:
        """A full reading: every interface not in it does not exist."""
        self.states = dict(states)
        self.known = True
        self._ready.set()
        for name in list(self._subs):
            self._changed(name, self.state(name))

    def set(self, interface: str, state: str | None) -> None:
        """One interface changed (None: it is gone)."""
        if state is None:
            self.states.pop(interface, None)
        else:
            self.states[interface] = state
        if self.known:
            self._changed(interface, DELETED if state is None else state)

    def _changed(self, interface: str, state: str) -> None:
        """Tell the subscribers if this is not what they were told last."""
        if self._told.get(interface) != state:
            self._notify(interface, state)

    def _notify(self, interface: str, state: str) -> None:
        self._told[interface] = state
        for callback in list(self._subs.get(interface, ())):
            self._tell(callback, interface, state)

    @staticmethod
    def _tell(callback: OnLink, interface: str, state: str) -> None:
        try:
            callback(state == UP, f"{interface}: {state}")
        except Exception:
            log.exception("link %s: a subscriber failed", interface)


class NetlinkLinks(LinkTable):
    """``Links`` over rtnetlink (``netns``: a name under /run/netns, or None)."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__()
        self.netns = netns
        self._names: dict[int, str] = {}
        self.events = 0
        """Link messages taken since start (status, tests)."""

    async def run(self) -> None:
        ipr: Any = AsyncIPRoute(netns=self.netns, flags=0)
        try:
            # Subscribe first, then dump: an event during the dump is queued
            # and applied after it, so nothing is missed.
            await ipr.bind(groups=RTMGRP_LINK)
            names: dict[int, str] = {}
            states = []
            async for msg in await ipr.get_links():
                name = msg.get("ifname")
                if name:
                    names[int(msg["index"])] = name
                    states.append((name, why(int(msg["flags"]))))
            self._names = names
            self.load(states)
            while True:
                taken = 0
                async for msg in ipr.get():
                    taken += 1
                    self._message(msg)
                if not taken:
                    raise LinkError("the netlink socket returned nothing (closed?)")
        except OSError as exc:
            raise LinkError(f"netlink link events: {exc}") from exc
        finally:
            ipr.close()

    def _message(self, msg: Any) -> None:
        kind = msg.get("header", {}).get("type")
        if kind not in (RTM_NEWLINK, RTM_DELLINK):
            return
        self.events += 1
        index = int(msg["index"])
        name = msg.get("ifname") or self._names.get(index)
        if name is None:
            return
        old = self._names.get(index)
        if kind == RTM_DELLINK:
            self._names.pop(index, None)
            self.set(name, None)
            return
        if old is not None and old != name:
            self.set(old, None)  # renamed: the old name is gone
        self._names[index] = name
        self.set(name, why(int(msg["flags"])))


class FakeLinks(LinkTable):
    """``Links`` set by hand (tests, ``rais dev``): every interface in
    ``up`` starts up; ``set`` changes one; ``fail`` makes ``run`` raise."""

    def __init__(self, up: Iterable[str] = ()) -> None:
        super().__init__()
        self._initial = [(name, UP) for name in up]
        self._fail: asyncio.Future[None] | None = None
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        self.load(self._initial if self.runs == 1 else list(self.states.items()))
        self._fail = asyncio.get_running_loop().create_future()
        await self._fail

    def change_unseen(self, interface: str, state: str | None) -> None:
        """Change an interface without an event (as while the watcher is
        down): the next ``run`` reads it."""
        if state is None:
            self.states.pop(interface, None)
        else:
            self.states[interface] = state

    def fail(self, error: Exception) -> None:
        """The running ``run`` raises ``error``."""
        if self._fail is not None and not self._fail.done():
            self._fail.set_exception(error)
