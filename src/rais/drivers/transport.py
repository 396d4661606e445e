"""The UDP control channel of one service group (the real :class:`Transport`).

Two modes, chosen by ``peers``:

Multicast (``peers`` empty)
    One *receive* socket for the group, bound to ``(group, port)`` with
    ``SO_REUSEADDR`` and joined to the group on the interface of every control
    address of the group's family (``ip_mreqn`` by interface index for IPv4,
    ``IPV6_JOIN_GROUP`` for IPv6). ``IP_MULTICAST_ALL``/``IPV6_MULTICAST_ALL``
    are 0, so the socket only sees the groups it joined itself: without that,
    two sockets on one port each receive every group joined on the host. An
    IPv6 group of interface- or link-local scope (ff01::/16, ff02::/16 and the
    like) cannot be bound without a scope id, so that receive socket is bound
    to ``("::", port)`` instead and relies on ``IPV6_MULTICAST_ALL=0``; it also
    accepts unicast sent to that port, which is harmless (every datagram is
    authenticated by the core).

    One *send* socket per control address, bound to ``(control, 0)``, with
    ``IP_MULTICAST_IF`` (``ip_mreqn`` form) / ``IPV6_MULTICAST_IF`` set to that
    address's interface, the TTL/hop limit ``ttl`` and multicast loopback
    ``loop_back`` (off by default: a host does not hear itself; note that on
    ``lo`` itself every datagram is looped back whatever the setting). For
    IPv4 the kernel would already pick the interface of the bound source
    address; ``IP_MULTICAST_IF`` makes it explicit (and covers an unassigned
    127/8 source). ``ttl`` applies to multicast only.
    ``send(data, vias)`` sends one datagram to ``(group, port)`` on the send
    socket of each via.

    **Via semantics:** the receive socket is shared by all control networks
    and asyncio does not tell the arrival interface, so every multicast
    datagram is delivered with ``via`` = the index of the first control
    address of the group's family (0 in every ordinary configuration). A host
    on two control networks therefore receives each datagram twice on the same
    via; the protocol core suppresses such duplicates.

Unicast (``peers`` given; networks without multicast, and the local demo on
127.0.0.X)
    One socket per control address, bound to ``(control, port)`` (no
    ``SO_REUSEADDR``: a second agent on the same address and port is a
    configuration error and fails at start). ``send(data, vias)`` sends to
    every peer, on ``port``, through the socket of each via, choosing only
    peers of that control address's family, and for IPv6 only peers of the
    same link-locality (a link-local peer is reached only from a link-local
    control address, on that address's interface). A datagram is delivered
    with ``via`` = the index of the control address whose socket received it.

Both modes: sending never blocks and never raises. ``send`` writes straight to
the non-blocking socket instead of through asyncio's write buffer, so a
datagram the kernel will not take right now (full socket buffer, no route) is
dropped and counted rather than queued: a stale heartbeat is worth nothing.
Datagrams over :data:`MAX_DATAGRAM` bytes are dropped on both sides and
counted. Counters (``self.counters``):

``sent``               datagrams handed to the kernel (one per destination)
``send_errors``        sendto failures (errno logged once per via and errno);
                       also vias outside the control addresses
``send_oversized``     datagrams not sent because they exceed MAX_DATAGRAM
``send_not_open``      send() before start() or after close()
``received``           datagrams delivered to the callback
``oversized_dropped``  received datagrams over MAX_DATAGRAM, not delivered
``receive_errors``     errors reported by a receiving socket
``callback_errors``    exceptions raised by the callback (logged)
``sockets_lost``       sockets closed other than by ``close()`` (``on_lost``)

Control addresses are mapped to interfaces by netlink (pyroute2): the
interface holding the address, or for an unassigned 127/8 address the
interface holding the loopback network (``lo``). The lookup is done only in
multicast mode and for IPv6 link-local addresses.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

from rais.base.ip import IP
from rais.core.wire import Steady
from rais.drivers import sockfilter
from rais.drivers.base import OnDatagram, OnLate, OnLost
from rais.drivers.ifindex import interface_indexes as interface_indexes
from rais.drivers.quiet import Quiet
from rais.drivers.receive import (
    MAX_DATAGRAM as MAX_DATAGRAM,
)
from rais.drivers.receive import (
    MEMBER_RCVBUF,
    STRANGER_RCVBUF,
    Reader,
)
from rais.drivers.udpsock import IP_MULTICAST_ALL as IP_MULTICAST_ALL
from rais.drivers.udpsock import IPV6_MULTICAST_ALL as IPV6_MULTICAST_ALL
from rais.drivers.udpsock import (
    SockAddr,
    bind_to,
    check_free,
    family_of,
    join,
    needs_scope,
    sockaddr,
    udp_socket,
)

log = logging.getLogger(__name__)


class UdpTransport:
    """One service group's control channel over UDP (see the module docstring)."""

    def __init__(
        self,
        control: tuple[IP, ...],
        group: IP,
        port: int,
        *,
        peers: tuple[IP, ...] = (),
        ttl: int = 1,
        loop_back: bool = False,
        steady: Callable[[bytes], Steady | None] | None = None,
    ) -> None:
        if not control:
            raise ValueError("at least one control address is needed")
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"bad port {port}")
        if not 1 <= ttl <= 255:
            raise ValueError(f"ttl must be 1..255, not {ttl}")
        if not peers and not group.is_multicast:
            raise ValueError(f"{group} is not a multicast address (and no unicast peers)")
        self.control = control
        self.group = group
        self.port = port
        self.peers = peers
        self.ttl = ttl
        self.loop_back = loop_back
        self.steady = steady
        """The steady part of a datagram (rais.core.wire.steady): with it and
        an ``on_late`` callback, datagrams that change nothing wait on a
        quiet socket (rais.drivers.quiet)."""
        self._quiets: dict[int, Quiet] = {}
        """By via: the quiet side of its receiving socket (rais.drivers.quiet)."""
        self.counters: collections.Counter[str] = collections.Counter()
        self._on_datagram: OnDatagram | None = None
        self._on_lost: OnLost | None = None
        self._sockets: list[socket.socket] = []
        self._readers: list[Reader] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._trusted: set[IP] = set()
        """Sources heard authentic (multicast mode): read from the member socket."""
        self._filtered: list[tuple[socket.socket, bool]] = []
        """(socket, accept): the sockets whose source filter follows ``_trusted``."""
        self._send_socks: dict[int, socket.socket] = {}
        self._destinations: dict[int, list[SockAddr]] = {}
        self._started = False
        self._closed = False
        self._logged: set[tuple[int, int | None]] = set()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def multicast(self) -> bool:
        return not self.peers

    # ------------------------------------------------------------- lifecycle

    async def start(
        self,
        on_datagram: OnDatagram,
        on_lost: OnLost | None = None,
        on_late: OnLate | None = None,
    ) -> None:
        """Open and bind every socket. A bind or join failure closes what was
        opened and raises OSError naming the address. ``on_lost`` is called once
        if a socket closes other than by ``close()``. ``on_late`` gets the
        datagrams read late, with their arrival time (see ``steady``)."""
        if self._started or self._closed:
            raise RuntimeError("UdpTransport.start() called twice or after close()")
        self._started = True
        self._on_datagram = on_datagram
        self._on_lost = on_lost
        self._on_late = on_late
        try:
            if self.multicast:
                await self._start_multicast()
            else:
                await self._start_unicast()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close every socket; idempotent."""
        self._closed = True
        loop = self._loop
        for reader in self._readers:
            if loop is not None and not reader.paused:
                with contextlib.suppress(RuntimeError, ValueError):  # its event loop closed
                    loop.remove_reader(reader.fd)
        for sock in self._sockets:
            sock.close()
        self._readers.clear()
        self._quiets.clear()
        self._filtered.clear()
        self._sockets.clear()
        self._send_socks.clear()
        self._destinations.clear()

    def _own(self, sock: socket.socket) -> socket.socket:
        self._sockets.append(sock)
        return sock

    def _read(self, sock: socket.socket, via: int, *, stranger: bool = False) -> None:
        """Read ``sock`` from the event loop; its datagrams arrive on ``via``."""
        loop = self._loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            rcvbuf = STRANGER_RCVBUF if stranger else MEMBER_RCVBUF
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        reader = Reader(self, sock, via, stranger)
        self._readers.append(reader)
        loop.add_reader(reader.fd, reader.ready)

    def clock(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def pause_reader(self, reader: Reader, seconds: float) -> None:
        loop = self._loop
        if loop is None or self._closed or reader.paused:
            return
        reader.paused = True
        loop.remove_reader(reader.fd)

        def resume() -> None:
            if not self._closed and reader in self._readers:
                reader.paused = False
                loop.add_reader(reader.fd, reader.ready)

        loop.call_later(max(0.0, seconds), resume)

    def _attach(
        self, sock: socket.socket, sources: set[IP], *, accept: bool, via: int = -1
    ) -> bool:
        """Keep (``accept``) or drop the datagrams of ``sources`` on ``sock``
        (those of the socket's family); a failure is counted and logged once,
        and the socket keeps the filter it had."""
        try:
            sockfilter.attach(sock, sockfilter.program(sources, sock.family, accept=accept))
        except (OSError, ValueError) as exc:
            self.counters["filter_errors"] += 1
            self._log_once(via, getattr(exc, "errno", None), f"cannot filter by source: {exc}")
            return False
        return True

    def _filter(self, sock: socket.socket, accept: bool) -> bool:
        """Filter ``sock`` by the trusted sources from now on (see ``trust``)."""
        if not self._attach(sock, self._trusted, accept=accept):
            return False
        self._filtered.append((sock, accept))
        return True

    async def _start_unicast(self) -> None:
        scoped = any(needs_scope(a) for a in (*self.control, *self.peers))
        indexes = await interface_indexes(a for a in self.control if a.version == 6 and scoped)
        for via, address in enumerate(self.control):
            scope = indexes.get(address, 0)
            sock = self._own(udp_socket(family_of(address)))
            where = sockaddr(address, self.port, scope)
            quiet = self.steady is not None and self._on_late is not None
            if quiet:
                # Its quiet socket shares the port (SO_REUSEPORT); nobody else may.
                check_free(where, f"control address {via}")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            bind_to(sock, where, f"control address {via}")
            self._send_socks[via] = sock
            self._destinations[via] = [
                sockaddr(peer, self.port, scope)
                for peer in self.peers
                if peer.version == address.version and needs_scope(peer) == needs_scope(address)
            ]
            if self._destinations[via]:
                # Only the configured peers are heard: a flood from anywhere
                # else is dropped by the kernel.
                self._attach(sock, set(self.peers), accept=True, via=via)
            self._read(sock, via)
            if quiet and self._destinations[via]:
                self._start_quiet(sock, via, None)

    async def _start_multicast(self) -> None:
        group, port = self.group, self.port
        family = family_of(group)
        mine = [(via, a) for via, a in enumerate(self.control) if a.version == group.version]
        if not mine:
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"no control address of the IPv{group.version} family of group {group}",
            )
        indexes = await interface_indexes(a for _, a in mine)

        # The receive socket: bound to the group, joined on every control interface.
        recv = self._own(udp_socket(family))
        recv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if needs_scope(group):
            bind_to(recv, ("::", port, 0, 0), f"receive (group {group})")
        else:
            bind_to(recv, sockaddr(group, port), "multicast receive")
        joined = list(dict.fromkeys(indexes[a] for _, a in mine))
        join(self.group, recv, joined)
        self._read(recv, mine[0][0])
        if self._filter(recv, True):
            self._start_strangers(recv, mine[0][0], joined)
        if self._filtered and self.steady is not None and self._on_late is not None:
            self._start_quiet(recv, mine[0][0], joined)

        # One send socket per control address, sending out of its interface.
        for via, address in mine:
            self._send_socket(via, address, indexes[address])

    def _start_strangers(self, recv: socket.socket, via: int, joined: list[int]) -> None:
        family = recv.family
        # A second receive socket on the group hears the sources not heard
        # authentic yet (new hosts), at a bounded rate (STRANGER_BATCH); the
        # first one hears only the trusted sources, so a flood from elsewhere
        # never fills its queue or wakes the agent.
        strangers = self._own(udp_socket(family))
        strangers.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind_to(strangers, recv.getsockname(), "multicast receive (new sources)")
        join(self.group, strangers, joined)
        if self._filter(strangers, False):
            self._read(strangers, via, stranger=True)
        else:  # the member socket hears everything, as without filters
            sockfilter.detach(recv)
            self._filtered.clear()

    def _start_quiet(self, recv: socket.socket, via: int, joined: list[int] | None) -> None:
        """The quiet socket beside ``recv``: joined to the group on ``joined``
        (multicast), or sharing ``recv``'s port (unicast, ``joined`` None)."""
        reuseport = joined is None
        sock = self._own(udp_socket(recv.family))
        option = socket.SO_REUSEPORT if reuseport else socket.SO_REUSEADDR
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
        bind_to(sock, recv.getsockname(), f"control address {via} (steady datagrams)")
        quiet = Quiet(self, sock, recv, via, self._late, reuseport=reuseport)
        if quiet.start():
            if joined is not None:
                join(self.group, sock, joined)
            self._quiets[via] = quiet

    def trusted(self) -> set[IP]:
        return self._trusted if self.multicast else set(self.peers)

    def refilter(self, sock: socket.socket) -> bool:
        return self._attach(sock, self._trusted, accept=True)

    def filter_failed(self, exc: OSError) -> None:
        self.counters["filter_errors"] += 1
        self._log_once(-1, exc.errno, f"cannot filter steady datagrams: {exc}")

    def catch_up(self) -> None:
        """Deliver the datagrams waiting on the quiet socket, if any (call
        before anything else when the agent wakes)."""
        for quiet in self._quiets.values():
            if self._closed:
                return
            self.counters["received_late"] += quiet.catch_up(MAX_DATAGRAM)

    def _late(self, data: bytes, via: int, at: float) -> None:
        callback = self._on_late
        if callback is None or self._closed:
            return
        self.counters["received"] += 1
        try:
            callback(data, via, at)
        except Exception:
            self.counters["callback_errors"] += 1
            log.exception("control datagram callback failed")

    def _send_socket(self, via: int, address: IP, index: int) -> None:
        group, port, family = self.group, self.port, family_of(self.group)
        sock = self._own(udp_socket(family))
        bind_to(sock, sockaddr(address, 0, index), f"send (control address {via})")
        loop = 1 if self.loop_back else 0
        if group.version == 4:
            mreqn = struct.pack("4s4si", group.packed, bytes(4), index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, loop)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, self.ttl)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, loop)
        self._send_socks[via] = sock
        self._destinations[via] = [sockaddr(group, port, index)]

    # ------------------------------------------------------------- datagrams

    def send(self, data: bytes, vias: tuple[int, ...]) -> None:
        """Send ``data`` on the control addresses ``vias``; never blocks or raises."""
        if not self._started or self._closed:
            self.counters["send_not_open"] += 1
            return
        if len(data) > MAX_DATAGRAM:
            self.counters["send_oversized"] += 1
            return
        for via in vias:
            sock = self._send_socks.get(via)
            if sock is None:
                if not 0 <= via < len(self.control):
                    self.counters["send_errors"] += 1
                    self._log_once(via, None, f"no control address with index {via}")
                # else: an address of another family than the group: nothing to do.
                continue
            for destination in self._destinations[via]:
                try:
                    sock.sendto(data, destination)
                except OSError as exc:
                    self.counters["send_errors"] += 1
                    self._log_once(via, exc.errno, f"sending to {destination[0]}: {exc}")
                else:
                    self.counters["sent"] += 1

    def _log_once(self, via: int, err: int | None, message: str) -> None:
        if (via, err) not in self._logged:
            self._logged.add((via, err))
            log.warning("control via %d: %s (further such errors only counted)", via, message)

    def lost(self, via: int | None, exc: Exception | None) -> None:
        if self._closed:
            return
        self.counters["sockets_lost"] += 1
        callback, self._on_lost = self._on_lost, None
        if callback is not None:
            which = "a send-only socket" if via is None else f"the socket of via {via}"
            callback(f"{which} closed" + (f": {exc}" if exc else ""))

    def deliver(self, data: bytes, via: int, source: str | None = None) -> None:
        """Hand a datagram to the callback; ``source``: it came from a source
        not trusted yet, which is trusted from now on if the callback says the
        datagram was authentic."""
        if len(data) > MAX_DATAGRAM:
            self.counters["oversized_dropped"] += 1
            return
        callback = self._on_datagram
        if callback is None or self._closed:
            return
        self.counters["received"] += 1
        try:
            authentic = callback(data, via)
        except Exception:
            self.counters["callback_errors"] += 1
            log.exception("control datagram callback failed")
            return
        if not authentic:
            return
        if source is not None:
            self.trust(ipaddress.ip_address(source.split("%")[0]))
        quiet = self._quiets.get(via)
        if quiet is not None and self.steady is not None:
            quiet.seen(self.steady(data))

    def trust(self, source: IP) -> None:
        """Hear ``source`` on the member socket from now on (multicast mode)."""
        if source in self._trusted or not self._filtered:
            return
        self._trusted.add(source)
        self.counters["sources_trusted"] += 1
        # First the member socket lets it in, then the stranger socket lets
        # it go (a datagram in between arrives twice: the core drops the copy).
        for sock, accept in sorted(self._filtered, key=lambda f: not f[1]):
            quiet = next((q for q in self._quiets.values() if q.member is sock), None)
            if quiet is not None:
                quiet.attach(sock, quiet=False)
            else:
                self._attach(sock, self._trusted, accept=accept)
