"""Refreshing an address's kernel lifetime without waiting (rais.drivers.netlink).

The dead man's switch re-adds every held address long before its lifetime
runs out. Through pyroute2 that is a request, an awaited acknowledgement and
its parsing: a wake-up of its own and hundreds of microseconds of CPU on a
cold cache. Here it is one ``RTM_NEWADDR`` (``NLM_F_REPLACE | NLM_F_CREATE``,
``IFA_CACHEINFO`` with the new lifetimes) written to a raw rtnetlink socket
without ``NLM_F_ACK``: the kernel applies it inside the ``send`` call and
answers only if it failed. Those answers are read when they come (no wake-up
otherwise) and mark the address, so the next refresh of it goes the slow way
(``add``), which raises a proper error.

Only for the caller's own network namespace; the message for each (interface
index, address, prefix length, lifetime) is built once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

from rais.base.ip import IP

log = logging.getLogger("rais.drivers.netlink")

RTM_NEWADDR = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x001
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_CACHEINFO = 6
IFA_F_NODAD = 0x02

_NLMSG = struct.Struct("=IHHII")  # length, type, flags, seq, pid
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTA = struct.Struct("=HH")
_CACHEINFO = struct.Struct("=IIII")
_ERROR = struct.Struct("=i")


def _attr(kind: int, payload: bytes) -> bytes:
    data = _RTA.pack(_RTA.size + len(payload), kind) + payload
    return data + bytes(-len(data) % 4)


def message(index: int, address: IP, prefixlen: int, lifetime: int, seq: int) -> bytes:
    """The ``RTM_NEWADDR`` that adds or refreshes ``address/prefixlen`` on the
    interface ``index`` with ``lifetime`` seconds (valid and preferred)."""
    v4 = address.version == 4
    body = _IFADDR.pack(
        socket.AF_INET if v4 else socket.AF_INET6, prefixlen, 0 if v4 else IFA_F_NODAD, 0, index
    )
    body += _attr(IFA_LOCAL, address.packed) if v4 else b""
    body += _attr(IFA_ADDRESS, address.packed)
    body += _attr(IFA_CACHEINFO, _CACHEINFO.pack(lifetime, lifetime, 0, 0))
    flags = NLM_F_REQUEST | NLM_F_REPLACE | NLM_F_CREATE
    return _NLMSG.pack(_NLMSG.size + len(body), RTM_NEWADDR, flags, seq, 0) + body


class FastRefresh:
    """One raw rtnetlink socket for refreshes (see the module docstring)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._indexes: dict[str, int] = {}
        self._messages: dict[tuple[int, IP, int, int], bytes] = {}
        self._seqs: dict[int, IP] = {}
        self.failed: set[IP] = set()
        """Addresses whose last fast refresh the kernel refused."""

    def refresh(self, interface: str, address: IP, prefixlen: int, lifetime: int) -> bool:
        """Send the refresh; False if it could not be sent (or the last one of
        this address failed): use the slow way."""
        if address in self.failed:
            self.failed.discard(address)
            return False
        try:
            sock = self._socket()
            index = self._indexes.get(interface)
            if index is None:
                index = self._indexes[interface] = socket.if_nametoindex(interface)
            key = (index, address, prefixlen, lifetime)
            data = self._messages.get(key)
            if data is None:
                if len(self._messages) > 256:
                    self._messages.clear()
                    self._seqs.clear()
                seq = len(self._messages) + 1
                data = self._messages[key] = message(index, address, prefixlen, lifetime, seq)
                self._seqs[seq] = address
            sock.send(data)
        except OSError as exc:
            log.debug("fast refresh of %s: %s", address, exc)
            self._indexes.pop(interface, None)
            return False
        return True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None:
                with contextlib.suppress(RuntimeError, ValueError, OSError):
                    self._loop.remove_reader(sock.fileno())
            sock.close()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            try:
                sock.setblocking(False)
                sock.bind((0, 0))
                self._loop = asyncio.get_running_loop()
                self._loop.add_reader(sock.fileno(), self._replies)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def _replies(self) -> None:
        """Error answers (the only ones asked for)."""
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("fast refresh socket: %s", exc)
                self.close()
                return
            pos = 0
            while pos + _NLMSG.size <= len(data):
                length, kind, _, seq, _ = _NLMSG.unpack_from(data, pos)
                if kind == NLMSG_ERROR and length >= _NLMSG.size + _ERROR.size:
                    (err,) = _ERROR.unpack_from(data, pos + _NLMSG.size)
                    address = self._seqs.get(seq)
                    if err and address is not None:
                        self.failed.add(address)
                        log.debug("fast refresh of %s refused: errno %d", address, -err)
                pos += max(length + (-length % 4), _NLMSG.size)
