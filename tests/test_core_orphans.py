"""The orphan countdown: expiry, no reassignment until the preferred host
returns, and a new leader inheriting the countdown."""

from __future__ import annotations

from clusterkit import Cluster, host_id, make_config, service

from rais.core.effects import Acquire, EventKind, Release

ORPHAN = 2.0


def _cluster(*numbers: int, spares: tuple[int, ...] = ()) -> Cluster:
    return Cluster(
        [make_config(n, orphan_timeout=ORPHAN) for n in numbers]
        + [make_config(n, spare=True, orphan_timeout=ORPHAN) for n in spares]
    )


def test_an_orphan_expires_and_waits_for_its_preferred_host() -> None:
    c = _cluster(1, 2, spares=(3,))
    c.run_until(1.0)
    c.kill(1)
    # the countdown runs from the last time the leader heard host 2 serving it
    heard = c.core(0).members.records[host_id(2)].last_heard
    c.run_until(2.0)
    assert c.holders(service(2)) == [2]
    c.run_until(5.0)

    (expired,) = c.events(0, EventKind.ORPHAN_EXPIRED)
    assert expired.address == service(2)
    assert heard + ORPHAN <= expired.time <= heard + ORPHAN + 0.005
    assert c.all_events(EventKind.ORPHAN_EXPIRED) == [(0, expired)]  # the leader only
    ((t_release, _),) = [(t, e) for t, e in c.logged(2, Release) if e.address == service(2)]
    assert expired.time <= t_release <= expired.time + 0.005
    assert c.holders(service(2)) == []
    assert service(2) not in c.core(0).table.rows
    assert c.core(0).table.expired == {service(2): host_id(2)}
    # never reassigned while host 2 stays away, not even by a new leader
    assert [a for a in c.acquires(service(2)) if a[0] > expired.time] == []
    c.kill(0)
    c.run_until(6.0)
    assert c.leaders() == {host_id(3)}
    assert [a for a in c.acquires(service(2)) if a[0] > expired.time] == []
    assert c.holders(service(1)) == [2]  # host 1's own orphan, still counting

    c.restart(1)
    back = c.now
    c.run_until(6.5)
    assert c.holders(service(2)) == [1]
    ((t, i),) = [a for a in c.acquires(service(2)) if a[0] > back]
    assert i == 1 and t - back < 0.05


def test_an_orphan_served_by_its_preferred_host_again_stops_counting() -> None:
    c = _cluster(1, 2, spares=(3,))
    c.run_until(1.0)
    c.kill(1)
    c.run_until(2.0)
    c.restart(1)
    c.run_until(5.0)  # well past the first countdown
    assert c.all_events(EventKind.ORPHAN_EXPIRED) == []
    assert c.holders(service(2)) == [1]
    assert c.core(0).table.rows[service(2)].deadline is None


def test_a_new_leader_inherits_the_countdown() -> None:
    c = _cluster(1, 2, 3, spares=(4,))
    c.run_until(1.0)
    c.kill(1)
    heard = c.core(0).members.records[host_id(2)].last_heard
    c.run_until(2.0)
    assert c.holders(service(2)) == [3]
    c.kill(0)  # midway through the countdown
    c.run_until(5.0)
    assert c.leaders() == {host_id(3)}
    expired = [e for _, e in c.all_events(EventKind.ORPHAN_EXPIRED) if e.address == service(2)]
    assert [e.host for e in expired] == [host_id(3)]
    assert heard + ORPHAN <= expired[0].time <= heard + ORPHAN + 0.010
    assert c.holders(service(2)) == []


def test_a_late_joiner_learns_the_countdown_from_the_leader_and_inherits_it() -> None:
    # host 3 starts after host 2 died: it only knows the countdown from the
    # leader's table, and keeps it when it becomes the leader itself
    c = _cluster(1, 2, spares=(4,))
    c.run_until(1.0)
    c.kill(1)
    heard = c.core(0).members.records[host_id(2)].last_heard
    c.run_until(1.5)
    late = c.add(make_config(3, orphan_timeout=ORPHAN))
    c.run_until(1.9)
    row = c.core(late).table.rows[service(2)]
    assert row.deadline is not None
    assert abs(row.deadline - (heard + ORPHAN)) <= 0.005
    c.kill(0)
    c.run_until(5.0)
    assert c.core(late).is_leader
    expired = [e for _, e in c.all_events(EventKind.ORPHAN_EXPIRED) if e.address == service(2)]
    assert [e.host for e in expired] == [host_id(3)]
    assert heard + ORPHAN <= expired[0].time <= heard + ORPHAN + 0.010
    assert c.holders(service(2)) == []
    assert c.holders(service(3)) == [late]
    # the spare was not told to let go early by the new leader
    ((t_release, _),) = [(t, e) for t, e in c.logged(2, Release) if e.address == service(2)]
    assert t_release >= expired[0].time
    assert [a for a in c.acquires(service(2)) if a[0] > 1.5] == []
    assert [e.address for _, e in c.logged(late, Acquire)] == [service(3)]
