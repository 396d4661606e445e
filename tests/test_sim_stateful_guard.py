"""Hypothesis drives guarded simulations (issue 13): any sequence of the
unguarded machine's faults plus stalls, one-way cuts and etcd outages, then
quiet, must satisfy every invariant, I7 (never two holders) included."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule
from test_sim_stateful import HOSTS, ClusterMachine

from rais.sim import SimParams, Simulation


class GuardedMachine(ClusterMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stalled: set[int] = set()
        self.deaf: tuple[int, ...] = ()
        self.etcd_down = False

    @initialize(seed=st.integers(1, 10_000), guard=st.sampled_from(["majority", "etcd"]))
    def boot_guarded(self, seed: int, guard: str) -> None:
        self.sim = Simulation(
            SimParams(
                hosts=HOSTS, spares=1, duration=3600, seed=seed, orphan_timeout=3.0, guard=guard
            )
        )
        self.sim.start()
        self.advance(1.0)

    def boot(self, seed: int) -> None:
        """(The unguarded machine's initializer: replaced by ``boot_guarded``.)"""

    @rule(host=st.integers(0, HOSTS - 1))
    def stall(self, host: int) -> None:
        if host in self.stalled:
            self.stalled.discard(host)
            self.act("stall-", (host,))
        elif host not in self.down:
            self.stalled.add(host)
            self.act("stall+", (host,))

    @rule(pairs=st.lists(st.tuples(st.integers(0, HOSTS - 1), st.integers(0, HOSTS - 1))))
    def one_way(self, pairs: list[tuple[int, int]]) -> None:
        flat = tuple(x for a, b in pairs if a != b for x in (a, b))
        if self.deaf:
            self.act("deaf-", self.deaf)
        self.deaf = flat
        if flat:  # none: the one-way cuts are over
            self.act("deaf+", flat)

    @rule()
    def etcd(self) -> None:
        self.etcd_down = not self.etcd_down
        self.act("etcd+" if self.etcd_down else "etcd-")

    def teardown(self) -> None:
        for host in sorted(self.down):  # every host back, so that I1 can be judged
            self.act("crash-", (host,))
        for host in sorted(self.stalled):
            self.act("stall-", (host,))
        if self.deaf:
            self.act("deaf-", self.deaf)
        if self.etcd_down:
            self.act("etcd-")
        super().teardown()

    def quiet(self) -> float:
        guard = self.sim.checker.guard
        return guard.wait + guard.cold + 1.0


GuardedMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("RAIS_STATEFUL_EXAMPLES", "30")),
    stateful_step_count=30,
    deadline=None,
    derandomize="RAIS_STATEFUL_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGuarded = GuardedMachine.TestCase
