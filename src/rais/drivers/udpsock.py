"""Opening the UDP sockets of a transport (rais.drivers.transport): address
families, IPv6 scopes, binding with a readable error, joining a group."""

from __future__ import annotations

import socket
import struct

from rais.base.ip import IP

IP_MULTICAST_ALL = 49
"""Linux ``IP_MULTICAST_ALL`` (Python 3.11 has no constant)."""
IPV6_MULTICAST_ALL = 29
"""Linux ``IPV6_MULTICAST_ALL`` (since 4.20; Python 3.11 has no constant)."""

SockAddr = tuple[str, int] | tuple[str, int, int, int]


def family_of(address: IP) -> socket.AddressFamily:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def needs_scope(address: IP) -> bool:
    """An IPv6 address that means nothing without an interface (link-local
    unicast; interface- or link-local scope multicast)."""
    if address.version != 6:
        return False
    if address.is_multicast:
        return (address.packed[1] & 0x0F) <= 2
    return address.is_link_local


def sockaddr(address: IP, port: int, scope: int = 0) -> SockAddr:
    if address.version == 4:
        return (str(address), port)
    return (str(address), port, 0, scope if needs_scope(address) else 0)


def udp_socket(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_to(sock: socket.socket, address: SockAddr, what: str) -> None:
    try:
        sock.bind(address)
    except OSError as exc:
        host, port = address[0], address[1]
        shown = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        raise OSError(
            exc.errno, f"cannot bind the {what} UDP socket to {shown}: {exc.strerror or exc}"
        ) from exc


def join(group: IP, sock: socket.socket, joined: list[int]) -> None:
    """Join the group on the interfaces ``joined``, with no other groups heard."""
    if group.version == 4:
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
    for index in joined:
        try:
            if group.version == 4:
                mreqn = struct.pack("4s4si", group.packed, bytes(4), index)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            else:
                mreq = group.packed + struct.pack("@I", index)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot join multicast group {group} on interface index {index}: "
                f"{exc.strerror or exc}",
            ) from exc


def check_free(address: SockAddr, what: str) -> None:
    """Raise OSError (as ``bind_to``) if a socket already has ``address``: a
    socket bound with ``SO_REUSEPORT`` would share it with one of the same
    user instead of failing."""
    family = socket.AF_INET if len(address) == 2 else socket.AF_INET6
    probe = udp_socket(family)
    try:
        bind_to(probe, address, what)
    finally:
        probe.close()
