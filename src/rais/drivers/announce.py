"""Announcing a moved address on its link: gratuitous ARP and unsolicited NA.

IPv4: one ``announce`` sends two broadcast frames on a raw ``AF_PACKET``
socket bound to the interface, a gratuitous ARP *request* (target MAC zero)
and a gratuitous ARP *reply* whose target MAC is the sender MAC. Linux
updates an existing neighbour entry on either at once; some switches only
take replies; a reply with a zero target MAC would be ignored within
``locktime`` of the last update, hence that form of reply.

IPv6: an unsolicited neighbour advertisement (ICMPv6 136, Override set,
Solicited clear, target link-layer address option) to ff02::1 with hop limit
255 from a raw ICMPv6 socket; the kernel fills in the checksum (always done
for ICMPv6 raw sockets) and picks the source address.

The frames are built by pure functions (``garp_frames``, ``unsolicited_na``).
Sockets are created on first use per interface, inside the network namespace
if one is given (on a short-lived thread that enters it), and kept until
``close()``.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TypeVar

from rais.base.ip import IP

T = TypeVar("T")

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ETH_MIN_FRAME = 60
"""Minimum Ethernet frame without FCS: ARP frames are zero-padded to it."""

ND_NEIGHBOR_ADVERT = 136
NA_FLAG_ROUTER = 0x80000000
NA_FLAG_SOLICITED = 0x40000000
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LL_ADDR = 2
ALL_NODES = "ff02::1"

_SIOCGIFHWADDR = 0x8927
_SIOCGIFINDEX = 0x8933
_ICMP6_FILTER = 1  # linux/icmpv6.h, level IPPROTO_ICMPV6
_CLONE_NEWNET = 0x40000000
_NETNS_RUN_DIR = "/run/netns"


class AnnounceError(Exception):
    """An announcement could not be sent; ``str()`` names the interface."""


# -- frame builders (pure) ---------------------------------------------------


def _check_mac(mac: bytes) -> None:
    if len(mac) != 6:
        raise ValueError(f"MAC address must be 6 bytes, got {len(mac)}")


def _arp_frame(op: int, mac: bytes, address: IPv4Address, target_mac: bytes) -> bytes:
    ip = address.packed
    eth = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, op) + mac + ip + target_mac + ip
    return (eth + arp).ljust(ETH_MIN_FRAME, b"\x00")


def garp_frames(mac: bytes, address: IPv4Address) -> list[bytes]:
    """The two gratuitous ARP Ethernet frames (broadcast, padded to 60 bytes):
    a request (sender = target = ``address``, target MAC zero) and a reply
    (sender = target = ``address``, target MAC = sender MAC = ``mac``)."""
    _check_mac(mac)
    return [
        _arp_frame(ARPOP_REQUEST, mac, address, ZERO_MAC),
        _arp_frame(ARPOP_REPLY, mac, address, mac),
    ]


def unsolicited_na(mac: bytes, address: IPv6Address) -> bytes:
    """The ICMPv6 neighbour advertisement message (no IPv6 header) announcing
    that ``address`` is at ``mac``: Override set, Router and Solicited clear,
    target link-layer address option. Checksum field zero (the kernel fills
    it in on an ICMPv6 raw socket)."""
    _check_mac(mac)
    header = struct.pack("!BBHI", ND_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE)
    option = struct.pack("!BB", ND_OPT_TARGET_LL_ADDR, 1) + mac
    return header + address.packed + option


# -- sockets in a network namespace ------------------------------------------


def _netns_path(netns: str) -> str:
    return netns if "/" in netns else os.path.join(_NETNS_RUN_DIR, netns)


def _in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` inside network namespace ``netns`` (None: here) and return its
    result. A fresh thread enters the namespace and ends afterwards, so no
    thread of the process is left in the wrong namespace; sockets keep the
    namespace they were created in."""
    if netns is None:
        return fn()
    path = _netns_path(netns)
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            errors.append(AnnounceError(f"network namespace {netns!r} not found ({exc})"))
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                errors.append(OSError(code, f"setns {path}: {os.strerror(code)}"))
                return
        finally:
            os.close(fd)
        try:
            results.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"rais-netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def _ifreq(interface: str) -> bytes:
    name = interface.encode()
    if not name or len(name) >= 16:
        raise OSError(errno.ENODEV, "bad interface name")
    return struct.pack("16s24x", name)


def _ifindex(sock: socket.socket, interface: str) -> int:
    """The index of ``interface`` in the socket's network namespace."""
    reply = fcntl.ioctl(sock.fileno(), _SIOCGIFINDEX, _ifreq(interface))
    return int(struct.unpack_from("i", reply, 16)[0])


def _hwaddr(sock: socket.socket, interface: str) -> tuple[int, bytes]:
    """(ARPHRD type, MAC) of ``interface`` in the socket's network namespace."""
    reply = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, _ifreq(interface))
    family = int(struct.unpack_from("H", reply, 16)[0])
    return family, reply[18:24]


def _check_ethernet(sock: socket.socket, interface: str) -> None:
    hatype, _ = _hwaddr(sock, interface)
    if hatype != ARPHRD_ETHER:
        raise AnnounceError(f"interface {interface!r} is not Ethernet (ARPHRD type {hatype})")


def _open_packet(interface: str) -> tuple[socket.socket, int]:
    # Protocol 0: the socket receives nothing; frames go out with sendto(ETH_P_ARP).
    sock = socket.socket(
        socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, 0
    )
    try:
        sock.bind((interface, 0))
        _check_ethernet(sock, interface)
        return sock, _ifindex(sock, interface)
    except BaseException:
        sock.close()
        raise


def _open_icmp6(interface: str) -> tuple[socket.socket, int]:
    sock = socket.socket(
        socket.AF_INET6,
        socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
        socket.IPPROTO_ICMPV6,
    )
    try:
        index = _ifindex(sock, interface)
        _check_ethernet(sock, interface)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        # Receive nothing: block every ICMPv6 type (a set bit blocks on Linux).
        sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, b"\xff" * 32)
        return sock, index
    except BaseException:
        sock.close()
        raise


@dataclass
class _Link:
    sock: socket.socket
    ifindex: int


class LinkAnnouncer:
    """``Announcer`` over raw sockets; ``netns`` is a name under /run/netns (or a path)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._links: dict[tuple[str, int], _Link] = {}

    async def announce(self, interface: str, address: IP) -> None:
        """Send one burst: GARP request + reply (IPv4) or one unsolicited NA (IPv6)."""
        key = (interface, address.version)
        link = await self._link(interface, address.version)
        try:
            _, mac = _hwaddr(link.sock, interface)
            loop = asyncio.get_running_loop()
            if isinstance(address, IPv4Address):
                for frame in garp_frames(mac, address):
                    await loop.sock_sendto(link.sock, frame, (interface, ETH_P_ARP))
            else:
                message = unsolicited_na(mac, address)
                await loop.sock_sendto(link.sock, message, (ALL_NODES, 0, 0, link.ifindex))
        except OSError as exc:
            self._drop(key)
            raise AnnounceError(f"announce {address} on {self._where(interface)}: {exc}") from exc

    def close(self) -> None:
        for key in list(self._links):
            self._drop(key)

    # -- internals -------------------------------------------------------

    def _where(self, interface: str) -> str:
        if self.netns is None:
            return f"interface {interface!r}"
        return f"interface {interface!r} in network namespace {self.netns!r}"

    def _drop(self, key: tuple[str, int]) -> None:
        link = self._links.pop(key, None)
        if link is not None:
            link.sock.close()

    async def _link(self, interface: str, version: int) -> _Link:
        key = (interface, version)
        link = self._links.get(key)
        if link is not None:
            # The interface may have been deleted and created again since.
            try:
                if _ifindex(link.sock, interface) == link.ifindex:
                    return link
            except OSError:
                pass
            self._drop(key)
        opener = _open_packet if version == 4 else _open_icmp6
        try:
            sock, index = await asyncio.to_thread(_in_netns, self.netns, lambda: opener(interface))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise AnnounceError(f"{self._where(interface)} not found") from exc
            raise AnnounceError(f"cannot open a socket on {self._where(interface)}: {exc}") from exc
        link = _Link(sock, index)
        # Two concurrent first calls: keep the first socket, close the other.
        existing = self._links.setdefault(key, link)
        if existing is not link:
            sock.close()
        return existing
