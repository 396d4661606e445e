"""The parameters one core instance (one host in one service group) runs with."""

from __future__ import annotations

from dataclasses import dataclass

from rais.core.addr import Addr, fmt
from rais.core.features import FEATURES, WIRE_VERSIONS

MODES = ("none", "majority", "etcd")
LOSS_MODES = ("hold", "release")
KERNEL_SLACK = 1.5
"""Seconds past its lifetime that the kernel may still have an address: it
removes expired addresses on a timer rounded up to whole seconds (field notes:
within about a second of expiry)."""
MIN_LEASE = 1.5
"""The shortest lease: a kernel lifetime is whole seconds and at least 1, and a
refresh must fit in what is left of the lease between renewals."""
MIN_KERNEL = 1.0
"""A held address is (re)configured only with at least this much lease left."""


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Frozen settings of one host in one service group.

    Times are in seconds. ``control[0]`` is the host id. ``keys[0]`` signs
    outgoing datagrams; every key in ``keys`` is accepted (key rotation).
    """

    group: str
    control: tuple[Addr, ...]
    keys: tuple[bytes, ...]
    heartbeat: float = 0.1
    timeout: float = 0.3
    preferred: Addr | None = None
    prefixlen: int = 0
    observer: bool = False
    orphan_timeout: float = 86400.0
    announce_interval: float = 10.0
    placement: str = "least-loaded"
    """Where the leader puts orphans: "least-loaded" or "random" (the patent's)."""
    failback: str = "immediate"
    """"immediate" (after ``failback_delay``) or "manual" (never automatically)."""
    failback_delay: float = 0.0
    load_scale: int = 1000
    """The utilization scale placement ranks hosts on (the group's load_scale)."""
    start_ok: bool = True
    """OK at start; False for a host whose tests have not reported yet (it then
    brings in and takes nothing until its first passing ``test_result``)."""
    link_hold: float = 1.0
    """How long the service link's carrier must stay up, after it returned,
    before the host is fit again (rais.core.link); 0: at once."""
    command_timeout: float = 0.0
    """How long the leader waits for a command to show in the target's info before
    it decides again; 0 means ``timeout``."""
    peers_per_message: int = 12
    max_datagram: int = 1400
    extras: tuple[tuple[Addr, int], ...] = ()
    """The other addresses (and prefix lengths) of this host's preferred address
    set; ``preferred`` is its first address, the set's key."""
    wire_versions: tuple[int, ...] = WIRE_VERSIONS
    """The wire versions this host speaks; (1,) makes it behave as the version-1
    release (the simulator's model of an old host)."""
    features: tuple[str, ...] = FEATURES
    """The features this host announces (none for a version-1 host)."""
    guard: str = "none"
    """What keeps an address off two hosts across a partition (rais.core.guard):
    "none" (as the patent), "majority" (a quorum of ``voters``) or "etcd" (the
    group's leader key in etcd)."""
    voters: tuple[Addr, ...] = ()
    """The host ids whose votes count for guard "majority" (observers may be voters)."""
    lease: float = 2.0
    """With a guard: how long a host keeps an address after the latest info of a
    quorate leader that covered it (rais.core.guard); the kernel lifetime of a
    held address never runs past it."""
    on_arbiter_loss: str = "hold"
    """Guard "etcd", when etcd cannot be reached: "hold" (keep every address
    where it is while the leader hears every member it heard before) or
    "release"."""

    def __post_init__(self) -> None:
        if not self.control:
            raise ValueError("a host needs at least one control address")
        if not self.keys or any(not k for k in self.keys):
            raise ValueError("at least one non-empty key is needed")
        if self.heartbeat <= 0:
            raise ValueError("heartbeat must be positive")
        if self.timeout <= self.heartbeat:
            raise ValueError("timeout must be above the heartbeat")
        if self.preferred is not None:
            limit = 32 if len(self.preferred) == 4 else 128
            if not 0 < self.prefixlen <= limit:
                raise ValueError(f"bad prefix length {self.prefixlen} for {fmt(self.preferred)}")
        if self.placement not in ("least-loaded", "random"):
            raise ValueError(f"unknown placement {self.placement!r}")
        if self.failback not in ("immediate", "manual"):
            raise ValueError(f"unknown failback {self.failback!r}")
        if self.load_scale < 1:
            raise ValueError("load_scale must be >= 1")
        if self.link_hold < 0:
            raise ValueError("link_hold must not be negative")
        if self.failback_delay < 0:
            raise ValueError("failback_delay must not be negative")
        if self.observer and self.preferred is not None:
            raise ValueError("an observer has no preferred address")
        why = check_guard(self)
        if why is not None:
            raise ValueError(why)

    @property
    def host_id(self) -> Addr:
        return self.control[0]

    @property
    def effective_command_timeout(self) -> float:
        return self.command_timeout if self.command_timeout > 0 else self.timeout


def check_guard(c: CoreConfig) -> str | None:
    """Why the guard settings of ``c`` cannot work (None: they can)."""
    if c.guard not in MODES:
        return f"unknown guard {c.guard!r}"
    if c.on_arbiter_loss not in LOSS_MODES:
        return f"unknown on_arbiter_loss {c.on_arbiter_loss!r}"
    if c.guard == "none":
        return None
    if c.lease < MIN_LEASE or c.lease < 2 * c.timeout:
        return f"lease must be at least {MIN_LEASE:g}s and 2 x timeout, not {c.lease:g}s"
    if c.guard == "majority":
        if not c.voters:
            return 'guard "majority" needs voters'
        if len(set(c.voters)) != len(c.voters):
            return "a voter is listed twice"
    return None
