"""The simulated control networks: latency, jitter, loss, partitions, cuts."""

from __future__ import annotations

import random

TICK = 1e-4
"""The simulator's time step in seconds (0.1 ms)."""


class Network:
    """Decides when (and whether) a datagram from one host reaches another."""

    __slots__ = (
        "cut",
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
            and self.loss == 0.0
            and self.extra_loss == 0.0
            and self.extra_latency == 0.0
            and all(c is not None and not c for c in self.cut)
        )

    def connected(self, now: float, a: int, b: int) -> bool:
        """Whether a and b hear each other in time on at least one network."""
        if (
            self.side.get(a, 0) != self.side.get(b, 0)
            or self.max_delay() >= self.hear_limit
            or now < self.in_flight_until
        ):
            return False
        return any(c is not None and a not in c and b not in c for c in self.cut)

    def delays(self, now: float, s: int, r: int) -> list[float]:
        """Delays of the copies that arrive (one per network that delivers), in
        network order; records drops and losses."""
        if self.side.get(s, 0) != self.side.get(r, 0):
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
