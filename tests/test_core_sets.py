"""Address sets in the core: a preferred address with other addresses that move
as one unit, brought whole only while every live member announces ``sets``
(rais.core.served, docs/protocol.md "Address sets")."""

from __future__ import annotations

from clusterkit import TIMEOUT, Cluster, host_id, make_config, service

from rais.core.addr import Addr, pack
from rais.core.effects import Acquire, Announce, EventKind, Release
from rais.core.messages import AddrState

V6 = pack("2001:db8::1")
V4B = pack("198.51.100.201")
SET1 = ((V6, 64), (V4B, 24))
"""The other addresses of host 1's set (its key: service(1))."""


def _group(*, old: bool = False, jitter: float = 0.0, seed: int = 0) -> Cluster:
    """Host 1 prefers a set of three addresses; host 2 a single one; host 3 is a
    spare (an old, version-1 host without features if ``old``)."""
    return Cluster(
        [
            make_config(1, extras=SET1),
            make_config(2),
            make_config(3, spare=True, old=old),
        ],
        jitter=jitter,
        seed=seed,
    )


def _set_addresses() -> list[Addr]:
    return [service(1), *(a for a, _ in SET1)]


def _where(c: Cluster) -> list[list[int]]:
    return [c.holders(a) for a in _set_addresses()]


def test_a_set_is_acquired_announced_and_released_as_one_unit() -> None:
    c = _group()
    c.run_until(1.0)
    assert _where(c) == [[0], [0], [0]]
    acquires = [e for _, e in c.logged(0, Acquire) if e.address == service(1)]
    assert acquires == [Acquire(service(1), 24, SET1)]
    assert Announce(service(1), 24, SET1) in [e for _, e in c.logged(0, Announce)]
    (s,) = c.view(0).sets
    assert (s.key, s.state, s.up, s.waiting, s.whole) == (
        service(1),
        AddrState.ONLINE,
        SET1,
        (),
        True,
    )
    assert not c.events(0, EventKind.SET_PARTIAL)
    # Every member knows the set from host 1's entry: one row, keyed by the first address.
    row = next(r for r in c.view(1).rows if r.address == service(1))
    assert row.extras == SET1
    assert c.view(1).set_of(V6) == (service(1), SET1)

    c.kill(0)
    c.run_until(2.0)
    assert _where(c) == [[2], [2], [2]]  # the spare took the whole set
    assert Acquire(service(1), 24, SET1) in [e for _, e in c.logged(2, Acquire)]

    c.restart(0)
    c.run_until(3.0)
    assert _where(c) == [[0], [0], [0]]  # failback, whole
    assert Release(service(1), 24, SET1) in [e for _, e in c.logged(2, Release)]
    for a in _set_addresses():
        assert c.overlapping_claims(a) == []


def test_with_an_old_host_live_the_set_brings_its_key_only_and_says_why() -> None:
    c = _group(old=True)
    c.run_until(1.0)
    assert _where(c) == [[0], [], []]
    (partial,) = c.events(0, EventKind.SET_PARTIAL)
    assert partial.address == service(1)
    assert "2001:db8::1/64 198.51.100.201/24" in partial.reason
    assert "192.0.2.3" in partial.reason  # the host that does not announce sets
    (s,) = c.view(0).sets
    assert (s.up, s.waiting) == ((), SET1)
    assert "192.0.2.3" in s.why

    # The old host goes: sets is common, the extras come, and it says so.
    c.kill(2)
    c.run_until(1.0 + TIMEOUT + 0.1)
    assert _where(c) == [[0], [0], [0]]
    assert Acquire(service(1), 24, SET1, extras_only=True) in [e for _, e in c.logged(0, Acquire)]
    (complete,) = c.events(0, EventKind.SET_COMPLETE)
    assert complete.address == service(1)
    assert c.view(0).sets[0].whole

    # It comes back: the extras go again, the key stays.
    c.restart(2)
    c.run_until(2.5)
    assert _where(c) == [[0], [], []]
    assert Release(service(1), 24, SET1, extras_only=True) in [e for _, e in c.logged(0, Release)]
    assert len(c.events(0, EventKind.SET_PARTIAL)) == 2
    assert not c.events(0, EventKind.RELEASED)  # the key never went


def test_a_release_during_an_extend_waits_for_it_and_takes_the_extras() -> None:
    c = _group(old=True)
    c.run_until(1.0)
    c.kill(2)
    # Run until the extend is in flight, then fail host 1's test: a release of
    # everything, which must wait for the extend and then take all of it.
    c.run_until_true(
        lambda: any(isinstance(e, Acquire) and e.extras_only for _, e in c.nodes[0].log),
        2.0,
    )
    assert c.core(0).holding(V6) == AddrState.ACQUIRING
    effects = c.test_result(0, False)
    assert not [e for e in effects if isinstance(e, Release)]  # not while the extend runs
    c.run_until(c.now + 0.05)
    releases = [e for _, e in c.logged(0, Release)]
    assert releases == [Release(service(1), 24, SET1)]
    assert c.nodes[0].held == set()
    c.run_until(c.now + 1.0)
    assert _where(c) == [[1], [1], [1]]  # host 2 took it whole (nobody old is live)


def test_a_failed_extend_leaves_the_extras_waiting_and_is_tried_again() -> None:
    c = _group(old=True)
    c.run_until(1.0)
    c.nodes[0].fail_next_acquire = True
    c.kill(2)
    c.run_until(1.0 + TIMEOUT + 0.05)
    assert _where(c) == [[0], [], []]
    partial = c.events(0, EventKind.SET_PARTIAL)[-1]
    assert "adding them failed" in partial.reason
    assert c.view(0).sets[0].waiting == SET1
    c.run_until(c.now + TIMEOUT + 0.05)
    assert _where(c) == [[0], [0], [0]]
    assert len(c.events(0, EventKind.SET_COMPLETE)) == 1


def test_any_address_of_a_set_names_the_set_for_move_and_failback() -> None:
    c = _group()
    c.run_until(1.0)
    why = c.core(1).move(c.now, V6, host_id(3), 1000)
    assert why is None
    assert c.core(1).requests.snapshot()[0].address == service(1)
    c.run_until(2.0)
    assert _where(c) == [[2], [2], [2]]
    assert c.core(1).failback(c.now, V4B, 2000) is None
    c.run_until(3.0)
    assert _where(c) == [[0], [0], [0]]
    assert c.core(1).is_service_address(V4B)
    assert c.core(0).key_of(V4B) == service(1)


def test_no_address_of_a_set_is_ever_on_two_hosts_under_jitter_and_restarts() -> None:
    for seed in range(4):
        c = _group(old=seed % 2 == 1, jitter=0.004, seed=seed)
        c.run_until(1.0)
        for _ in range(3):
            c.kill(0)
            c.run_until(c.now + 0.6)
            c.restart(0)
            c.run_until(c.now + 0.6)
        for a in _set_addresses():
            assert c.overlapping_claims(a) == [], (seed, a)
        assert len(c.holders(service(1))) == 1
