"""Datagrams that change nothing, read without waking the agent
(rais.drivers.transport, multicast and unicast).

In steady state a member's info is the same datagram every heartbeat but for
its sequence number, the ages in its PEERS and its HMAC
(rais.core.wire.steady). Once two datagrams in a row from a sender are the
same in that sense, its *pattern* goes into the kernel's socket filters: a
datagram equal to it lands on a *quiet* socket that the event loop does not
watch, every other one on the member socket, which wakes the agent at once.
The quiet socket is read whenever the agent wakes anyway (its heartbeat, any
other datagram): ``catch_up``, before anything else is done, each datagram
with the time it arrived (the kernel's ``SO_TIMESTAMPNS``), so that the core
sees the same arrivals at the same times, only later. What changes (a new
table, a command, a host restarting) is never put off; what does not costs no
wake-up. Every datagram is still authenticated by the core: a pattern only
says which socket a datagram waits on.

Changing the filters never loses a datagram. Multicast: the member socket
first takes every trusted source, then the quiet socket gets its new program,
then the member socket (a datagram in between may arrive twice: the core drops
the copy). Unicast: both sockets share the port, and one ``SO_REUSEPORT``
program picks the socket of each datagram, replaced in one step.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from rais.base.ip import IP
from rais.core.wire import Steady
from rais.drivers import sockfilter
from rais.drivers.base import OnLate

log = logging.getLogger("rais.drivers.transport")

SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)

QUIET_BATCH = 512
"""Datagrams read from the quiet socket per catch-up at most."""
QUIET_RCVBUF = 256 * 1024
MAX_PATTERNS = 64
"""Senders with a pattern at most (the oldest one goes first)."""
CHANGES_PER_SECOND = 5.0
CHANGES_BURST = 10
"""Filter changes per second at most, on average, and at once: the kernel
compiles each program anew (about 0.8 µs an instruction here)."""
STEADY_INSNS = 1024
"""Instructions of a steady program at most (about nine senders of a
224-byte info). The kernel charges a socket's filter to its option memory
(``net.core.optmem_max``, 128 KiB here) and holds the old one while a new one
is attached: here one of 1,500 instructions could not be replaced at all."""


class Owner(Protocol):
    """What the quiet side needs of its transport."""

    counters: Counter[str]

    def clock(self) -> float: ...

    def lost(self, via: int | None, exc: Exception | None) -> None: ...

    def trusted(self) -> set[IP]: ...

    def refilter(self, sock: socket.socket) -> bool:
        """Give ``sock`` the plain trusted-sources filter (True: done)."""
        ...

    def filter_failed(self, exc: OSError) -> None: ...


class Patterns:
    """The senders' patterns (see the module docstring); ``seen`` says when
    the filters must change."""

    __slots__ = ("_candidates", "_tokens", "_updated", "installed")

    def __init__(self) -> None:
        self._tokens = float(CHANGES_BURST)
        self._updated = 0.0
        self._candidates: dict[bytes, Steady] = {}
        self.installed: dict[bytes, Steady] = {}
        """By sender, oldest first."""

    def seen(self, steady: Steady | None, now: float) -> bool:
        """An authentic datagram woke the agent at ``now`` (its steady part, if
        it has one); True if the patterns changed."""
        if steady is None:
            return False
        sender = steady.sender
        if self._candidates.get(sender) != steady:
            self._candidates[sender] = steady
            return False
        if self.installed.get(sender) == steady:
            return False
        # While the group churns (a start, a failover), at most so many
        # filter changes: what is left out is read at once, as without them.
        tokens = min(CHANGES_BURST, self._tokens + (now - self._updated) * CHANGES_PER_SECOND)
        self._updated = now
        if tokens < 1:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1
        self.installed.pop(sender, None)
        self.installed[sender] = steady
        while len(self.installed) > MAX_PATTERNS:
            del self.installed[next(iter(self.installed))]
        return True

    def newest_first(self) -> list[Steady]:
        return list(reversed(self.installed.values()))


class Quiet:
    """The quiet socket of a transport and the patterns that fill it; the
    member socket is the one that wakes the agent (see the module docstring)."""

    __slots__ = (
        "_blocks",
        "_on_late",
        "_wall",
        "member",
        "owner",
        "patterns",
        "reuseport",
        "sock",
        "via",
    )

    def __init__(
        self,
        owner: Owner,
        sock: socket.socket,
        member: socket.socket,
        via: int,
        on_late: OnLate,
        wall: Callable[[], float] = time.time,
        *,
        reuseport: bool = False,
    ) -> None:
        self.owner = owner
        self.reuseport = reuseport
        """Unicast: both sockets share the port, and one program of their
        ``SO_REUSEPORT`` group picks the socket of each datagram (no filter
        change in steps: it is one program)."""
        self.sock = sock
        self.member = member
        self.via = via
        self.patterns = Patterns()
        self._blocks: dict[tuple[Steady, int], bytes] = {}
        """Each pattern's piece of program, by pattern and return value."""
        self._on_late = on_late
        self._wall = wall

    def start(self) -> bool:
        """Filter the quiet socket (before it joins the group); False if the
        kernel refuses (the member socket then goes on hearing everything)."""
        sock = self.sock
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, QUIET_RCVBUF)
        return self.attach(self.member if self.reuseport else sock, quiet=True)

    def attach(self, sock: socket.socket, *, quiet: bool) -> bool:
        """Give ``sock`` the patterns' program: the quiet socket keeps the
        trusted sources' datagrams that match one, the member socket the
        others. Patterns that do not fit in one program are left out (the
        oldest)."""
        keep = sockfilter.KEEP
        match = 1 if self.reuseport else keep if quiet else 0
        base = 0 if self.reuseport else 8
        blocks, cache = [], self._blocks
        for steady in self.patterns.newest_first():
            block = cache.get((steady, match))
            if block is None:
                pattern = (steady.length, steady.ranges)
                block = cache[(steady, match)] = sockfilter.pattern_block(
                    pattern, base=base, match=match
                )
            blocks.append(block)
        prog = sockfilter.steady_program(
            self.owner.trusted(),
            sock.family,
            blocks,
            other=0 if quiet else keep,
            limit=STEADY_INSNS,
        )
        try:
            sockfilter.attach(sock, prog, reuseport=self.reuseport)
        except OSError as exc:
            self.owner.filter_failed(exc)
            return False
        return True

    def seen(self, steady: Steady | None) -> None:
        """An authentic datagram was read at once (its steady part): if that
        sets a pattern, move the filters without losing a datagram."""
        if not self.patterns.seen(steady, self.owner.clock()):
            return
        installed = self.patterns.installed.values()
        for key in [k for k in self._blocks if k[0] not in installed]:
            del self._blocks[key]
        self.owner.counters["steady_patterns"] += 1
        if self.reuseport:
            self.attach(self.member, quiet=True)
            return
        self.owner.refilter(self.member)
        if self.attach(self.sock, quiet=True):
            self.attach(self.member, quiet=False)

    def catch_up(self, max_size: int) -> int:
        """Deliver what waits on the quiet socket; returns how many."""
        sock, via, on_late = self.sock, self.via, self._on_late
        now = self.owner.clock()
        offset = now - self._wall()
        count = 0
        for _ in range(QUIET_BATCH):
            try:
                data, ancillary, _, _ = sock.recvmsg(max_size + 1, _ANCILLARY)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    self.owner.lost(via, exc)
                    break
                if exc.errno == errno.EINTR:
                    continue
                log.debug("quiet control socket error: %s", exc)
                continue
            at = now
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    at = min(now, sec + nsec * 1e-9 + offset)
            count += 1
            if len(data) <= max_size:
                on_late(data, via, at)
        return count
