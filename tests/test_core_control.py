"""The leader's control pass: failover, spares first, cannot-assign, failback,
and commands obeyed only when they come from the leader."""

from __future__ import annotations

import pytest
from clusterkit import TIMEOUT, Cluster, forge, host_id, make_config, service

from rais.core.effects import Acquire, Event, EventKind, Release
from rais.core.messages import AddrState, Command, Op


def _staggered(*configs_at: tuple[int, bool, float]) -> Cluster:
    """Hosts (number, spare, start time), started in that order at those times."""
    c = Cluster()
    for n, spare, at in configs_at:
        c.run_until(at)
        c.add(make_config(n, spare=spare))
    return c


@pytest.mark.parametrize("kill_at", [1.0, 1.013, 1.05, 1.099])
def test_failover_happens_on_the_timeout_itself(kill_at: float) -> None:
    # host 3 heartbeats out of phase with the leader, so a leader that only
    # reacted on its own next heartbeat would be late
    c = _staggered((1, False, 0.0), (2, False, 0.0), (3, False, 0.037))
    c.run_until(kill_at)
    assert c.holders(service(3)) == [2]
    c.kill(2)
    last = c.last_send(2)
    c.run_until(kill_at + 1.0)
    (t, taker), *rest = [a for a in c.acquires(service(3)) if a[0] > kill_at]
    assert rest == []
    assert taker in (0, 1)
    assert t - last <= TIMEOUT + 0.010
    assert c.holders(service(3)) == [taker]


def test_failover_of_the_leaders_own_address() -> None:
    c = _staggered((1, False, 0.0), (2, False, 0.021), (3, False, 0.052))
    c.run_until(1.03)
    c.kill(0)
    last = c.last_send(0)
    c.run_until(2.0)
    (t, taker), *rest = [a for a in c.acquires(service(1)) if a[0] > 1.0]
    assert rest == [] and taker in (1, 2)
    assert t - last <= TIMEOUT + 0.010
    assert c.leaders() == {host_id(2)}


def test_an_orphan_goes_to_a_hot_spare_first() -> None:
    for seed in range(6):
        c = Cluster(
            [
                make_config(1),
                make_config(2),
                make_config(3),
                make_config(4, spare=True),
                make_config(5, spare=True),
            ],
            seed=seed,
        )
        c.run_until(1.0)
        c.kill(1)
        c.run_until(2.0)
        assert c.holders(service(2)) in ([3], [4])
        assert c.holders(service(1)) == [0] and c.holders(service(3)) == [2]


def test_without_spares_an_orphan_goes_to_a_random_eligible_host() -> None:
    takers = set()
    for seed in range(10):
        c = Cluster([make_config(n) for n in (1, 2, 3, 4)], seed=seed)
        c.run_until(1.0)
        c.quiesce(1)  # not eligible
        c.kill(3)
        c.run_until(2.0)
        (taker,) = c.holders(service(4))
        assert taker in (0, 2)
        takers.add(taker)
    assert takers == {0, 2}


def test_cannot_assign_is_raised_once_until_someone_is_eligible() -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3, observer=True)])
    c.run_until(1.0)
    c.quiesce(0)
    c.kill(1)
    c.run_until(4.0)
    assert c.holders(service(2)) == []
    cannot = c.all_events(EventKind.CANNOT_ASSIGN)
    assert [(i, e.address) for i, e in cannot] == [(0, service(2))]
    assert c.logged(2, Acquire) == []  # the observer never takes anything
    assert c.holders(service(1)) == [0]  # quiesced: keeps what it has
    c.unquiesce(0)
    c.run_until(4.1)
    assert c.holders(service(2)) == [0]
    assert len(c.all_events(EventKind.CANNOT_ASSIGN)) == 1


def test_failback_releases_before_it_acquires() -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3, spare=True)])
    c.run_until(1.0)
    c.kill(1)
    c.run_until(2.0)
    assert c.holders(service(2)) == [2]
    c.restart(1)
    c.run_until(3.0)
    assert c.holders(service(2)) == [1]
    assert c.nodes[2].held == set()

    (t_release, _), *more = [(t, e) for t, e in c.logged(2, Release) if e.address == service(2)]
    assert more == []
    ((_addr, _, released),) = [x for x in c.nodes[2].claims if x[0] == service(2)]
    assert released is not None
    (t_acquire, _), *again = [(t, e) for t, e in c.logged(1, Acquire) if t > 2.0]
    assert again == []
    assert t_release < released <= t_acquire
    assert c.overlapping_claims(service(2)) == []
    # the events tell the same story
    rel = [e.time for e in c.events(2, EventKind.RELEASED) if e.address == service(2)]
    acq = [e.time for e in c.events(1, EventKind.ACQUIRED) if e.time > 2.0]
    assert len(rel) == 1 and len(acq) == 1 and rel[0] < acq[0]


def test_failback_to_a_preferred_host_that_fails_its_acquire() -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3, spare=True)])
    c.run_until(1.0)
    c.kill(1)
    c.run_until(2.0)
    c.restart(1)
    c.nodes[1].fail_next_acquire = True
    c.run_until(4.0)
    failed = c.events(1, EventKind.ACQUIRE_FAILED)
    assert [e.address for e in failed] == [service(2)]
    # the leader tries again and the address ends up served by exactly one host
    assert len(c.holders(service(2))) == 1
    assert c.overlapping_claims(service(2)) == []


# --------------------------------------------------- only the leader commands


def _started() -> Cluster:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(1.0)
    assert c.leaders() == {host_id(1)}
    return c


def _actions(effects: list[object]) -> list[object]:
    return [e for e in effects if isinstance(e, Acquire | Release)]


def test_commands_from_a_non_leader_are_ignored() -> None:
    c = _started()
    target = c.core(1)
    before = dict(target.served.states)
    data = forge(
        c,
        2,
        [
            Command(Op.ACQUIRE, host_id(2), service(9), 24),
            Command(Op.RELEASE, host_id(2), service(2), 24),
        ],
    )
    assert _actions(list(c.deliver(1, data))) == []
    assert target.served.states == before
    c.run_until(1.5)
    assert c.holders(service(9)) == [] and c.holders(service(2)) == [1]


def test_the_same_command_from_the_leader_is_obeyed() -> None:
    c = _started()
    data = forge(c, 0, [Command(Op.ACQUIRE, host_id(2), service(9), 24)])
    assert _actions(list(c.deliver(1, data))) == [Acquire(service(9), 24)]
    # service(9) is in nobody's table: the leader has it released again
    c.run_until(1.5)
    assert c.holders(service(9)) == []
    assert [e.address for _, e in c.logged(1, Release)] == [service(9)]


def test_a_command_for_another_host_is_ignored() -> None:
    c = _started()
    data = forge(c, 0, [Command(Op.ACQUIRE, host_id(3), service(9), 24)])
    assert _actions(list(c.deliver(1, data))) == []


@pytest.mark.parametrize("state", ["not-ok", "quiesced", "serving"])
def test_acquire_is_refused(state: str) -> None:
    c = _started()
    address = service(9)
    if state == "not-ok":
        c.test_result(1, False)
    elif state == "quiesced":
        c.quiesce(1)
    else:
        address = service(2)
    c.run_until(1.05)
    before = dict(c.core(1).served.states)
    data = forge(c, 0, [Command(Op.ACQUIRE, host_id(2), address, 24)])
    effects = c.deliver(1, data)
    assert _actions(list(effects)) == []
    assert c.core(1).served.states == before
    if state == "serving":
        assert before == {service(2): AddrState.ONLINE}
        assert not [e for e in effects if isinstance(e, Event)]
