"""Outputs of the core, drained by the driver in order."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rais.core.addr import Addr


class EventKind(StrEnum):
    """Everything the core reports as having happened (the patent's six traps first).
    The agent's own kinds (its DNS, its supervision) are not here: no core emits them."""

    ACQUIRED = "acquired"
    ACQUIRE_FAILED = "acquire-failed"
    RELEASED = "released"
    RELEASE_FAILED = "release-failed"
    TEST_FAILED = "test-failed"
    CANNOT_ASSIGN = "cannot-assign"
    TEST_RECOVERED = "test-recovered"
    LEADER_CHANGED = "leader-changed"
    HOST_JOINED = "host-joined"
    HOST_LOST = "host-lost"
    HOST_LEFT = "host-left"
    QUIESCED = "quiesced"
    UNQUIESCED = "unquiesced"
    ORPHAN_EXPIRED = "orphan-expired"
    MOVE_REQUESTED = "move-requested"
    FAILBACK_REQUESTED = "failback-requested"
    PAUSED = "paused"
    PAUSE_ENDED = "pause-ended"
    RESUMED = "resumed"
    HOST_PAUSED = "host-paused"
    HOST_RESUMED = "host-resumed"
    LINK_DOWN = "link-down"
    LINK_UP = "link-up"
    SET_PARTIAL = "set-partial"
    """A held address set is up without some of its other addresses (they wait:
    the reason says which and why); the event's address is the set's key."""
    SET_COMPLETE = "set-complete"
    """A held address set that was partial has every one of its addresses up."""
    QUORUM_LOST = "quorum-lost"
    """Guard "majority" (or "etcd" holding on through an arbiter loss): this host,
    as leader, no longer has its quorum and assigns nothing; or, as a holder, its
    lease ran out with no quorate leader heard, and it released what it held."""
    QUORUM_REGAINED = "quorum-regained"
    """The quorum (or, for a holder, a quorate leader's lease) is back."""
    ARBITER_LOST = "arbiter-lost"
    """Guard "etcd": this host, as leader, no longer holds the group's leader key
    (etcd unreachable, the lease lapsed, or another host holds the key)."""
    ARBITER_REGAINED = "arbiter-regained"
    """Guard "etcd": this host, as leader, holds the group's leader key again."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``data`` (one datagram) on the control addresses with these indexes."""

    data: bytes
    vias: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Acquire:
    """Configure ``address``/``prefixlen`` and the ``extras`` (the other addresses
    of its set that come with it) on the service interface, run the acquire
    script once, then report with ``Core.action_done(address)``. All or nothing:
    if any address cannot be added, the driver removes those it added and reports
    failure. With ``extras_only`` the key ``address`` is held already: only the
    extras are added (the set becomes complete)."""

    address: Addr
    prefixlen: int
    extras: tuple[tuple[Addr, int], ...] = ()
    extras_only: bool = False


@dataclass(frozen=True, slots=True)
class Release:
    """Run the release script once, remove the address and the ``extras`` (the
    other addresses of its set that are up), then report with
    ``Core.action_done(address)``. With ``extras_only`` the key stays: only the
    extras go (the set becomes partial)."""

    address: Addr
    prefixlen: int
    extras: tuple[tuple[Addr, int], ...] = ()
    extras_only: bool = False


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell the link that this host now answers for ``address`` (gratuitous ARP /
    unsolicited neighbour advertisement). Emitted after every acquire and then
    every ``announce_interval`` while the address is held. ``extras``: the other
    addresses of its set that are up, announced with it (GARP for IPv4,
    unsolicited NA for IPv6)."""

    address: Addr
    prefixlen: int
    extras: tuple[tuple[Addr, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Campaign:
    """Guard "etcd": this host wants (``want``) the group's leader key, or wants
    it no more (resign it if held). While it wants it the driver campaigns and
    renews, and reports every outcome with ``Core.arbiter_state``. Emitted on
    every change."""

    want: bool


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, for logs, traps, metrics and the simulator."""

    time: float
    kind: EventKind
    group: str
    host: Addr
    address: Addr | None = None
    reason: str = ""


Effect = Send | Acquire | Release | Announce | Campaign | Event
