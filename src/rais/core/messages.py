"""Decoded control messages (figures 2B, 2C and 2D of the patent).

One logical message type, *info*, carries the sender's host entry, what it
knows of the other hosts, the service-address table and, when the sender is
the leader, acquire/release commands. The patent's separate acquire and
release messages are the ``commands`` records of an info message: an info
that carries commands is sent at once, outside the heartbeat cadence, and
the leader repeats a command in every info until the target's own info shows
that it was obeyed (or the command times out). See docs/protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from rais.core.addr import Addr


class AddrState(IntEnum):
    """State of a service address on the host that serves it (figure 2D)."""

    ACQUIRING = 1
    ONLINE = 2
    RELEASING = 3


class Op(IntEnum):
    """A leader's command to one host."""

    ACQUIRE = 1
    RELEASE = 2


class ReqOp(IntEnum):
    """An operator's standing request to the leader (``rais move`` / ``rais failback``)."""

    MOVE = 1
    FAILBACK = 2


@dataclass(frozen=True, slots=True)
class Request:
    """An operator request a host advertises in its entry until it is done or
    superseded: MOVE pins ``address`` to host ``target``; FAILBACK returns it to
    its preferred host now (``target`` is None). ``stamp`` is the wall-clock
    time of the request in milliseconds, from the driver: among requests for
    one address the latest wins (ties: the lower requester id)."""

    op: ReqOp
    address: Addr
    target: Addr | None
    stamp: int


# Bits of HostEntry.flags on the wire; HostEntry keeps them as booleans.
FLAG_OK = 0x01
FLAG_QUIESCED = 0x02
FLAG_OBSERVER = 0x04
FLAG_LEAVING = 0x08
FLAG_SETTLED = 0x10


@dataclass(frozen=True, slots=True)
class HostEntry:
    """The sender's own host information entry (figure 2C)."""

    id: Addr
    control: tuple[Addr, ...]
    ok: bool
    quiesced: bool
    observer: bool
    leaving: bool
    settled: bool
    load: int
    capacity: int
    preferred: Addr | None
    prefixlen: int
    served: tuple[tuple[Addr, AddrState], ...]
    requests: tuple[Request, ...] = ()
    extras: tuple[tuple[Addr, int], ...] = ()
    """The other addresses (with prefix lengths) of the preferred address set;
    ``preferred`` is the set's key. Wire version 2 only (a version-1 entry has none)."""
    pause_ms: int = 0
    """Non-zero: the host is restarting its agent in place and asks the group to
    keep its addresses where they are for this many milliseconds from the
    arrival of this info (``rais pause``). Wire version 2 only."""
    versions: tuple[int, ...] = (1,)
    """The wire versions the host speaks, ascending (a version-1 host: (1,))."""
    features: tuple[str, ...] = ()
    """The features the host supports, sorted (rais.core.features)."""


@dataclass(frozen=True, slots=True)
class PeerAge:
    """What the sender knows of another host: its id, how long ago it was last
    heard (milliseconds, capped at 65535) and whether the sender counts it live."""

    id: Addr
    age_ms: int
    live: bool


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One row of the service-address table (figure 2D, 'last served by the
    preferred host'): ``orphan_ms`` is the time left on the orphan countdown in
    milliseconds; NOT_ORPHANED means the preferred host serves it now."""

    address: Addr
    prefixlen: int
    preferred: Addr
    orphan_ms: int
    extras: tuple[tuple[Addr, int], ...] = ()
    """The other addresses of the row's address set (wire version 2 only)."""


NOT_ORPHANED = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Command:
    """Acquire or release ``address`` on host ``target`` (figures 4B, 4C)."""

    op: Op
    target: Addr
    address: Addr
    prefixlen: int
    extras: tuple[tuple[Addr, int], ...] = ()
    """The other addresses of the address set keyed by ``address`` (wire version 2 only)."""


@dataclass(frozen=True, slots=True)
class PausedPeer:
    """A host the sender knows to be paused (``rais pause``), relayed so that a
    host that missed the pause (it booted since, or lost the info) does not take
    the silent host for failed: its last entry, the milliseconds left of its
    pause, how long ago the sender last heard it, and its epoch (wire version 2
    only)."""

    entry: HostEntry
    remaining_ms: int
    age_ms: int
    epoch: int
    """The epoch (incarnation) of the paused host whose entry this is: a pause
    belongs to one incarnation, and one the receiver knows to be older than
    the host's current one is stale."""


@dataclass(frozen=True, slots=True)
class GuardInfo:
    """The GUARD section of an info (rais.core.guard; wire version 2 only): the
    sender's clock in ms (mod 2**32), the leader it names (None: none), whether
    it leads and may assign now, the fencing token (etcd: the leader key's
    revision; 0: none) and the newest stamp it heard from each of some hosts."""

    stamp: int
    vote: Addr | None
    quorate: bool
    token: int
    echoes: tuple[tuple[Addr, int], ...]


@dataclass(frozen=True, slots=True)
class Message:
    """A whole info message, once reassembled from its datagrams."""

    entry: HostEntry
    peers: tuple[PeerAge, ...]
    table: tuple[TableEntry, ...]
    commands: tuple[Command, ...]
    paused: tuple[PausedPeer, ...] = ()
    """The paused hosts the sender knows of (wire version 2 only)."""
    unknown: tuple[tuple[int, bytes], ...] = ()
    """Sections of wire version 2 this release does not know and may skip
    (type, payload), kept only so that a decoded body re-encodes to the same bytes."""
    guard: GuardInfo | None = None
    """The GUARD section (a group with a guard; wire version 2 only)."""


@dataclass(frozen=True, slots=True)
class Hello:
    """What a host sends beside its version-1 info while some live member speaks
    only version 1: the wire versions and features it supports (a version-2
    datagram that version-1 hosts drop), so that hosts of this release learn
    each other's support while they still talk version 1 (docs/protocol.md,
    "Versions and features")."""

    versions: tuple[int, ...]
    features: tuple[str, ...]
    unknown: tuple[tuple[int, bytes], ...] = ()
    paused: tuple[PausedPeer, ...] = ()
    """The paused hosts the sender knows of: relayed in the hello too, since
    a version-1 info cannot carry them (a host of this release that boots into
    a mixed group during a pause learns of it so)."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """One authenticated datagram as the decoder returns it.

    A message that does not fit in one datagram is split into ``parts``
    datagrams with consecutive sequence numbers; ``part`` counts from 0. A
    single-part datagram arrives parsed (``message``); a part of a larger
    message arrives as its raw ``chunk`` of the message body, which the
    receiver reassembles and then parses with ``wire.decode_body``.
    """

    group_tag: int
    sender: Addr
    epoch: int
    seq: int
    part: int
    parts: int
    message: Message | None
    chunk: bytes
    size: int
    version: int = 1
    hello: Hello | None = None
    """A single-part version-2 datagram that carries only the sender's versions
    and features (``message`` is then None and ``chunk`` empty)."""
