"""An in-memory network of transports for agent unit tests.

::

    net = FakeNetwork()
    t1 = net.transport(host1)            # one control network (via 0)
    t2 = net.transport(host2, vias=2)    # two control networks (vias 0 and 1)

Every :class:`FakeTransport` implements the :class:`~rais.drivers.base.Transport`
protocol. ``send(data, vias)`` delivers one copy per via to every *other*
started, open transport on the network that has that via (control network
``via`` is the same network on every host, as with the real multicast
transport), and never to the sender. Delivery is asynchronous like real UDP:
scheduled with ``loop.call_soon`` (or ``call_later(delay)``) on the sender's
event loop; a receiver closed before that loses the datagram, as a restarted
host loses what was in flight.

Faults: ``partition(side)`` cuts the hosts of ``side`` off from all others in
both directions (on every network, or on one with ``via=``); cuts add up.
``drop_all_from(host)`` silences a host's sends (it still receives).
``heal()`` undoes all of it. Reachability is decided at send time.

``net.sent`` records every send (sender, data, vias, and the (receiver, via)
pairs it was scheduled for); ``net.errors`` collects exceptions raised by a
receive callback (they are also logged) so a test can assert there were none.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from rais.drivers.base import OnDatagram, OnLate, OnLost

log = logging.getLogger(__name__)

MAX_DATAGRAM = 1500
"""As in the real transport: larger datagrams are not sent, and counted."""


@dataclass(frozen=True, slots=True)
class SentDatagram:
    sender: Hashable
    data: bytes
    vias: tuple[int, ...]
    receivers: tuple[tuple[Hashable, int], ...]
    """(receiver host, via) for every copy scheduled for delivery."""


class FakeNetwork:
    """Connects :class:`FakeTransport` objects; see the module docstring."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        """Seconds from send to delivery; 0: on the next loop iteration."""
        self.transports: dict[Hashable, FakeTransport] = {}
        self.sent: list[SentDatagram] = []
        self.errors: list[BaseException] = []
        self._cuts: list[tuple[frozenset[Hashable], int | None]] = []
        self._silenced: set[Hashable] = set()

    def transport(self, host: Hashable, *, vias: int = 1) -> FakeTransport:
        """A new transport for ``host`` with ``vias`` control networks. A host
        whose previous transport is closed may get a new one (a restart)."""
        old = self.transports.get(host)
        if old is not None and not old.closed:
            raise ValueError(f"host {host!r} already has an open transport")
        if vias < 1:
            raise ValueError("a transport needs at least one via")
        new = FakeTransport(self, host, vias)
        self.transports[host] = new
        return new

    # ---------------------------------------------------------------- faults

    def partition(self, side: Iterable[Hashable], *, via: int | None = None) -> None:
        """Cut the hosts in ``side`` off from every host not in it, both ways;
        on all control networks, or only on network ``via``."""
        self._cuts.append((frozenset(side), via))

    def drop_all_from(self, host: Hashable) -> None:
        """Lose every datagram ``host`` sends from now on (until heal())."""
        self._silenced.add(host)

    def heal(self) -> None:
        """Remove every partition and every drop_all_from()."""
        self._cuts.clear()
        self._silenced.clear()

    def reachable(self, sender: Hashable, receiver: Hashable, via: int) -> bool:
        if sender in self._silenced:
            return False
        for side, cut_via in self._cuts:
            if cut_via is not None and cut_via != via:
                continue
            if (sender in side) != (receiver in side):
                return False
        return True

    # -------------------------------------------------------------- delivery

    def _send(self, src: FakeTransport, data: bytes, vias: tuple[int, ...]) -> None:
        loop = src.loop
        assert loop is not None
        receivers: list[tuple[Hashable, int]] = []
        for via in vias:
            for dst in self.transports.values():
                if dst is src or not dst.open or via >= dst.vias:
                    continue
                if not self.reachable(src.host, dst.host, via):
                    continue
                receivers.append((dst.host, via))
                if self.delay > 0:
                    loop.call_later(self.delay, dst._receive, data, via)
                else:
                    loop.call_soon(dst._receive, data, via)
        self.sent.append(SentDatagram(src.host, data, vias, tuple(receivers)))


class FakeTransport:
    """One host's transport on a :class:`FakeNetwork` (make it with
    ``net.transport(host)``). Counters as the real one: ``sent`` (one per
    via), ``received``, ``send_errors`` (a via the host does not have),
    ``send_oversized``, ``send_not_open``, ``callback_errors``."""

    def __init__(self, network: FakeNetwork, host: Hashable, vias: int) -> None:
        self.network = network
        self.host = host
        self.vias = vias
        self.counters: collections.Counter[str] = collections.Counter()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self._on_datagram: OnDatagram | None = None
        self._on_lost: OnLost | None = None
        self._on_late: OnLate | None = None
        self.hold = False
        """Test control: keep every datagram received until ``catch_up`` and
        deliver it late, with its arrival time (as the quiet socket of
        rais.drivers.quiet does with those that change nothing)."""
        self._held: list[tuple[bytes, int, float]] = []

    @property
    def open(self) -> bool:
        return self._on_datagram is not None and not self.closed

    async def start(
        self,
        on_datagram: OnDatagram,
        on_lost: OnLost | None = None,
        on_late: OnLate | None = None,
    ) -> None:
        if self._on_datagram is not None or self.closed:
            raise RuntimeError("FakeTransport.start() called twice or after close()")
        self.loop = asyncio.get_running_loop()
        self._on_datagram = on_datagram
        self._on_lost = on_lost
        self._on_late = on_late

    def catch_up(self) -> None:
        held, self._held = self._held, []
        callback = self._on_late
        for data, via, at in held:
            if callback is None or self.closed:
                return
            self.counters["received"] += 1  # as the real one counts them
            self.counters["received_late"] += 1
            callback(data, via, at)

    def lose(self, reason: str = "socket closed") -> None:
        """Test control: the transport loses its sockets (as if closed under it):
        nothing more is received or sent, and ``on_lost`` hears of it once."""
        self.closed = True
        callback, self._on_lost = self._on_lost, None
        if callback is not None:
            callback(reason)

    def send(self, data: bytes, vias: tuple[int, ...]) -> None:
        if not self.open:
            self.counters["send_not_open"] += 1
            return
        if len(data) > MAX_DATAGRAM:
            self.counters["send_oversized"] += 1
            return
        good = tuple(v for v in vias if 0 <= v < self.vias)
        self.counters["send_errors"] += len(vias) - len(good)
        self.counters["sent"] += len(good)
        self.network._send(self, bytes(data), good)

    def close(self) -> None:
        self.closed = True

    def _receive(self, data: bytes, via: int) -> None:
        callback = self._on_datagram
        if callback is None or self.closed:
            return
        if self.hold and self._on_late is not None and self.loop is not None:
            self._held.append((data, via, self.loop.time()))
            return
        self.counters["received"] += 1
        try:
            callback(data, via)
        except Exception as exc:
            self.counters["callback_errors"] += 1
            self.network.errors.append(exc)
            log.exception("fake transport %r: datagram callback failed", self.host)
