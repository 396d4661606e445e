"""Restarting an agent in place (``rais pause``, rais.core.pause): the group keeps
the pausing host's addresses where they are for the window it announced; past
the window a silent host is lost as any other."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from clusterkit import Cluster, host_id, make_config, service

from rais.core.core import Core
from rais.core.effects import Announce, EventKind, Release
from rais.core.messages import AddrState


def _started(n: int = 3, **kw: object) -> Cluster:
    c = Cluster([make_config(i, **kw) for i in range(1, n + 1)])  # type: ignore[arg-type]
    c.run_until(1.0)
    assert c.leaders() == {host_id(1)}
    return c


def _pause(c: Cluster, i: int, duration: float) -> None:
    refused: list[str | None] = []
    c.poke(i, lambda core, now: refused.append(core.pause(now, duration)))
    assert refused == [None]


def _watch(c: Cluster, until: float, address: bytes, holder: int) -> None:
    """Run to ``until`` in 10 ms steps; ``address`` stays on ``holder`` alone."""
    while c.now < until:
        c.step(0.010)
        assert c.holders(address) == [holder], c.now


def test_an_in_place_restart_moves_nothing() -> None:
    c = _started()
    t0 = c.now
    _pause(c, 1, 3.0)
    c.step(0.005)
    assert [e.reason for e in c.events(0, EventKind.HOST_PAUSED)] == ["host 192.0.2.2: for 3000 ms"]
    assert c.view(0).members[1].paused_s == pytest.approx(3.0, abs=0.01)
    c.stop_in_place(1)
    _watch(c, t0 + 2.0, service(2), 1)
    # silent for far longer than the timeout, and still a member with its address
    view = c.view(0)
    member = next(m for m in view.members if m.id == host_id(2))
    assert member.live and member.paused_s == pytest.approx(1.0, abs=0.02)
    assert view.holders()[service(2)] == [(host_id(2), AddrState.ONLINE)]
    c.restart(1, resume=True)
    assert c.core(1).holding(service(2)) == AddrState.ONLINE
    assert [e.address for e in c.events(1, EventKind.RESUMED)] == [service(2)]
    assert [t for t, a in c.logged(1, Announce) if a.address == service(2) and t >= t0 + 2.0]
    _watch(c, t0 + 6.0, service(2), 1)
    assert c.all_events(EventKind.HOST_LOST) == []
    assert [a for a in c.acquires(service(2)) if a[0] > t0] == []
    assert [r for _, r in c.logged(1, Release)] == []
    assert len(c.events(0, EventKind.HOST_RESUMED)) == 1
    assert c.view(0).members[1].paused_s is None
    assert c.leaders() == {host_id(1)}


def test_the_leader_pausing_hands_the_lead_over_and_nothing_moves() -> None:
    c = _started()
    t0 = c.now
    _pause(c, 0, 3.0)
    c.step(0.010)
    assert c.leaders() == {host_id(2)}
    c.stop_in_place(0)
    _watch(c, t0 + 2.5, service(1), 0)
    c.restart(0, resume=True)
    _watch(c, t0 + 5.0, service(1), 0)
    assert c.all_events(EventKind.HOST_LOST) == []
    assert c.leaders() == {host_id(1)}  # back once settled


def test_past_its_window_a_silent_host_is_lost_and_its_address_taken_over() -> None:
    c = _started()
    t0 = c.now
    _pause(c, 1, 3.0)
    c.step(0.005)
    c.stop_in_place(1)
    c.run_until(t0 + 2.0)
    c.kernel_drop(1)  # its kernel lifetime ran out first (rais.core.pause.KERNEL_MARGIN)
    c.run_until(t0 + 2.99)
    assert c.all_events(EventKind.HOST_LOST) == []
    assert c.acquires(service(2))[-1][0] < t0
    c.run_until(t0 + 3.2)
    lost = c.all_events(EventKind.HOST_LOST)
    assert {i for i, _ in lost} == {0, 2}
    assert all(e.reason == "host 192.0.2.2: its pause ran out" for _, e in lost)
    assert all(t0 + 3.0 <= e.time <= t0 + 3.01 for _, e in lost)
    ((t, taker),) = [a for a in c.acquires(service(2)) if a[0] > t0]
    assert taker in (0, 2) and t <= t0 + 3.02
    assert c.overlapping_claims(service(2)) == []


def test_a_paused_host_is_given_nothing_and_keeps_its_own() -> None:
    c = _started()
    _pause(c, 1, 10.0)
    c.step(0.005)
    c.stop_in_place(1)
    c.kill(2)
    c.step(1.0)
    assert c.holders(service(3)) == [0]
    assert c.holders(service(2)) == [1]


def test_a_restart_without_a_resume_hands_over_as_today() -> None:
    c = _started()
    t0 = c.now
    _pause(c, 1, 3.0)
    c.step(0.005)
    c.stop_in_place(1)
    c.step(0.5)
    c.restart(1)  # the record was not used: the leftover is removed
    assert c.holders(service(2)) == []
    c.step(2.0)
    assert c.holders(service(2)) == [1]  # the leader gave it back to its preferred host
    assert [i for t, i in c.acquires(service(2)) if t > t0] == [1]


def test_a_pause_that_runs_out_with_the_process_running_ends() -> None:
    c = _started()
    t0 = c.now
    _pause(c, 0, 2.0)
    c.step(0.01)
    assert c.leaders() == {host_id(2)}
    c.run_until(t0 + 2.5)
    assert [e.kind for e in c.events(0) if e.time >= t0] == [
        EventKind.PAUSED,
        EventKind.LEADER_CHANGED,
        EventKind.PAUSE_ENDED,
        EventKind.LEADER_CHANGED,
    ]
    assert len(c.events(1, EventKind.HOST_RESUMED)) == 1
    assert c.leaders() == {host_id(1)}
    assert c.all_events(EventKind.HOST_LOST) == []


def test_refusals() -> None:
    c = _started()
    refused: list[str | None] = []
    for duration in (1.0, 301.0):

        def ask(core: Core, now: float, d: float = duration) -> None:
            refused.append(core.pause(now, d))

        c.poke(0, ask)
    assert refused == [
        "a pause must last from 2s to 300s, not 1s",
        "a pause must last from 2s to 300s, not 301s",
    ]
    assert c.core(0).pause_lacking() == []
    c.leave(2)
    c.poke(2, lambda core, now: refused.append(core.pause(now, 5.0)))
    assert refused[-1] == "this host is leaving the group"
    assert c.events(2, EventKind.PAUSED) == []


def test_a_host_without_the_feature_is_named() -> None:
    old = replace(make_config(3), wire_versions=(1,), features=())
    c = Cluster([make_config(1), make_config(2), old])
    c.run_until(1.0)
    assert c.core(0).pause_lacking() == [host_id(3)]
    assert c.core(1).pause_lacking() == [host_id(3)]
    refused: list[str | None] = []
    c.poke(0, lambda core, now: refused.append(core.pause(now, 5.0)))
    assert refused == ["group web: 192.0.2.3 cannot keep a pause"]
    assert c.events(0, EventKind.PAUSED) == []


def test_the_entry_counts_the_pause_down() -> None:
    core = Core(make_config(5, spare=True), epoch=1, rng=random.Random(1), now=0.0)
    assert core.pause(0.0, 5.0) is None
    assert core.entry().pause_ms == 5000
    assert core.view(0.0).members[0].paused_s == 5.0
    core.handle_timer(1.5)
    assert core.entry().pause_ms == 3500
    assert core.get_timer() is not None and core.get_timer() <= 5.0  # type: ignore[operator]
    core.handle_timer(5.0)
    assert core.entry().pause_ms == 0
    assert core.view(5.0).members[0].paused_s is None


def test_a_host_that_boots_during_a_pause_learns_it_from_the_others() -> None:
    """Host 1 (the leader, lowest id) restarts while host 2 is paused: it never
    heard host 2's pause, and learns it from the others' relays (PAUSED), so
    once it leads again it takes nothing from host 2."""
    c = _started()
    t0 = c.now
    _pause(c, 1, 4.0)
    c.step(0.005)
    c.stop_in_place(1)
    c.restart(0)
    _watch(c, t0 + 3.0, service(2), 1)
    assert c.leaders() == {host_id(1)}  # led again once settled
    member = next(m for m in c.view(0).members if m.id == host_id(2))
    assert member.live and member.paused_s is not None
    assert [a for a in c.acquires(service(2)) if a[0] > t0] == []
    c.restart(1, resume=True)
    _watch(c, t0 + 6.0, service(2), 1)
    assert c.all_events(EventKind.HOST_LOST) == []


def _paused_unheard_by_host_1(c: Cluster, duration: float) -> None:
    """Host 2 pauses for ``duration`` s and stops, and host 1 never hears its
    infos (only host 3's relays tell it of the pause)."""
    c.drop = lambda s, r, via: s == 1 and r == 0  # host 2's infos never reach host 1
    _pause(c, 1, duration)
    c.step(0.005)
    c.stop_in_place(1)


def test_a_host_that_missed_the_pause_info_learns_it_from_the_others() -> None:
    """The leader loses the one info that announced the pause; the others
    relay it before the leader's timeout, and nothing moves."""
    c = _started()
    t0 = c.now
    _paused_unheard_by_host_1(c, 3.0)
    c.drop = None
    _watch(c, t0 + 2.0, service(2), 1)
    member = next(m for m in c.view(0).members if m.id == host_id(2))
    assert member.live and member.paused_s is not None
    assert c.events(0, EventKind.HOST_LOST) == []


def test_a_relayed_pause_outlasts_a_silence_of_its_relayer() -> None:
    """Host 1 misses the info that announced host 2's pause and learns it from
    host 3's relays only; then it hears nothing at all for longer than the
    timeout (a loss burst). Host 3 said nothing else, so the pause still holds
    for host 1, to the window's end: host 1, alone and leading, takes host 3's
    address (a failover as any) but not host 2's (found by the simulator,
    ``rais sim --hosts 3 --spares 1 --duration 60 --seed 74 --loss 0.05
    --faults random``)."""
    c = _started()
    t0 = c.now
    _paused_unheard_by_host_1(c, 3.0)
    c.step(0.3)  # host 3's relays reach host 1
    member = next(m for m in c.view(0).members if m.id == host_id(2))
    assert member.live and member.paused_s is not None
    c.drop = lambda s, r, via: r == 0  # a burst: host 1 hears nobody
    _watch(c, c.now + 0.5, service(2), 1)
    assert [h for h, e in c.all_events(EventKind.HOST_LOST) if h == 0]  # host 3 lost
    c.drop = None
    _watch(c, t0 + 2.0, service(2), 1)
    assert [a for a in c.acquires(service(2)) if a[0] > t0] == []


def test_a_relayed_pause_its_relayer_no_longer_relays_lapses() -> None:
    """Host 1 knows host 2's pause from host 3's relays only. Host 2 comes back
    and crashes before host 1 hears it (its infos never reach host 1); host 3,
    which heard it back, relays it no more, so host 1's pause lapses one
    timeout after the last relay, not at the window's end."""
    c = _started()
    _paused_unheard_by_host_1(c, 4.0)
    c.step(0.5)
    c.restart(1, resume=True)
    c.step(0.3)  # host 3 hears host 2 back
    c.kill(1)
    back = c.now
    c.run_until(back + 1.0)
    lost = [e.reason for e in c.events(0, EventKind.HOST_LOST)]
    assert lost == ["host 192.0.2.2: its pause ran out"], "held to the window's end"
