"""Service addresses on Linux interfaces, over rtnetlink (pyroute2's ``AsyncIPRoute``).

One netlink socket per ``NetlinkAddresses``, opened on first use (inside the
network namespace given, if any) and kept open until ``close()``: opening one
into a namespace costs 10-20 ms, a request about 1 ms. Every call is
idempotent (see ``Addresses`` in base.py).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from rais.base.ip import IP
from rais.drivers.nlrefresh import FastRefresh

log = logging.getLogger("rais.drivers.netlink")

_ABSENT = frozenset({errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH})
"""Errors of a delete that mean the address is not there (99, 'not found')."""


class AddressError(Exception):
    """An address operation failed: unknown interface or namespace, or the
    kernel refused. ``str()`` names the interface (and namespace)."""


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


class NetlinkAddresses:
    """``Addresses`` over rtnetlink; ``netns`` is a name under /run/netns (or a path)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = None
        self._lock = asyncio.Lock()
        self._fast = FastRefresh()

    # -- Addresses -------------------------------------------------------

    async def prepare(self, interface: str) -> None:
        """Set ``net.ipv4.conf.IF.promote_secondaries = 1`` in the driver's network
        namespace, so that removing the first address of a subnet does not take
        the others with it (the kernel's default does)."""
        path = f"/proc/sys/net/ipv4/conf/{interface}/promote_secondaries"
        if "/" in interface or interface in ("", ".", ".."):
            raise AddressError(f"bad interface name {interface!r}")
        if self.netns is None:
            try:
                await asyncio.to_thread(_write, path, "1\n")
            except OSError as exc:
                raise AddressError(f"cannot set {path}: {exc.strerror or exc}") from exc
            return
        proc = await asyncio.create_subprocess_exec(
            *("ip", "netns", "exec", self.netns, "sh", "-c", 'echo 1 > "$1"', "sh", path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise AddressError(f"cannot set {path} in {self.netns!r}: {err.decode().strip()}")

    async def add(
        self, interface: str, address: IP, prefixlen: int, lifetime: int | None = None
    ) -> None:
        """Add ``address/prefixlen``; IPv6 without duplicate address detection
        (usable at once, never tentative). Present already: success. With a
        ``lifetime`` (whole seconds) the kernel deletes the address by itself
        unless it is added again (refreshed) before that: a dead man's switch."""
        async with self._lock:
            index = await self._index(interface)
            kwargs: dict[str, Any] = {}
            if address.version == 6:
                kwargs["flags"] = IFA_F_NODAD
            op = "add"
            if lifetime is not None:
                op = "replace"
                kwargs["IFA_CACHEINFO"] = {
                    "ifa_preferred": lifetime,
                    "ifa_valid": lifetime,
                    "cstamp": 0,
                    "tstamp": 0,
                }
            try:
                await self._call(
                    op, index=index, address=str(address), prefixlen=prefixlen, **kwargs
                )
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    return
                raise self._error(exc, f"cannot add {address}/{prefixlen}", interface) from exc

    def refresh_now(self, interface: str, address: IP, prefixlen: int, lifetime: int) -> bool:
        """Add or refresh with ``lifetime`` at once, without waiting for an
        answer (rais.drivers.nlrefresh); False: not done, use ``add``. Only in
        the agent's own network namespace."""
        if self.netns is not None:
            return False
        return self._fast.refresh(interface, address, prefixlen, lifetime)

    async def remove(self, interface: str, address: IP, prefixlen: int) -> None:
        """Remove ``address/prefixlen``. Absent: success. Present with another
        prefix length (say, the config changed since it was added): removed all
        the same, with a warning; afterwards the interface does not hold
        ``address`` at all."""
        async with self._lock:
            index = await self._index(interface)
            if await self._delete(index, interface, address, prefixlen):
                return
            for other, other_len in await self._dump(index, interface):
                if other == address:
                    log.warning(
                        "%s: removing %s/%d (asked to remove it as /%d)",
                        self._where(interface),
                        address,
                        other_len,
                        prefixlen,
                    )
                    await self._delete(index, interface, address, other_len)

    async def present(self, interface: str) -> list[tuple[IP, int]]:
        """Every address on the interface (IPv4 and IPv6, link-local included)."""
        async with self._lock:
            index = await self._index(interface)
            return await self._dump(index, interface)

    def close(self) -> None:
        """Close the netlink socket (a later call opens a new one)."""
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()
        self._fast.close()

    # -- internals -------------------------------------------------------

    def _where(self, interface: str) -> str:
        if self.netns is None:
            return f"interface {interface!r}"
        return f"interface {interface!r} in network namespace {self.netns!r}"

    def _error(self, exc: NetlinkError, what: str, interface: str) -> AddressError:
        if exc.code == errno.ENODEV:
            return AddressError(f"{self._where(interface)} not found")
        return AddressError(f"{what} on {self._where(interface)}: {exc.args[-1]} ({exc.code})")

    def _socket(self) -> Any:
        if self._ipr is None:
            # flags=0: never create a missing namespace; groups=0: no event
            # subscriptions (nobody would read them).
            self._ipr = AsyncIPRoute(netns=self.netns, flags=0, groups=0)
        return self._ipr

    async def _request(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``await ipr.METHOD(...)`` on the (lazily opened) socket. A socket-level
        failure closes the socket, so that the next call starts afresh."""
        ipr = self._socket()
        try:
            return await getattr(ipr, method)(*args, **kwargs)
        except FileNotFoundError as exc:
            self.close()
            raise AddressError(f"network namespace {self.netns!r} not found") from exc
        except OSError as exc:
            self.close()
            where = "" if self.netns is None else f" (network namespace {self.netns!r})"
            raise AddressError(f"netlink socket failed{where}: {exc}") from exc

    async def _call(self, command: str, **kwargs: Any) -> Any:
        return await self._request("addr", command, **kwargs)

    async def _index(self, interface: str) -> int:
        found = await self._request("link_lookup", ifname=interface)
        if not found:
            raise AddressError(f"{self._where(interface)} not found")
        return int(found[0])

    async def _delete(self, index: int, interface: str, address: IP, prefixlen: int) -> bool:
        """True if deleted, False if it was not there (as ``address/prefixlen``)."""
        try:
            await self._call("del", index=index, address=str(address), prefixlen=prefixlen)
        except NetlinkError as exc:
            if exc.code in _ABSENT:
                return False
            raise self._error(exc, f"cannot remove {address}/{prefixlen}", interface) from exc
        return True

    async def _dump(self, index: int, interface: str) -> list[tuple[IP, int]]:
        result: list[tuple[IP, int]] = []
        try:
            dump = await self._call("dump", index=index)
            async for msg in dump:
                if msg["index"] != index or msg["family"] not in (socket.AF_INET, socket.AF_INET6):
                    continue
                # IFA_LOCAL is the local side of a point-to-point address
                # (IFA_ADDRESS then being the peer); otherwise only IFA_ADDRESS.
                text = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
                if text:
                    result.append((ipaddress.ip_address(text), int(msg["prefixlen"])))
        except NetlinkError as exc:
            raise self._error(exc, "cannot list addresses", interface) from exc
        return result
