"""The interfaces of control addresses, by netlink (rais.drivers.transport)."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterable

from rais.base.ip import IP, Interface


async def interface_indexes(addresses: Iterable[IP]) -> dict[IP, int]:
    """The index of the interface holding each address (netlink, in the calling
    thread's network namespace). An unassigned 127/8 address maps to the
    interface of the loopback network. Raises OSError naming a missing address."""
    from pyroute2 import AsyncIPRoute

    wanted = set(addresses)
    if not wanted:
        return {}
    assigned: list[tuple[Interface, int]] = []
    async with AsyncIPRoute() as ipr:
        async for msg in await ipr.addr("dump"):
            text = msg.get("local") or msg.get("address")
            if not text:
                continue
            try:
                iface = ipaddress.ip_interface(f"{text.split('%')[0]}/{msg['prefixlen']}")
            except ValueError:
                continue
            assigned.append((iface, int(msg["index"])))
    found: dict[IP, int] = {}
    for address in wanted:
        exact = [index for iface, index in assigned if iface.ip == address]
        if not exact and address.version == 4 and address.is_loopback:
            exact = [
                index
                for iface, index in assigned
                if iface.ip.is_loopback and address in iface.network
            ]
        if not exact:
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"control address {address} is not on any interface of this host",
            )
        found[address] = exact[0]
    return found
