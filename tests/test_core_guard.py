"""The guard's rules on real cores in the deterministic cluster (rais.core.guard;
docs/protocol.md, "The guard")."""

from __future__ import annotations

import dataclasses
import math

import pytest
from clusterkit import Cluster, host_id, make_config, partition, service

from rais.core import sections
from rais.core.body import DecodeError
from rais.core.config import KERNEL_SLACK, CoreConfig
from rais.core.effects import Campaign, EventKind
from rais.core.guard import GuardView, at_least, stamp_of, time_of
from rais.core.messages import GuardInfo, HostEntry, Message

LEASE = 2.0


def guarded(
    n: int, guard: str = "majority", voters: int = 5, on_arbiter_loss: str = "hold"
) -> CoreConfig:
    c = make_config(n, spare=n == 5)
    ids = tuple(host_id(i) for i in range(1, voters + 1)) if guard == "majority" else ()
    return dataclasses.replace(
        c, guard=guard, voters=ids, lease=LEASE, on_arbiter_loss=on_arbiter_loss
    )


def five(guard: str = "majority", on_arbiter_loss: str = "hold") -> Cluster:
    return Cluster([guarded(n, guard, on_arbiter_loss=on_arbiter_loss) for n in range(1, 6)])


def gview(c: Cluster, i: int) -> GuardView:
    view = c.view(i).guard
    assert view is not None
    return view


# ----------------------------------------------------------------- config, wire


def test_guard_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="voters"):
        dataclasses.replace(make_config(1), guard="majority")
    with pytest.raises(ValueError, match="lease"):
        dataclasses.replace(make_config(1), guard="etcd", lease=1.0)
    with pytest.raises(ValueError, match="unknown guard"):
        dataclasses.replace(make_config(1), guard="quorum")
    with pytest.raises(ValueError, match="on_arbiter_loss"):
        dataclasses.replace(make_config(1), on_arbiter_loss="keep")
    with pytest.raises(ValueError, match="twice"):
        dataclasses.replace(make_config(1), guard="majority", voters=(host_id(1), host_id(1)))


def test_stamps_wrap() -> None:
    now = 4294967.5  # the ms clock wraps here
    s = stamp_of(now - 0.25)
    assert time_of(s, now) == pytest.approx(now - 0.25)
    assert at_least(stamp_of(now + 1.0), stamp_of(now - 1.0))
    assert not at_least(stamp_of(now - 1.0), stamp_of(now + 1.0))


def _entry() -> HostEntry:
    return dataclasses.replace(
        HostEntry(host_id(1), (host_id(1),), True, False, False, False, True, 0, 0, None, 0, ()),
        versions=(1, 2),
    )


def test_guard_section_round_trips_and_is_strict() -> None:
    g = GuardInfo(123, host_id(2), True, 2**40, ((host_id(3), 7), (b"\x20\x01" + bytes(14), 9)))
    msg = Message(_entry(), (), (), (), guard=g)
    head, tail = sections.split_info(msg)
    body = head + sections.peers_section([]) + tail
    assert sections.decode_sections(body) == msg
    none = dataclasses.replace(g, vote=None, quorate=False, echoes=())
    plain = Message(_entry(), (), (), (), guard=none)
    head, tail = sections.split_info(plain)
    assert sections.decode_sections(head + sections.peers_section([]) + tail) == plain
    head, rest = sections.split_info(Message(_entry(), (), (), ()))
    start = head + sections.peers_section([]) + rest
    payload = sections.encode_guard(g)
    for cut in range(len(payload)):
        bad = start + sections.section(sections.GUARD, payload[:cut])
        with pytest.raises(DecodeError):
            sections.decode_sections(bad)
    flags = bytearray(payload)
    flags[4] |= 0x80
    bad = start + sections.section(sections.GUARD, bytes(flags))
    with pytest.raises(DecodeError, match="flags"):
        sections.decode_sections(bad)


def test_no_guard_sends_no_guard_section() -> None:
    c = Cluster([make_config(n) for n in (1, 2)])
    c.run_until(1.0)
    view = c.view(0)
    assert view.guard is not None and view.guard.mode == "none"
    assert c.core(0).lease_left(service(1), c.now) is None


# --------------------------------------------------------------------- quorum


def test_a_majority_serves_and_the_minority_releases() -> None:
    c = five()
    c.run_until(6.0)
    assert all(c.holders(service(n)) == [n - 1] for n in range(1, 5))
    assert gview(c, 0).quorate
    cut = c.now
    c.drop = partition([0, 1], [2, 3, 4])
    c.run_until(cut + 0.2)
    assert EventKind.QUORUM_LOST in [e.kind for e in c.events(0)]
    # The minority lets its leases run out (its leader's own from its last
    # quorate instant, one timeout after the cut)...
    c.run_until(cut + 0.3 + LEASE + 0.05)
    assert c.holders(service(1)) == [] and c.holders(service(2)) == []
    c.run_until(cut + 8.0)
    # ...and the majority took their addresses only once they surely had.
    for address in (service(1), service(2)):
        (when, host), *_ = [a for a in c.acquires(address) if a[0] > cut]
        assert host in (2, 3, 4) and when >= cut + LEASE + KERNEL_SLACK - 0.15
    assert all(len(c.holders(service(n))) == 1 for n in range(1, 5))
    c.drop = None
    heal = c.now
    # The leader is quorate again about a timeout after the heal; it hands
    # nothing back before every lease another leader gave has run out (rule 3),
    # and meanwhile every address stays where it is.
    for t in (0.5, 1.5, 2.5, 3.5):
        c.run_until(heal + t)
        assert all(len(c.holders(service(n))) == 1 for n in range(1, 5))
    c.run_until(heal + 0.5 + LEASE + KERNEL_SLACK + 0.5)
    assert all(c.holders(service(n)) == [n - 1] for n in range(1, 5))
    assert not any(c.overlapping_claims(service(n)) for n in range(1, 5))


def test_a_two_two_split_serves_nothing() -> None:
    c = Cluster([guarded(n, voters=4) for n in range(1, 5)])
    c.run_until(6.0)
    cut = c.now
    c.drop = partition([0, 1], [2, 3])
    c.run_until(cut + LEASE + KERNEL_SLACK + 2.0)
    assert all(c.holders(service(n)) == [] for n in range(1, 5))


def test_a_crashed_holder_moves_after_lease_and_slack() -> None:
    c = five()
    c.run_until(6.0)
    last = c.last_send(2)
    c.kill(2)
    c.run_until(c.now + 6.0)
    (when, host), *_ = [a for a in c.acquires(service(3)) if a[0] > last]
    assert host == 4  # the spare
    # its last info that got through was sent at most a heartbeat before
    assert last - 0.1 + LEASE + KERNEL_SLACK <= when <= last + LEASE + KERNEL_SLACK + 0.3


def test_a_minority_leader_sends_no_commands() -> None:
    c = five()
    c.run_until(6.0)
    c.drop = partition([0, 1], [2, 3, 4])
    c.run_until(c.now + 1.0)
    core = c.core(0)
    assert core.is_leader and not core.guard.quorate(c.now)
    assert core.control.pending() == ()


def test_pause_is_refused_with_a_guard() -> None:
    c = five()
    c.run_until(6.0)
    why = c.core(1).pause(c.now, 30.0)
    assert why is not None and "guard" in why


def test_lease_left_follows_the_leader() -> None:
    c = five()
    c.run_until(6.0)
    left = c.core(1).lease_left(service(2), c.now)
    assert left is not None and LEASE - 0.25 < left <= LEASE


# ----------------------------------------------------------------------- etcd


def _arbiter(c: Cluster, i: int, *, reachable: bool, held: bool, token: int = 7) -> None:
    until = c.now + 2.0 if held else 0.0

    def call(core: object, now: float) -> None:
        c.core(i).arbiter_state(now, reachable=reachable, held=held, token=token, until=until)

    c.poke(i, call)


def test_etcd_leader_campaigns_and_assigns_only_with_the_key() -> None:
    c = five("etcd")
    c.run_until(3.0)
    wants = [e for _, e in c.logged(0, Campaign)]
    assert wants and wants[-1].want
    assert not any(c.holders(service(n)) for n in range(1, 5))
    for _ in range(5):
        _arbiter(c, 0, reachable=True, held=True)
        c.run_until(c.now + 1.0)
    assert all(len(c.holders(service(n))) == 1 for n in range(1, 5))
    assert gview(c, 1).token == 7


def test_etcd_hold_keeps_addresses_while_everybody_still_names_the_leader() -> None:
    c = five("etcd")
    c.run_until(3.0)
    for _ in range(6):
        _arbiter(c, 0, reachable=True, held=True)
        c.run_until(c.now + 1.0)
    assert all(len(c.holders(service(n))) == 1 for n in range(1, 5))
    _arbiter(c, 0, reachable=False, held=True)
    c.run_until(c.now + 6.0)  # the key lapsed long ago: holding on
    assert all(len(c.holders(service(n))) == 1 for n in range(1, 5))
    assert gview(c, 0).holding
    c.kill(4)  # a member stops naming the leader: holding on ends
    c.run_until(c.now + LEASE + 1.0)
    assert not any(c.holders(service(n)) for n in range(1, 5))
    assert EventKind.QUORUM_LOST in [e.kind for e in c.events(0)]


def test_etcd_release_lets_leases_run_out() -> None:
    c = five("etcd", on_arbiter_loss="release")
    c.run_until(3.0)
    for _ in range(6):
        _arbiter(c, 0, reachable=True, held=True)
        c.run_until(c.now + 1.0)
    _arbiter(c, 0, reachable=False, held=True)
    c.run_until(c.now + 2.0 + LEASE + 0.5)
    assert not any(c.holders(service(n)) for n in range(1, 5))
    assert EventKind.ARBITER_LOST in [e.kind for e in c.events(0)]


def test_commands_of_an_older_token_are_ignored() -> None:
    c = five("etcd")
    c.run_until(3.0)
    core = c.core(2)
    core.guard.newest_token = 99  # it has seen a newer leader's key
    for _ in range(6):
        _arbiter(c, 0, reachable=True, held=True, token=7)
        c.run_until(c.now + 1.0)
    assert c.holders(service(3)) == []
    assert all(len(c.holders(service(n))) == 1 for n in (1, 2, 4))
    assert math.isfinite(c.now)
