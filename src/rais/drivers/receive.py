"""Reading the control sockets of a transport (rais.drivers.transport) from
the event loop: ``add_reader`` on each socket, every datagram queued read in
one wake-up (up to a batch), no asyncio transport or protocol objects on the
way. A socket of new sources is read at a bounded rate."""

from __future__ import annotations

import errno
import logging
import socket
from collections import Counter
from typing import Protocol

log = logging.getLogger("rais.drivers.transport")

MAX_DATAGRAM = 1500
"""Largest datagram delivered (one more byte is read, to tell oversized ones)."""


class Owner(Protocol):
    """What a reader needs of its transport."""

    counters: Counter[str]

    @property
    def closed(self) -> bool: ...

    def deliver(self, data: bytes, via: int, source: str | None = None) -> None: ...

    def lost(self, via: int | None, exc: Exception | None) -> None: ...

    def clock(self) -> float: ...

    def pause_reader(self, reader: Reader, seconds: float) -> None: ...

    def catch_up(self) -> None: ...


READ_BATCH = 64
"""Datagrams read from one socket per wake-up at most: a busy socket cannot
hold the event loop (timers run between batches)."""

STRANGER_BATCH = 32
STRANGER_PAUSE = 0.05
"""A socket of datagrams from sources not yet heard (multicast mode) is read
at most ``STRANGER_BATCH`` datagrams per ``STRANGER_PAUSE`` s: a flood from a
host without the key costs a bounded CPU, and what it sends beyond that is
dropped by the kernel when the socket's small queue is full."""

STRANGER_RCVBUF = 64 * 1024
MEMBER_RCVBUF = 1024 * 1024

_RETRY = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class Reader:
    """Reads one socket from the event loop (``add_reader``), in batches."""

    __slots__ = ("fd", "owner", "paused", "sock", "stranger", "used", "via", "window")

    def __init__(self, owner: Owner, sock: socket.socket, via: int, stranger: bool) -> None:
        self.owner = owner
        self.sock = sock
        self.via = via
        self.stranger = stranger
        self.fd = sock.fileno()
        self.paused = False
        self.window = -STRANGER_PAUSE
        """When the current window of a stranger socket's budget began."""
        self.used = 0
        """Datagrams read from it in that window."""

    def ready(self) -> None:
        owner, sock, via = self.owner, self.sock, self.via
        stranger = self.stranger
        if not stranger:
            owner.catch_up()  # what arrived before it, first (rais.drivers.quiet)
        budget = READ_BATCH
        if stranger:
            # At most STRANGER_BATCH per STRANGER_PAUSE, however they arrive.
            now = owner.clock()
            if now - self.window >= STRANGER_PAUSE:
                self.window, self.used = now, 0
            budget = STRANGER_BATCH - self.used
            if budget <= 0:
                owner.pause_reader(self, self.window + STRANGER_PAUSE - now)
                return
        for _ in range(budget):
            try:
                if stranger:
                    data, source = sock.recvfrom(MAX_DATAGRAM + 1)
                else:
                    data, source = sock.recv(MAX_DATAGRAM + 1), None
            except OSError as exc:
                if exc.errno in _RETRY:
                    return
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    owner.lost(self.via, exc)
                    return
                owner.counters["receive_errors"] += 1
                log.debug("control socket error: %s", exc)
                continue
            if stranger:
                self.used += 1
            owner.deliver(data, via, None if source is None else source[0])
            if owner.closed:
                return
        if stranger:
            # Budget spent: come back when the window ends; the kernel drops
            # what overflows the socket's queue meanwhile.
            owner.pause_reader(self, self.window + STRANGER_PAUSE - owner.clock())
