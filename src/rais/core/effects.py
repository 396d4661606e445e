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


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``data`` (one datagram) on the control addresses with these indexes."""

    data: bytes
    vias: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Acquire:
    """Configure ``address``/``prefixlen`` on the service interface, run the acquire
    script, then report with ``Core.action_done``."""

    address: Addr
    prefixlen: int


@dataclass(frozen=True, slots=True)
class Release:
    """Run the release script, remove the address, then report with ``Core.action_done``."""

    address: Addr
    prefixlen: int


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell the link that this host now answers for ``address`` (gratuitous ARP /
    unsolicited neighbour advertisement). Emitted after every acquire and then
    every ``announce_interval`` while the address is held."""

    address: Addr
    prefixlen: int


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, for logs, traps, metrics and the simulator."""

    time: float
    kind: EventKind
    group: str
    host: Addr
    address: Addr | None = None
    reason: str = ""


Effect = Send | Acquire | Release | Announce | Event
