"""Hypothesis drives the simulator: any sequence of faults, then quiet, must
satisfy every invariant (the checker runs after every step)."""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from rais.sim import SimParams, Simulation
from rais.sim.cli import summary
from rais.sim.faults import FaultAction

HOSTS = 5


class ClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulation(
            SimParams(hosts=HOSTS, spares=1, duration=3600, seed=1, orphan_timeout=3.0)
        )
        self.now = 0.0
        self.down: set[int] = set()
        self.partitioned = False
        self.cut = False

    @initialize(seed=st.integers(1, 10_000))
    def boot(self, seed: int) -> None:
        self.sim = Simulation(
            SimParams(hosts=HOSTS, spares=1, duration=3600, seed=seed, orphan_timeout=3.0)
        )
        self.sim.start()
        self.advance(1.0)

    def act(self, kind: str, hosts: tuple[int, ...] = (), value: float = 0.0) -> None:
        self.sim.apply(FaultAction(self.now, kind, hosts, value))

    @rule(dt=st.floats(0.01, 2.0))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.sim.run_until(self.now)

    @precondition(lambda self: len(self.down) < HOSTS - 1)
    @rule(host=st.integers(0, HOSTS - 1))
    def crash(self, host: int) -> None:
        if host not in self.down:
            self.down.add(host)
            self.act("crash+", (host,))

    @rule(host=st.integers(0, HOSTS - 1))
    def restart(self, host: int) -> None:
        if host in self.down:
            self.down.discard(host)
            self.act("crash-", (host,))

    @rule(host=st.integers(0, HOSTS - 1), failing=st.booleans())
    def test(self, host: int, failing: bool) -> None:
        self.act("test+" if failing else "test-", (host,))

    @rule(host=st.integers(0, HOSTS - 1), on=st.booleans())
    def quiesce(self, host: int, on: bool) -> None:
        self.act("quiesce+" if on else "quiesce-", (host,))

    @precondition(lambda self: not self.partitioned)
    @rule(side=st.sets(st.integers(0, HOSTS - 1), min_size=1, max_size=HOSTS - 1))
    def partition(self, side: set[int]) -> None:
        self.partitioned = True
        self.act("partition+", tuple(sorted(side)))

    @precondition(lambda self: self.partitioned)
    @rule()
    def heal(self) -> None:
        self.partitioned = False
        self.act("partition-")

    @rule(net=st.integers(0, 1), on=st.booleans())
    def cut_network(self, net: int, on: bool) -> None:
        if on and not self.cut:
            self.cut = True
            self.act("netcut+", (), float(net))
        elif not on and self.cut:
            self.cut = False
            self.act("netcut-", (), 0.0)
            self.act("netcut-", (), 1.0)

    @rule(
        asker=st.integers(0, HOSTS - 1),
        owner=st.integers(0, HOSTS - 2),  # the last host is the spare
        to=st.integers(0, HOSTS - 1),
    )
    def move(self, asker: int, owner: int, to: int) -> None:
        self.act("move+", (asker, owner, to))

    @rule(asker=st.integers(0, HOSTS - 1), owner=st.integers(0, HOSTS - 2))
    def failback(self, asker: int, owner: int) -> None:
        self.act("move-", (asker, owner))

    @invariant()
    def no_violation(self) -> None:
        result = self.sim.result_now()
        assert not result.violations, json.dumps(summary(result)["violation_list"], indent=1)

    def quiet(self) -> float:
        """How long the end of a run stays quiet before the last check."""
        return 3.0

    def teardown(self) -> None:
        if self.partitioned:
            self.act("partition-")
        # Quiet for long enough that every deadline check runs.
        self.now += self.quiet()
        self.sim.run_until(self.now)
        result = self.sim.result_now()
        assert not result.violations, json.dumps(summary(result)["violation_list"], indent=1)
        assert self.sim.checker.i1_checks > 0


ClusterMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("RAIS_STATEFUL_EXAMPLES", "60")),
    stateful_step_count=30,
    deadline=None,
    # The suite replays the same examples every run; RAIS_STATEFUL_EXAMPLES=N
    # explores N fresh ones.
    derandomize="RAIS_STATEFUL_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCluster = ClusterMachine.TestCase
