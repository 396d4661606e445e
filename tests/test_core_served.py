"""A host's own state: test failures and recovery, quiesce and unquiesce."""

from __future__ import annotations

import itertools

from clusterkit import HEARTBEAT, TICK, Cluster, host_id, make_config, service

from rais.core.effects import Event, EventKind, Release, Send
from rais.core.messages import AddrState


def _kinds(effects: list[object]) -> list[EventKind]:
    return [e.kind for e in effects if isinstance(e, Event)]


def test_a_failed_test_releases_everything_and_the_addresses_move() -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3, spare=True)])
    c.run_until(1.0)
    effects = c.test_result(1, False)
    assert Release(service(2), 24) in effects
    assert _kinds(list(effects)) == [EventKind.TEST_FAILED]
    assert any(isinstance(e, Send) for e in effects)  # says so at once
    assert not c.core(1).ok and not c.core(1).entry().ok
    c.run_until(1.01)
    assert not c.core(0).members.records[host_id(2)].entry.ok
    assert c.holders(service(2)) == [2]
    # no news is no news: the same result again changes nothing
    assert c.test_result(1, False) == []
    c.run_until(2.0)
    assert len(c.events(1, EventKind.TEST_FAILED)) == 1
    assert c.holders(service(2)) == [2]
    assert c.core(1).served.states == {}

    effects = c.test_result(1, True)
    assert _kinds(list(effects)) == [EventKind.TEST_RECOVERED]
    assert c.test_result(1, True) == []
    c.run_until(2.05)
    assert c.holders(service(2)) == [1]
    assert c.overlapping_claims(service(2)) == []
    assert len(c.events(1, EventKind.TEST_FAILED)) == 1
    assert len(c.events(1, EventKind.TEST_RECOVERED)) == 1
    # one event per transition
    c.test_result(1, False)
    c.test_result(1, False)
    c.run_until(2.5)
    assert len(c.events(1, EventKind.TEST_FAILED)) == 2
    assert c.holders(service(2)) == [2]


def test_a_failed_test_releases_every_address_held() -> None:
    c = Cluster([make_config(1), make_config(2)])
    c.run_until(1.0)
    c.kill(1)
    c.run_until(2.0)
    assert c.nodes[0].held == {service(1), service(2)}
    effects = c.test_result(0, False)
    released = {e.address for e in effects if isinstance(e, Release)}
    assert released == {service(1), service(2)}
    c.run_until(3.0)
    assert c.nodes[0].held == set()
    cannot = {e.address for _, e in c.all_events(EventKind.CANNOT_ASSIGN)}
    assert cannot == {service(1), service(2)}
    c.test_result(0, True)
    c.run_until(3.1)
    assert c.nodes[0].held == {service(1), service(2)}


def test_a_quiesced_host_keeps_its_addresses_gets_no_new_ones_and_still_heartbeats() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(1.0)
    assert _kinds(list(c.quiesce(1))) == [EventKind.QUIESCED]
    assert c.quiesce(1) == []
    c.run_until(1.5)
    assert c.core(0).members.records[host_id(2)].entry.quiesced
    c.kill(2)
    c.run_until(3.0)
    assert c.holders(service(2)) == [1]  # kept
    assert c.holders(service(3)) == [0]  # the only eligible host
    sends = [t for t, _ in c.logged(1, Send) if t >= 1.0]
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert len(sends) >= 2.0 / HEARTBEAT and max(gaps) <= HEARTBEAT + TICK

    assert _kinds(list(c.unquiesce(1))) == [EventKind.UNQUIESCED]
    c.run_until(3.1)
    assert not c.core(0).members.records[host_id(2)].entry.quiesced
    c.kill(0)
    c.run_until(4.0)
    assert c.nodes[1].held == {service(1), service(2), service(3)}


def test_a_quiesced_preferred_host_gets_no_failback_until_unquiesced() -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3, spare=True)])
    c.run_until(1.0)
    c.quiesce(1)
    c.test_result(1, False)
    c.run_until(1.5)
    assert c.holders(service(2)) == [2]
    c.test_result(1, True)
    c.run_until(2.5)
    assert c.holders(service(2)) == [2]  # quiesced: not given back
    c.unquiesce(1)
    c.run_until(2.6)
    assert c.holders(service(2)) == [1]
    assert c.overlapping_claims(service(2)) == []


def test_a_test_failure_during_an_acquire_releases_once_the_acquire_is_done() -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3, spare=True)])
    c.run_until(1.0)
    c.kill(1)
    c.run_until(2.0)
    c.restart(1)
    core = c.core(1)
    c.run_until_true(lambda: core.served.states.get(service(2)) == AddrState.ACQUIRING, 0.5)
    effects = c.test_result(1, False)
    assert not [e for e in effects if isinstance(e, Release)]  # actions never overlap
    c.run_until(c.now + 0.002)
    kinds = [e.kind for e in c.events(1) if e.address == service(2) and e.time > 2.0]
    assert kinds == [EventKind.ACQUIRED, EventKind.RELEASED]
    c.run_until(3.0)
    assert c.holders(service(2)) == [2]
    assert core.served.states == {}
