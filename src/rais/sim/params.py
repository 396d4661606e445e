"""What a simulation run is asked to do, and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SimParams:
    hosts: int = 3
    spares: int = 0
    observers: int = 0
    duration: float = 60.0
    seed: int = 1
    heartbeat: float = 0.1
    timeout: float = 0.0
    """0 means 3 x heartbeat."""
    loss: float = 0.0
    """Background loss on every link, for the whole run (counts as a fault)."""
    faults: str = "none"
    """'none' or 'random'."""
    networks: int = 2
    latency: float = 0.0002
    jitter: float = 0.0004
    action_delay: float = 0.002
    orphan_timeout: float = 8.0
    ipv6: bool = False
    exact_duplicates: bool = False
    """Deliver every copy of a datagram (one per control network) instead of only
    the first to arrive; the later copies are always dropped as duplicates."""
    inject_bad: bool = True
    link_hold: float = 0.5
    """The cores' ``link_hold``: how long a carrier must be back before the host is fit."""
    sets: float = 0.0
    """The chance that a host with a preferred address prefers an address set
    (one or two more addresses, IPv6), drawn once per run from the seed."""
    old: float = 0.0
    """The chance that a host runs the version-1 release at each boot (wire
    version 1 only, no features): a mixed group, upgraded and downgraded at
    every restart (rais.core.versions)."""
    """Feed bad datagrams (garbage, wrong key, bit flips, replays) and check I5."""
    guard: str = "none"
    """The cores' guard (rais.core.guard): "none", "majority" (every host a
    voter) or "etcd" (the simulated arbiter, sim/arbiter.py)."""
    lease: float = 2.0
    on_arbiter_loss: str = "hold"
    late_steady: bool = False
    """Hold datagrams that change nothing until the receiver wakes for anything
    else, as rais.drivers.quiet does (sim/delivery.py)."""

    @property
    def effective_timeout(self) -> float:
        return self.timeout if self.timeout > 0 else 3 * self.heartbeat

    def validate(self) -> None:
        if self.hosts < 1 or self.hosts > 1024:
            raise ValueError("--hosts must be 1..1024")
        if not 0 <= self.spares <= self.hosts:
            raise ValueError("--spares must be between 0 and --hosts")
        if self.observers < 0 or self.spares + self.observers > self.hosts:
            raise ValueError("--spares plus --observers must not exceed --hosts")
        if self.effective_timeout <= self.heartbeat:
            raise ValueError("--timeout must be above --heartbeat")
        if not 0 <= self.loss < 1:
            raise ValueError("--loss must be in [0, 1)")
        if self.faults not in ("none", "random"):
            raise ValueError("--faults must be 'none' or 'random'")
        if not 0 <= self.sets <= 1:
            raise ValueError("--sets must be in [0, 1]")
        if not 0 <= self.old <= 1:
            raise ValueError("--old must be in [0, 1]")
        if self.guard not in ("none", "majority", "etcd"):
            raise ValueError("--guard must be none, majority or etcd")
        if not 1 <= self.networks <= 4:
            raise ValueError("--networks must be 1..4")


@dataclass(slots=True)
class Violation:
    invariant: str
    time: float
    detail: str


@dataclass(slots=True)
class SimResult:
    params: SimParams
    violations: list[Violation] = field(default_factory=list)
    max_convergence_s: float = 0.0
    convergences: list[float] = field(default_factory=list)
    messages: int = 0
    bytes: int = 0
    deliveries: int = 0
    """Datagrams the cores got (held ones included, when they got them)."""
    held: int = 0
    """Of those that arrived, how many waited on a quiet socket (``late_steady``)."""
    dropped: int = 0
    faults: int = 0
    injected: int = 0
    failovers: int = 0
    wall_s: float = 0.0
    trace_sha256: str = ""
    events: int = 0
