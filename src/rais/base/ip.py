"""Service and control addresses as the drivers and the config see them.

A leaf: it imports nothing from rais. The one ``IP`` type (an IPv4 or IPv6
address object), the one ``Interface`` type (an address with its prefix) and
the one address order (IPv4 before IPv6, then numerically) that every sorted
list of addresses uses. The core's packed form is ``rais.core.addr``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TypeAlias

IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
"""An IPv4 or IPv6 address."""

Interface: TypeAlias = ipaddress.IPv4Interface | ipaddress.IPv6Interface
"""An address with its prefix length, e.g. 192.0.2.101/24."""


def ip_key(ip: IP) -> tuple[int, int]:
    """Sort key for addresses: IPv4 before IPv6, then numerically."""
    return (ip.version, int(ip))


def sorted_ips(ips: Iterable[IP]) -> tuple[IP, ...]:
    """``ips`` without duplicates, in address order (``ip_key``)."""
    return tuple(sorted(set(ips), key=ip_key))
