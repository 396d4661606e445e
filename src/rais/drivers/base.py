"""The interfaces between the agent and the outside world.

Drivers feed inputs and carry out effects; they make no protocol decisions.
Addresses are ``ipaddress`` objects here (the core's raw-bytes ``Addr`` is
converted at the group runner).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from rais.base.ip import IP

OnDatagram = Callable[[bytes, int], bool | None]
"""Called with each datagram and its via; returns whether it was authentic
(the transport trusts its source from then on), None if it cannot tell."""
"""Called with (datagram, index of the control address it arrived on)."""

OnLate = Callable[[bytes, int, float], bool | None]
"""Called with a datagram read after it arrived, its via and when it arrived
(loop time): one that changed nothing, read when the agent woke for something
else (rais.drivers.quiet)."""

OnLost = Callable[[str], None]
"""Called once, with the reason, when the transport can no longer receive (a
socket closed under it): the group can no longer hear its members."""


class Transport(Protocol):
    """One service group's control channel on every control address of the host."""

    async def start(
        self,
        on_datagram: OnDatagram,
        on_lost: OnLost | None = None,
        on_late: OnLate | None = None,
    ) -> None:
        """Open the sockets and start delivering datagrams to ``on_datagram``;
        ``on_lost`` hears of a socket lost after that; ``on_late`` of datagrams
        that waited for ``catch_up`` (a transport may deliver every one at once)."""

    def catch_up(self) -> None:
        """Deliver now every datagram that arrived and waits (``on_late``);
        called first when the agent wakes for anything else."""

    def send(self, data: bytes, vias: tuple[int, ...]) -> None:
        """Send one datagram on the control addresses with these indexes; never blocks.
        Errors are counted, not raised."""

    def close(self) -> None: ...

    @property
    def counters(self) -> Mapping[str, int]:
        """What happened so far, by name (sent, received, send_errors, ...);
        the status and metrics show them as ``transport_NAME``."""
        ...


class Addresses(Protocol):
    """Service addresses on interfaces (netlink). Every call is idempotent:
    adding a present address or removing an absent one succeeds."""

    async def prepare(self, interface: str) -> None:
        """Make the interface safe for moving addresses: with IPv4, removing the
        first address of a subnet must not remove the others in it
        (``promote_secondaries``). Raises ``AddressError`` if it cannot."""
        ...

    async def add(
        self, interface: str, address: IP, prefixlen: int, lifetime: int | None = None
    ) -> None:
        """Add (or, with ``lifetime`` in whole seconds, add or refresh) an address
        that the kernel removes by itself when the lifetime runs out."""
        ...

    def refresh_now(self, interface: str, address: IP, prefixlen: int, lifetime: int) -> bool:
        """Add or refresh with ``lifetime`` at once, in the call, without
        waiting for an answer; False if that is not possible (or the last such
        refresh of ``address`` failed): use ``add``."""
        ...

    async def remove(self, interface: str, address: IP, prefixlen: int) -> None: ...

    async def present(self, interface: str) -> list[tuple[IP, int]]:
        """Every address on the interface, with its prefix length."""
        ...

    def close(self) -> None: ...


class Announcer(Protocol):
    """Tells the link that this host now answers for an address: gratuitous ARP
    (request and reply form) for IPv4, unsolicited neighbour advertisement with
    the Override flag for IPv6. One call sends one burst."""

    async def announce(self, interface: str, address: IP) -> None: ...

    def close(self) -> None: ...


class Scripts(Protocol):
    """Runs the acquire and release scripts."""

    async def run(self, script: str | None, env: dict[str, str]) -> tuple[bool, str]:
        """Run ``script`` (None: nothing to run, success) with ``env`` added to
        the environment; report (ok, reason). Never raises."""
        ...


OnLink = Callable[[bool, str], None]
"""Called with (carrier up, reason), e.g. (False, "eth0: no carrier")."""


class Links(Protocol):
    """The carrier of this host's interfaces (issue 13, link tracking): one
    watcher for the whole agent, shared by every group on an interface."""

    async def run(self) -> None:
        """Read every interface's state, then follow the kernel's link events
        until cancelled. Raises when it can no longer follow them (the agent
        restarts it; the next run reads the state afresh)."""
        ...

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the first state has been read (at most ``timeout`` s)."""
        ...

    def subscribe(self, interface: str, callback: OnLink) -> Callable[[], None]:
        """Hear of ``interface``: its state at once if known, then every change.
        An interface that does not exist is down. Returns the unsubscribe."""
        ...


# -- the arbiter (issue 13, guard = "etcd") -----------------------------------------


class ArbiterError(Exception):
    """The arbiter could not do what was asked."""


class ArbiterUnreachable(ArbiterError):
    """No endpoint answered (connection error, timeout or 5xx on every one):
    nothing is known about the leadership, which lapses at its ``valid_until``."""


class ArbiterRefused(ArbiterError):
    """An endpoint answered and refused the request (bad credentials, no
    permission, a malformed request): trying again will not help."""


class Holder(NamedTuple):
    """Who holds a key: its value and its create revision."""

    value: bytes
    revision: int


@dataclass(slots=True)
class Leadership:
    """A key this client created under a lease it keeps renewing.

    ``revision`` is the key's create revision, the fencing token: every later
    holder's is higher. ``valid_until`` (the driver's clock, the event loop's
    for etcd) is when the lease lapses at the latest if no renewal gets
    through: its TTL counted from when the last grant or renewal was sent."""

    key: str
    value: bytes
    lease: int
    revision: int
    ttl: float
    valid_until: float

    @property
    def renew_every(self) -> float:
        """How often to call ``keepalive``: a third of the TTL."""
        return self.ttl / 3


class Arbiter(Protocol):
    """A linearizable store with leases (etcd v3): at most one campaigner holds
    a key at a time. Every call raises ``ArbiterUnreachable`` when no endpoint
    answers and ``ArbiterRefused`` when one refuses."""

    async def campaign(self, key: str, value: bytes, ttl: float) -> Leadership | Holder:
        """Grant a lease of ``ttl`` s and create ``key`` under it if absent (one
        transaction on create revision 0). Won: the ``Leadership``. Lost: the
        lease is revoked and the current ``Holder`` is returned."""
        ...

    async def keepalive(self, leadership: Leadership) -> bool:
        """Renew the lease and check that the key is still ours (same create
        revision and lease). True: held, ``valid_until`` moved on. False: the
        lease or the key is gone, the leadership is lost for good."""
        ...

    async def resign(self, leadership: Leadership) -> None:
        """Revoke the lease: the key goes at once (a lease already gone is fine)."""
        ...

    async def holder(self, key: str) -> Holder | None:
        """Who holds ``key`` now (None: nobody)."""
        ...

    async def close(self) -> None: ...
