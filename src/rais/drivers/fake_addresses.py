"""In-memory ``Addresses`` and ``Announcer`` for tests and ``rais dev``.

They behave like the real drivers (idempotent add/remove, ``AddressError``
for an unknown interface when the interfaces are fixed), keep a log of every
call and can be told to fail.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from rais.base.ip import IP, ip_key
from rais.drivers.announce import AnnounceError
from rais.drivers.netlink import AddressError


@dataclass(frozen=True, slots=True)
class AddressCall:
    """One call to ``FakeAddresses`` (failed calls included)."""

    op: Literal["prepare", "add", "refresh", "remove", "present"]
    interface: str
    address: IP | None = None
    prefixlen: int | None = None


class FakeAddresses:
    """Addresses kept in a dict: interface -> set of (address, prefixlen).

    ``interfaces``: the interfaces that exist (others raise ``AddressError``
    as the real driver does); None (default) means any interface exists.
    """

    def __init__(self, interfaces: Iterable[str] | None = None) -> None:
        self.interfaces: dict[str, set[tuple[IP, int]]] = {}
        self.fixed = interfaces is not None
        for name in interfaces or ():
            self.interfaces[name] = set()
        self.calls: list[AddressCall] = []
        self.promote: set[str] = set()
        """Interfaces ``prepare``d: there, as in the kernel with promote_secondaries,
        removing the first IPv4 address of a subnet keeps the others; elsewhere it
        takes them all away (the kernel's default)."""
        self._order: list[tuple[str, IP, int]] = []
        self.lifetimes: dict[tuple[str, IP], int | None] = {}
        """The lifetime of the last add of each address (None: forever)."""
        self._fail_add: dict[IP, list[Exception]] = {}
        self._fail_remove: dict[IP, list[Exception]] = {}
        self.closed = False
        self.fast = True
        """Whether ``refresh_now`` works (False: it always asks for ``add``)."""

    # -- test controls ---------------------------------------------------

    def fail_next_add(self, address: IP, error: Exception | None = None) -> None:
        """The next ``add`` of ``address`` raises ``error`` (default an
        ``AddressError``) and changes nothing. Calls stack up."""
        self._fail_add.setdefault(address, []).append(
            error or AddressError(f"injected failure: add {address}")
        )

    def fail_next_remove(self, address: IP, error: Exception | None = None) -> None:
        """The next ``remove`` of ``address`` raises ``error`` and changes nothing."""
        self._fail_remove.setdefault(address, []).append(
            error or AddressError(f"injected failure: remove {address}")
        )

    def snapshot(self, interface: str) -> set[tuple[IP, int]]:
        """A copy of the addresses on ``interface`` (empty if unknown); not logged."""
        return set(self.interfaces.get(interface, ()))

    def holds(self, interface: str, address: IP) -> bool:
        return any(ip == address for ip, _ in self.interfaces.get(interface, ()))

    # -- Addresses -------------------------------------------------------

    async def prepare(self, interface: str) -> None:
        self.calls.append(AddressCall("prepare", interface))
        await asyncio.sleep(0)
        self._table(interface)
        self.promote.add(interface)

    async def add(
        self, interface: str, address: IP, prefixlen: int, lifetime: int | None = None
    ) -> None:
        self.lifetimes[(interface, address)] = lifetime
        self.calls.append(AddressCall("add", interface, address, prefixlen))
        await asyncio.sleep(0)
        self._raise_injected(self._fail_add, address)
        table = self._table(interface)
        if (address, prefixlen) not in table:
            table.add((address, prefixlen))
            self._order.append((interface, address, prefixlen))

    def refresh_now(self, interface: str, address: IP, prefixlen: int, lifetime: int) -> bool:
        """Like ``add`` with a lifetime, done in the call (unless ``fast`` is off
        or an injected add failure is pending: then False, use ``add``)."""
        if not self.fast or self._fail_add.get(address):
            return False
        if self.fixed and interface not in self.interfaces:
            return False
        self.lifetimes[(interface, address)] = lifetime
        self.calls.append(AddressCall("refresh", interface, address, prefixlen))
        table = self._table(interface)
        if (address, prefixlen) not in table:
            table.add((address, prefixlen))
            self._order.append((interface, address, prefixlen))
        return True

    async def remove(self, interface: str, address: IP, prefixlen: int) -> None:
        """Like the real driver: afterwards ``address`` is gone whatever its prefix length."""
        self.calls.append(AddressCall("remove", interface, address, prefixlen))
        await asyncio.sleep(0)
        self._raise_injected(self._fail_remove, address)
        table = self._table(interface)
        for entry in [e for e in table if e[0] == address]:
            self._drop(interface, *entry)

    async def present(self, interface: str) -> list[tuple[IP, int]]:
        self.calls.append(AddressCall("present", interface))
        await asyncio.sleep(0)
        return sorted(self._table(interface), key=lambda e: (ip_key(e[0]), e[1]))

    def close(self) -> None:
        self.closed = True

    # -- internals -------------------------------------------------------

    def _drop(self, interface: str, address: IP, prefixlen: int) -> None:
        table = self.interfaces[interface]
        gone = [(address, prefixlen)]
        if address.version == 4 and interface not in self.promote:
            net = ipaddress.ip_interface(f"{address}/{prefixlen}").network
            same = [
                (a, p)
                for i, a, p in self._order
                if i == interface and ipaddress.ip_interface(f"{a}/{p}").network == net
            ]
            if same and same[0] == (address, prefixlen):
                gone = same  # the primary goes, and its secondaries with it
        for entry in gone:
            table.discard(entry)
            self._order.remove((interface, *entry))

    def _table(self, interface: str) -> set[tuple[IP, int]]:
        if interface not in self.interfaces:
            if self.fixed:
                raise AddressError(f"interface {interface!r} not found")
            self.interfaces[interface] = set()
        return self.interfaces[interface]

    @staticmethod
    def _raise_injected(failures: dict[IP, list[Exception]], address: IP) -> None:
        pending = failures.get(address)
        if pending:
            error = pending.pop(0)
            if not pending:
                del failures[address]
            raise error


class FakeAnnouncer:
    """Records each announcement as (interface, address, loop time) in ``calls``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, IP, float]] = []
        self._fail: list[Exception] = []
        self.closed = False

    def fail_next(self, error: Exception | None = None) -> None:
        """The next ``announce`` raises ``error`` (not recorded in ``calls``)."""
        self._fail.append(error or AnnounceError("injected failure: announce"))

    def announced(self, address: IP) -> list[float]:
        """Loop times at which ``address`` was announced."""
        return [t for _, ip, t in self.calls if ip == address]

    async def announce(self, interface: str, address: IP) -> None:
        if self._fail:
            raise self._fail.pop(0)
        self.calls.append((interface, address, asyncio.get_running_loop().time()))

    def close(self) -> None:
        self.closed = True
