"""Addresses as the core sees them: packed bytes (4 for IPv4, 16 for IPv6).

Packed bytes hash and compare fast, which matters in the simulator where
every host hears every other. Host ids are ordered IPv4 before IPv6, then as
unsigned integers (for equal-length packed bytes that is byte order).
"""

from __future__ import annotations

import ipaddress

Addr = bytes
"""A packed IPv4 (4 bytes) or IPv6 (16 bytes) address."""


def id_key(addr: Addr) -> tuple[int, bytes]:
    """Sort key for host ids: IPv4 before IPv6, then numerically."""
    return (len(addr), addr)


def pack(text: str) -> Addr:
    """Packed form of an address written as text (``192.0.2.1`` or ``2001:db8::1``)."""
    return ipaddress.ip_address(text).packed


def fmt(addr: Addr | None) -> str:
    """Text form of a packed address ("-" for None)."""
    if addr is None:
        return "-"
    return str(ipaddress.ip_address(addr))
