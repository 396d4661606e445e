"""Load-aware placement of orphans and failback control (issue 4)."""

from __future__ import annotations

from dataclasses import replace

from clusterkit import TIMEOUT, Cluster, host_id, make_config, service

from rais.core.config import CoreConfig
from rais.core.core import Core
from rais.core.effects import EventKind
from rais.core.requests import FAILBACK_WAIT
from rais.sim import SimParams, Simulation


def _cluster(configs: list[CoreConfig]) -> Cluster:
    c = Cluster()
    for cfg in configs:
        c.add(cfg)
    c.run_until(1.0)
    return c


def test_orphan_goes_to_the_least_loaded_spare() -> None:
    c = _cluster([make_config(1), make_config(2), *(make_config(n, spare=True) for n in (3, 4, 5))])
    for i, load in ((2, 700), (3, 100), (4, 900)):

        def sample(core: Core, now: float, load: int = load) -> None:
            core.load_sample(now, load, 1000)

        c.poke(i, sample)
    c.run_until(1.5)
    c.kill(0)  # host 1 dies (indexes count from 0)
    c.run_until(2.5)
    assert c.holders(service(2)) == [1]
    # the spare at 100/1000 (index 3) gets it, not those at 700 and 900
    assert c.holders(service(1)) == [3]


def test_orphans_are_not_piled_on_one_host_in_one_pass() -> None:
    configs = [make_config(n) for n in range(1, 5)]
    configs += [make_config(n, spare=True) for n in (5, 6, 7)]
    c = _cluster(configs)
    for n in (2, 3, 4):
        c.kill(n - 1)
    c.run_until(3.0)
    takers = sorted(c.holders(service(n))[0] for n in (2, 3, 4))
    assert takers == [4, 5, 6]  # one orphan each for the three spares


def test_random_placement_is_still_available() -> None:
    configs = [replace(make_config(n, spare=n > 2), placement="random") for n in range(1, 6)]
    picks = set()
    for seed in range(12):
        c = Cluster(seed=seed)
        for cfg in configs:
            c.add(cfg)
        c.run_until(1.0)
        c.kill(1)
        c.run_until(2.0)
        picks.add(c.holders(service(2))[0])
    assert picks <= {2, 3, 4}


def test_failback_delay_and_manual() -> None:
    def run(**kw: object) -> tuple[list[int], list[int]]:
        cfgs = [replace(make_config(n, spare=n == 3), **kw) for n in (1, 2, 3)]  # type: ignore[arg-type]
        c = _cluster(cfgs)
        c.test_result(1, False)  # host 2's address moves to the spare
        c.run_until(2.0)
        moved = c.holders(service(2))
        c.test_result(1, True)  # host 2 is healthy again at t=2
        c.run_until(2.0 + 1.0)
        early = c.holders(service(2))
        c.run_until(2.0 + 4.0)
        return moved + early, c.holders(service(2))

    assert run() == ([2, 1], [1])  # immediate: back within a second
    assert run(failback_delay=2.5) == ([2, 2], [1])  # still on the spare at +1 s, back by +4 s
    assert run(failback="manual") == ([2, 2], [2])  # never back by itself


def test_spread_after_one_of_eight_fails() -> None:
    """Eight hosts with addresses and two spares; one host dies: no host ends up
    more than one address above the ideal (issue 4)."""
    sim = Simulation(SimParams(hosts=10, spares=2, duration=10, seed=5, faults="none"))
    sim.start()
    sim.run_until(2.0)
    from rais.sim.faults import FaultAction

    sim.apply(FaultAction(2.0, "crash+", (0,)))
    sim.run_until(2.0 + TIMEOUT + 1.0)
    counts = [len(h.core.served.states) for h in sim.hosts if h.up and h.core is not None]
    ideal = -(-8 // len(counts))
    assert max(counts) <= ideal + 1, counts
    assert not sim.result_now().violations


def _move(c: Cluster, i: int, address: bytes, target: int, stamp: int) -> str | None:
    out: list[str | None] = []
    c.poke(i, lambda core, now: out.append(core.move(now, address, host_id(target), stamp)))
    return out[0]


def _failback(c: Cluster, i: int, address: bytes, stamp: int) -> str | None:
    out: list[str | None] = []
    c.poke(i, lambda core, now: out.append(core.failback(now, address, stamp)))
    return out[0]


def test_move_pins_an_address_release_before_acquire() -> None:
    c = _cluster([make_config(n, spare=n == 4) for n in (1, 2, 3, 4)])
    # asked on host 3 (not the leader, not involved): move host 2's address to the spare
    assert _move(c, 2, service(2), 4, stamp=1000) is None
    c.run_until(2.0)
    assert c.holders(service(2)) == [3]
    assert c.overlapping_claims(service(2)) == []
    # immediate failback does not undo a pin
    c.run_until(5.0)
    assert c.holders(service(2)) == [3]
    # a newer failback request (asked on host 1) ends the pin and returns it now
    assert _failback(c, 0, service(2), stamp=2000) is None
    c.run_until(6.0)
    assert c.holders(service(2)) == [1]
    assert c.overlapping_claims(service(2)) == []
    # both requests are gone from the entries: the move was superseded, the
    # failback done
    assert all(not c.core(i).requests.mine for i in range(4))


def test_move_survives_a_change_of_leader() -> None:
    c = _cluster([make_config(n, spare=n == 4) for n in (1, 2, 3, 4)])
    assert _move(c, 2, service(2), 4, stamp=1000) is None
    c.run_until(2.0)
    assert c.holders(service(2)) == [3]
    c.kill(0)  # the leader dies; host 2 leads and must keep the pin
    c.run_until(4.0)
    assert c.holders(service(2)) == [3]
    assert c.holders(service(1)) != []


def test_failback_request_overrides_manual_failback() -> None:
    cfgs = [replace(make_config(n, spare=n == 3), failback="manual") for n in (1, 2, 3)]
    c = _cluster(cfgs)
    c.test_result(1, False)
    c.run_until(2.0)
    c.test_result(1, True)
    c.run_until(3.0)
    assert c.holders(service(2)) == [2]  # manual: stays on the spare
    assert _failback(c, 2, service(2), stamp=5) is None
    c.run_until(3.5)
    assert c.holders(service(2)) == [1]
    assert c.overlapping_claims(service(2)) == []
    assert [e.kind for e in c.events(2, EventKind.FAILBACK_REQUESTED)] == [
        EventKind.FAILBACK_REQUESTED
    ]


def test_requests_are_refused_for_unknown_address_or_host() -> None:
    c = _cluster([make_config(n) for n in (1, 2)])
    assert "not a service address" in (_move(c, 0, service(9), 2, 1) or "")
    assert "not a live member" in (_move(c, 0, service(1), 7, 1) or "")
    c.kill(1)
    c.run_until(2.0)
    assert "not a live member" in (_move(c, 0, service(1), 2, 1) or "")
    assert not c.core(0).requests.mine


def test_a_move_to_a_dead_or_failing_target_falls_back_to_the_rules() -> None:
    c = _cluster([make_config(n, spare=n == 3) for n in (1, 2, 3)])
    assert _move(c, 0, service(1), 3, stamp=10) is None
    c.run_until(2.0)
    assert c.holders(service(1)) == [2]
    c.test_result(2, False)  # the target fails: the address goes home
    c.run_until(3.0)
    assert c.holders(service(1)) == [0]
    c.test_result(2, True)  # the pin holds again
    c.run_until(4.0)
    assert c.holders(service(1)) == [2]


def test_failback_request_expires() -> None:
    c = _cluster([make_config(n, spare=n == 3) for n in (1, 2, 3)])
    c.test_result(1, False)
    c.run_until(2.0)
    assert _failback(c, 0, service(2), stamp=1) is None  # preferred host is failing
    c.run_until(2.0 + FAILBACK_WAIT - 1)
    assert c.core(0).requests.mine
    c.run_until(2.0 + FAILBACK_WAIT + 1)
    assert not c.core(0).requests.mine
