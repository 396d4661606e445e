"""The simulated control networks: latency, jitter, loss, partitions, cuts."""

from __future__ import annotations

import random

TICK = 1e-4
"""The simulator's time step in seconds (0.1 ms)."""


class Network:
    """Decides when (and whether) a datagram from one host reaches another."""

    __slots__ = (
        "cut",
        "deaf",
        "drops",
        "extra_latency",
        "extra_loss",
        "hear_limit",
        "in_flight_until",
        "jitter",
        "last_change",
        "last_loss",
        "latency",
        "loss",
        "networks",
        "rng",
        "side",
    )

    def __init__(
        self,
        rng: random.Random,
        *,
        networks: int,
        latency: float,
        jitter: float,
        loss: float,
        hear_limit: float,
    ) -> None:
        self.rng = rng
        self.hear_limit = hear_limit
        """Delays at or above this (timeout - heartbeat) make hosts time each other
        out even though datagrams arrive: they do not 'hear each other'."""
        self.networks = networks
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.extra_loss = 0.0
        self.extra_latency = 0.0
        self.side: dict[int, int] = {}
        self.deaf: frozenset[tuple[int, int]] = frozenset()
        """(sender, receiver) pairs that do not get through (``deafen``)."""
        self.cut: list[set[int] | None] = [set() for _ in range(networks)]
        """Per network: hosts whose link is cut, or None for the whole network."""
        self.last_change = 0.0
        self.in_flight_until = 0.0
        """Until then, datagrams delayed by a latency spike that has ended still land."""
        self.last_loss: dict[tuple[int, int], float] = {}
        """(sender, receiver): when a datagram last reached the receiver in no copy
        (a copy dropped while another arrived is no loss)."""
        self.drops = 0
        """Copies dropped (one per network)."""

    @property
    def quiet(self) -> bool:
        """True when nothing can stop or delay a datagram beyond the base figures."""
        return (
            not self.side
            and not self.deaf
            and self.loss == 0.0
            and self.extra_loss == 0.0
            and self.extra_latency == 0.0
            and all(c is not None and not c for c in self.cut)
        )

    def connected(self, now: float, a: int, b: int) -> bool:
        """Whether a and b hear each other in time on at least one network."""
        if (
            self.side.get(a, 0) != self.side.get(b, 0)
            or (a, b) in self.deaf
            or (b, a) in self.deaf
            or self.max_delay() >= self.hear_limit
            or now < self.in_flight_until
        ):
            return False
        return any(c is not None and a not in c and b not in c for c in self.cut)

    def delays(self, now: float, s: int, r: int) -> list[float]:
        """Delays of the copies that arrive (one per network that delivers), in
        network order; records drops and losses."""
        if self.side.get(s, 0) != self.side.get(r, 0) or (s, r) in self.deaf:
            return []
        out: list[float] = []
        p = self.loss + self.extra_loss - self.loss * self.extra_loss
        rnd = self.rng.random
        dropped = self.drops
        for c in self.cut:
            if c is None or s in c or r in c:
                continue
            if p > 0.0 and rnd() < p:
                self.drops += 1
                continue
            out.append(self.latency + self.extra_latency + rnd() * self.jitter)
        if not out and self.drops != dropped:
            self.last_loss[(s, r)] = now
        return out

    def max_delay(self) -> float:
        return self.latency + self.extra_latency + self.jitter

    # ---------------------------------------------------------------- faults

    def partition(self, now: float, side: tuple[int, ...]) -> None:
        """Cut the hosts in ``side`` off from the others on every network."""
        self.side = {i: 1 for i in side}
        self.last_change = now

    def heal(self, now: float) -> None:
        self.side = {}
        self.last_change = now

    def deafen(self, now: float, pairs: tuple[int, ...]) -> None:
        """An asymmetric partition: for each (sender, receiver) in ``pairs``
        (flattened), the receiver hears nothing from the sender while the
        sender may still hear it (an inbound filter; empty: over)."""
        self.deaf = frozenset(zip(pairs[::2], pairs[1::2], strict=True))
        self.last_change = now

    def cut_link(self, now: float, network: int, hosts: tuple[int, ...]) -> None:
        """Cut these hosts' links to one control network (no hosts: all of it)."""
        self.cut[network] = set(hosts) if hosts else None
        self.last_change = now

    def mend_link(self, now: float, network: int) -> None:
        self.cut[network] = set()
        self.last_change = now

    def set_loss(self, loss: float) -> None:
        """A loss burst on every link, on top of the background loss (0: over)."""
        self.extra_loss = loss

    def set_latency(self, now: float, latency: float) -> None:
        """A latency spike on every link (0: over)."""
        old = self.extra_latency
        self.extra_latency = latency
        self.last_change = now
        if latency < old:
            # Spikes may overlap: what was sent under the higher latency still lands.
            self.in_flight_until = max(self.in_flight_until, now + old + self.jitter)

    def drained(self, now: float) -> None:
        """The last datagram delayed by a latency spike has landed."""
        self.last_change = now
