"""Graceful leave: release everything, say goodbye, get reassigned at once."""

from __future__ import annotations

from clusterkit import KEY, Cluster, forge, host_id, make_config, service

from rais.core import wire
from rais.core.effects import EventKind, Release, Send
from rais.core.messages import Command, Op


def _entries(c: Cluster, i: int, after: float) -> list[tuple[bool, bool]]:
    """(leaving, quiesced) of every info host ``i`` sent after ``after``."""
    out = []
    for t, send in c.logged(i, Send):
        if t < after:
            continue
        d = wire.decode(send.data, group_tag=wire.group_tag("web"), keys=(KEY,))
        assert d.message is not None
        out.append((d.message.entry.leaving, d.message.entry.quiesced))
    return out


def test_leave_releases_everything_then_the_leader_reassigns_at_once() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(1.043)
    t0 = c.now
    effects = c.leave(1)
    assert Release(service(2), 24) in effects
    assert not c.core(1).left  # not before the release completed
    c.run_until(t0 + 0.020)
    assert c.core(1).left
    assert c.nodes[1].held == set()
    ((t, taker),) = [a for a in c.acquires(service(2)) if a[0] > 1.0]
    assert taker in (0, 2) and t - t0 <= 0.020
    assert c.holders(service(2)) == [taker]
    (left,) = c.events(0, EventKind.HOST_LEFT)
    assert left.time - t0 <= 0.020
    assert not c.core(0).members.is_live(host_id(2))
    # the goodbye goes out twice and is the host's last word
    infos = _entries(c, 1, t0)
    assert infos[-2:] == [(True, True), (True, True)]
    assert all(not leaving for leaving, _ in infos[:-2])
    sent = len(c.logged(1, Send))
    c.run_until(3.0)
    assert len(c.logged(1, Send)) == sent
    assert c.core(1).get_timer() is None
    # nobody later mistakes the departure for a crash
    assert c.all_events(EventKind.HOST_LOST) == []
    assert c.holders(service(2)) == [taker]


def test_the_leader_leaving_hands_over_at_once() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(1.043)
    t0 = c.now
    c.leave(0)
    c.run_until(t0 + 0.020)
    assert c.core(0).left
    assert c.leaders() == {host_id(2)}
    ((t, taker),) = [a for a in c.acquires(service(1)) if a[0] > 1.0]
    assert taker in (1, 2) and t - t0 <= 0.020


def test_a_spare_with_nothing_to_release_leaves_at_once() -> None:
    c = Cluster([make_config(1), make_config(2, spare=True)])
    c.run_until(1.0)
    c.leave(1)
    assert c.core(1).left
    c.run_until(1.01)
    assert [e.kind for e in c.events(0) if e.time >= 1.0] == [EventKind.HOST_LEFT]
    assert c.leave(1) == []


def test_leave_while_an_acquire_is_running_releases_it_when_done() -> None:
    c = Cluster([make_config(n) for n in (1, 2)])
    c.run_until(1.0)
    c.deliver(1, forge(c, 0, [Command(Op.ACQUIRE, host_id(2), service(9), 24)]))
    c.leave(1)  # service(9) is still being acquired
    assert not c.core(1).left
    c.run_until(1.02)
    assert c.core(1).left
    assert c.nodes[1].held == set()
    assert {e.address for _, e in c.logged(1, Release)} == {service(2), service(9)}
    assert c.holders(service(2)) == [0]
