"""The core's read model: what code outside ``rais.core`` may know of a core.

``Core.view(now)`` returns one frozen snapshot: this host's own entry, the
leader, every host it has heard (with liveness and the age of its last info),
every row of the service-address table (with its holders as this host knows
them and the orphan countdown left) and the datagrams dropped. The status,
the metrics, the DNS thread, the page and the simulator's checker read only
this (tests/test_core_purity.py enforces it). The driver's own questions
(does this host hold an address, in which state; is an address one of the
group's) are ``Core.holding`` and ``Core.is_service_address``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rais.core.addr import Addr
from rais.core.guard import GuardView
from rais.core.link import LinkView
from rais.core.messages import AddrState, HostEntry


@dataclass(frozen=True, slots=True)
class MemberView:
    """One host as this host knows it (this host included, first)."""

    entry: HostEntry
    """Its latest host information entry (figure 2C)."""
    live: bool
    """Heard within the timeout and not gone (this host: always)."""
    age: float
    """Seconds since its last info was taken (this host: 0)."""
    this_host: bool = False
    paused_s: float | None = None
    """Seconds left of the pause it announced (``rais pause``; this host's own
    too), None when it announced none. While paused it keeps its addresses:
    live, but it cannot lead and is given nothing."""

    @property
    def id(self) -> Addr:
        return self.entry.id


@dataclass(frozen=True, slots=True)
class RowView:
    """One valid service address (a row of the table, figure 2D)."""

    address: Addr
    prefixlen: int
    preferred: Addr
    orphan_s: float | None
    """Seconds left of its orphan countdown (None: not an orphan)."""
    extras: tuple[tuple[Addr, int], ...] = ()
    """The other addresses of its address set (``address`` is the key)."""


@dataclass(frozen=True, slots=True)
class SetView:
    """An address set this host serves (one with other addresses than its key):
    which of its addresses are up, being added or removed, and which wait."""

    key: Addr
    prefixlen: int
    state: AddrState
    """The key's state."""
    extras: tuple[tuple[Addr, int], ...]
    """Every other address of the set, as this host knows it."""
    up: tuple[tuple[Addr, int], ...]
    """The extras configured here (the key: see ``state``)."""
    adding: tuple[tuple[Addr, int], ...]
    removing: tuple[tuple[Addr, int], ...]
    waiting: tuple[tuple[Addr, int], ...]
    """Extras not up and not being added."""
    why: str
    """Why they wait ("" if none wait)."""

    @property
    def whole(self) -> bool:
        return not self.waiting and not self.adding and set(self.extras) == set(self.up)


@dataclass(frozen=True, slots=True)
class CoreView:
    """One core at one instant (``Core.view(now)``)."""

    group: str
    host: Addr
    now: float
    leader: Addr | None
    settled: bool
    """Has heard the group for one full timeout since it started listening."""
    ok: bool
    """The OK this host advertises: its tests pass and its link is fit."""
    quiesced: bool
    """Quiesced by the operator (the entry's flag also covers leaving)."""
    left: bool
    entry: HostEntry
    members: tuple[MemberView, ...]
    """This host first, then every other host heard, in the order first heard."""
    rows: tuple[RowView, ...]
    expired: tuple[Addr, ...]
    """Service addresses whose orphan countdown ran out."""
    drops: Mapping[str, int]
    """Datagrams dropped, by reason."""
    wire_version: int = 1
    """The wire version this host sends in now (rais.core.versions)."""
    common_features: tuple[str, ...] = ()
    """The features every live member announces, sorted: only these are used."""
    tests_ok: bool = True
    """The combined result of this host's tests of the group."""
    link: LinkView = field(default_factory=lambda: LinkView(True, True, "", 0.0, None))
    """The service link as the driver last reported it, and its hold-down."""
    sets: tuple[SetView, ...] = ()
    """The address sets this host serves that have other addresses than their key."""
    guard: GuardView | None = None
    """The guard's state (rais.core.guard); its ``mode`` is "none" without one."""

    @property
    def is_leader(self) -> bool:
        return self.leader == self.host

    def live_entries(self) -> list[HostEntry]:
        """The entries of the live hosts, this host's own first."""
        return [m.entry for m in self.members if m.live]

    def set_of(self, address: Addr) -> tuple[Addr, tuple[tuple[Addr, int], ...]] | None:
        """The key and extras of the address set (a row of the table) that has
        ``address``, as key or extra; None if no row has it."""
        for row in self.rows:
            if row.address == address or any(a == address for a, _ in row.extras):
                return row.address, row.extras
        return None

    def holders(self) -> dict[Addr, list[tuple[Addr, AddrState]]]:
        """Every address a live host serves, with (host, state), as this host
        knows it (its own entry and the live hosts' latest infos)."""
        out: dict[Addr, list[tuple[Addr, AddrState]]] = {}
        for m in self.members:
            if m.live:
                for address, state in m.entry.served:
                    out.setdefault(address, []).append((m.entry.id, state))
        return out
