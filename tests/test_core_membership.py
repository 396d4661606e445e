"""Membership without reconfiguration, leader election and independent groups."""

from __future__ import annotations

import random

from clusterkit import (
    HEARTBEAT,
    KEY,
    TIMEOUT,
    Cluster,
    host_id,
    make_config,
    service,
)

from rais.core.addr import id_key, pack
from rais.core.config import CoreConfig
from rais.core.core import Core
from rais.core.effects import Acquire, EventKind
from rais.core.messages import AddrState


def test_every_host_ends_up_holding_its_own_preferred_address() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(1.0)
    for i, n in enumerate((1, 2, 3)):
        assert c.holders(service(n)) == [i]
        assert c.core(i).served.states == {service(n): AddrState.ONLINE}
        # every host knows the two others, live
        assert sorted(c.core(i).members.live_ids(), key=id_key) == [
            host_id(m) for m in (1, 2, 3) if m != n
        ]
    assert c.leaders() == {host_id(1)}


def test_a_new_host_joins_later_and_picks_up_its_address_without_reconfiguration() -> None:
    configs = [make_config(n) for n in (1, 2, 3)]
    c = Cluster(configs)
    c.run_until(1.0)
    new = c.add(make_config(4))
    joined_at = c.now
    c.run_until(2.0)

    assert c.holders(service(4)) == [new]
    (t, i), *_ = [a for a in c.acquires(service(4))]
    assert i == new
    assert t - joined_at <= 2 * HEARTBEAT
    # the others' configurations are the very same objects and never named host 4
    for i, cfg in enumerate(configs):
        assert c.nodes[i].config is cfg
        assert host_id(4) not in cfg.control and cfg.preferred != service(4)
        assert c.core(i).members.is_live(host_id(4))
        assert [e.kind for e in c.events(i, EventKind.HOST_JOINED)][-1] == EventKind.HOST_JOINED
        assert c.holders(service(i + 1)) == [i]
    # the leader's table learnt the new row from host 4's own info
    row = c.core(0).table.rows[service(4)]
    assert row.preferred == host_id(4) and row.prefixlen == 24 and row.deadline is None
    assert c.leaders() == {host_id(1)}


def test_hot_spares_hold_nothing_while_everyone_is_healthy() -> None:
    c = Cluster(
        [make_config(1), make_config(2), make_config(3, spare=True), make_config(4, spare=True)]
    )
    c.run_until(3.0)
    for spare in (2, 3):
        assert c.nodes[spare].held == set()
        assert c.logged(spare, Acquire) == []
        assert c.core(spare).served.states == {}
    assert c.holders(service(1)) == [0]
    assert c.holders(service(2)) == [1]


def test_leader_is_the_lowest_id_whatever_the_start_order() -> None:
    c = Cluster([make_config(n) for n in (5, 3, 9, 4)])
    c.run_until(1.0)
    assert c.leaders() == {host_id(3)}
    assert [n.core.is_leader for n in c.nodes] == [False, True, False, False]


def _v6_config(text: str, service_text: str) -> CoreConfig:
    return CoreConfig(
        group="web",
        control=(pack(text),),
        keys=(KEY,),
        heartbeat=HEARTBEAT,
        timeout=TIMEOUT,
        preferred=pack(service_text),
        prefixlen=64,
    )


def test_ipv4_ids_sort_before_ipv6_ids() -> None:
    ids = [pack("::1"), pack("255.255.255.255"), pack("2001:db8::1")]
    assert min(ids, key=id_key) == pack("255.255.255.255")
    c = Cluster(
        [
            _v6_config("2001:db8::1", "2001:db8:1::1"),
            _v6_config("::2", "2001:db8:1::2"),
            make_config(200),
        ]
    )
    c.run_until(1.0)
    assert c.leaders() == {host_id(200)}
    # and everybody serves its own address, v6 included
    assert c.holders(pack("2001:db8:1::1")) == [0]
    assert c.holders(pack("2001:db8:1::2")) == [1]
    assert c.holders(service(200)) == [2]


def test_leadership_moves_to_the_next_lowest_after_timeout_without_any_handshake() -> None:
    c = Cluster([make_config(n) for n in (1, 2)])
    c.run_until(0.05)
    c.add(make_config(3))  # a different heartbeat phase from the others
    c.run_until(1.02)
    c.kill(0)
    last = c.last_send(0)
    c.run_until(2.0)
    assert c.leaders() == {host_id(2)}
    for i in (1, 2):
        # each survivor switches on its own timer, the moment host 1 times out in
        # its own view: nothing is exchanged about it
        heard = c.core(i).members.records[host_id(1)].last_heard
        changes = [e.time for e in c.events(i, EventKind.LEADER_CHANGED) if e.time > 1.0]
        lost = [e.time for e in c.events(i, EventKind.HOST_LOST)]
        assert changes == lost
        assert heard + TIMEOUT <= changes[0] <= heard + TIMEOUT + 0.002
        assert last + TIMEOUT <= changes[0] <= last + TIMEOUT + 0.005


def test_a_restarted_lower_host_leads_again_only_once_settled() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(1.0)
    c.kill(0)
    c.run_until(2.0)
    assert c.leaders() == {host_id(2)}
    c.restart(0)
    back = c.now
    c.run_until(back + TIMEOUT - 0.01)
    assert c.leaders() == {host_id(2)}
    assert not c.core(0).settled
    c.run_until(back + TIMEOUT + 0.01)
    assert c.core(0).settled
    assert c.leaders() == {host_id(1)}
    c.run_until(3.0)
    assert c.holders(service(1)) == [0]


def test_a_host_in_two_groups_runs_two_independent_cores() -> None:
    web = [make_config(n, group="web") for n in (1, 2)]
    mail = [make_config(n, group="mail", preferred=service(10 + n)) for n in (1, 2)]
    c = Cluster(web + mail)
    c.run_until(1.0)
    assert c.holders(service(1)) == [0] and c.holders(service(2)) == [1]
    assert c.holders(service(11)) == [2] and c.holders(service(12)) == [3]
    for i in range(4):
        core = c.core(i)
        # each core only knows the other host of its own group
        assert list(core.members.records) == [host_id(2 if i % 2 == 0 else 1)]
        assert core.leader == host_id(1)
        assert core.drops()["group"] > 0
        assert set(core.table.rows) == (
            {service(1), service(2)} if i < 2 else {service(11), service(12)}
        )
    # a failure in one group leaves the other alone
    c.test_result(1, False)
    c.run_until(2.0)
    assert c.holders(service(2)) == [0]
    assert c.holders(service(12)) == [3]
    assert c.core(3).ok


def test_settling_counts_from_when_the_host_starts_listening() -> None:
    core = Core(make_config(1), epoch=1, rng=random.Random(1), now=10.0)
    core.handle_timer(10.0)
    core.start_listening(10.2)  # the control channel opened 0.2 s after the core
    assert core.get_timer() is not None
    core.handle_timer(10.0 + TIMEOUT + 0.01)
    assert not core.settled  # a timeout after creation, but not after listening
    assert not core.is_leader
    core.handle_timer(10.2 + TIMEOUT)
    assert core.settled and core.is_leader
    core.start_listening(20.0)  # once settled, stays settled
    assert core.settled


def test_start_listening_never_brings_settling_forward() -> None:
    core = Core(make_config(1), epoch=1, rng=random.Random(1), now=10.0)
    core.start_listening(9.0)
    core.handle_timer(10.0 + TIMEOUT - 0.01)
    assert not core.settled
    core.handle_timer(10.0 + TIMEOUT)
    assert core.settled
