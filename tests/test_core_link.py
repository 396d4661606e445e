"""Link tracking in the core (issue 13): a host whose service link is down is
not fit (it releases everything, is given nothing, refuses acquires, and the
others see OK = false); it is fit again only after the carrier has stayed up
for ``link_hold``."""

from __future__ import annotations

from dataclasses import replace

import pytest
from clusterkit import TIMEOUT, Cluster, forge, host_id, make_config, service

from rais.core.config import CoreConfig
from rais.core.effects import Acquire, EventKind, Release
from rais.core.link import Link
from rais.core.messages import Command, Op

HOLD = 0.5


def _config(n: int, *, spare: bool = False, hold: float = HOLD) -> CoreConfig:
    return replace(make_config(n, spare=spare), link_hold=hold)


def _cluster(hold: float = HOLD) -> Cluster:
    """Hosts 1-3 with their own addresses and a spare (index 3), settled."""
    c = Cluster([_config(n, hold=hold) for n in (1, 2, 3)] + [_config(4, spare=True, hold=hold)])
    c.run_until(1.0)
    assert [c.holders(service(n)) for n in (1, 2, 3)] == [[0], [1], [2]]
    return c


def _link(c: Cluster, i: int, up: bool, reason: str) -> None:
    c.poke(i, lambda core, now: core.link_state(now, up, reason))


def test_link_down_releases_at_once_and_the_address_moves_within_a_heartbeat() -> None:
    c = _cluster()
    t0 = c.now
    _link(c, 1, False, "eth0: no carrier")
    (down,) = c.events(1, EventKind.LINK_DOWN)
    assert down.reason == "eth0: no carrier" and down.time == t0
    releases = [(t, e.address) for t, e in c.logged(1, Release) if t >= t0]
    assert releases == [(t0, service(2))]
    # the others hear OK = false in the info sent at once; the spare takes it
    taken = c.run_until_true(lambda: c.holders(service(2)) == [3], limit=0.2)
    assert taken - t0 < 0.02
    v = c.view(1)
    assert not v.ok and v.tests_ok and v.link.state == "down"
    assert v.link.reason == "eth0: no carrier" and v.link.since == t0
    (seen,) = [m for m in c.view(0).members if m.id == host_id(2)]
    assert seen.live and not seen.entry.ok  # what the leader (and a version-1 host) reads
    assert c.overlapping_claims(service(2)) == []


def test_a_host_with_its_link_down_refuses_acquires_and_gets_nothing() -> None:
    c = _cluster()
    _link(c, 1, False, "eth0: no carrier")
    c.step(0.2)
    effects = c.deliver(1, forge(c, 0, [Command(Op.ACQUIRE, host_id(2), service(9), 24)]))
    assert [e for e in effects if isinstance(e, Acquire)] == []
    c.step(3.0)
    assert not [t for t, _ in c.logged(1, Acquire) if t > 1.0]
    assert c.holders(service(2)) == [3]


def test_the_carrier_back_is_fit_only_after_the_hold_down() -> None:
    c = _cluster()
    _link(c, 1, False, "eth0: no carrier")
    c.step(1.0)
    back = c.now
    _link(c, 1, True, "eth0: carrier")
    v = c.view(1)
    assert not v.ok and v.link.state == "holding" and v.link.hold_left == pytest.approx(HOLD)
    assert c.events(1, EventKind.LINK_UP) == []
    c.step(HOLD - 0.01)
    assert not c.view(1).ok and c.holders(service(2)) == [3]
    c.run_until_true(lambda: c.view(1).ok, limit=0.02)
    (up,) = c.events(1, EventKind.LINK_UP)
    assert up.time == pytest.approx(back + HOLD) and "eth0: carrier" in up.reason
    assert c.view(1).link.state == "up" and c.view(1).link.hold_left is None
    # failback: released on the spare first, then acquired by its preferred host
    c.run_until_true(lambda: c.holders(service(2)) == [1], limit=0.3)
    assert c.overlapping_claims(service(2)) == []


def test_a_flap_during_the_hold_down_starts_it_over_without_events() -> None:
    c = _cluster()
    _link(c, 1, False, "eth0: no carrier")
    c.step(0.5)
    for _ in range(5):  # up 0.3 s, down 0.1 s: never up for the whole hold-down
        _link(c, 1, True, "eth0: carrier")
        c.step(0.3)
        _link(c, 1, False, "eth0: no carrier")
        c.step(0.1)
    assert len(c.events(1, EventKind.LINK_DOWN)) == 1
    assert c.events(1, EventKind.LINK_UP) == []
    assert c.holders(service(2)) == [3]
    assert len(c.acquires(service(2))) == 2  # at start, then the spare: no flapping


def test_a_hold_of_zero_is_fit_at_once() -> None:
    c = _cluster(hold=0.0)
    _link(c, 1, False, "eth0: admin down")
    c.step(0.5)
    _link(c, 1, True, "eth0: carrier")
    assert c.view(1).ok and len(c.events(1, EventKind.LINK_UP)) == 1
    c.run_until_true(lambda: c.holders(service(2)) == [1], limit=0.3)


def test_the_leader_with_its_link_down_keeps_leading_and_gives_its_address_away() -> None:
    c = _cluster()
    _link(c, 0, False, "eth0: no carrier")
    c.run_until_true(lambda: c.holders(service(1)) == [3], limit=0.2)
    assert c.leaders() == {host_id(1)}


def test_link_and_tests_are_both_needed() -> None:
    c = _cluster(hold=0.0)
    c.test_result(1, False)
    _link(c, 1, False, "eth0: no carrier")
    c.step(0.3)
    c.test_result(1, True)
    c.step(0.3)
    assert not c.view(1).ok and c.holders(service(2)) == [3]
    _link(c, 1, True, "eth0: carrier")
    c.run_until_true(lambda: c.holders(service(2)) == [1], limit=0.5)


def test_a_silent_host_with_its_link_down_is_replaced_after_the_timeout() -> None:
    """Control traffic over the same link: the host is cut off and releases on
    its own; the others take over when it times out."""
    cut = [False]
    c = Cluster(
        [_config(n) for n in (1, 2, 3)] + [_config(4, spare=True)],
        drop=lambda s, r, via: cut[0] and 1 in (s, r),
    )
    c.run_until(1.0)
    cut[0] = True
    _link(c, 1, False, "eth0: no carrier")
    c.step(0.002)
    assert c.holders(service(2)) == []  # released at once (action delay: 1 ms)
    t = c.run_until_true(lambda: c.holders(service(2)) == [3], limit=TIMEOUT + 0.2)
    assert t - 1.0 <= TIMEOUT + 0.1 + 0.01


def test_link_part_reports() -> None:
    link = Link(1.0, 0.0)
    assert link.view(0.0).state == "up"
    assert link.report(1.0, True, "up") is None  # already up: nothing
    assert link.report(2.0, False, "eth0: no carrier") == "down"
    assert link.report(2.5, False, "eth0: deleted") is None
    assert link.view(2.6).reason == "eth0: deleted" and link.view(2.6).since == 2.0
    assert link.report(3.0, True, "eth0: carrier") is None
    assert link.fit_at == 4.0 and not link.expire(3.99) and link.expire(4.0)
    assert link.view(4.0).state == "up"
