"""Info messages, sequence numbers, epochs, duplicates, replays and bad input."""

from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass

from clusterkit import HEARTBEAT, KEY, TICK, TIMEOUT, Cluster, forge, host_id, make_config, service
from hypothesis import given, settings
from hypothesis import strategies as st

from rais.core import wire
from rais.core.addr import Addr
from rais.core.core import Core
from rais.core.effects import EventKind, Send
from rais.core.messages import AddrState, HostEntry, Message


def _seqs(c: Cluster, i: int) -> list[tuple[int, int]]:
    """(epoch, seq) of every datagram host ``i`` sent, in order."""
    tag = wire.group_tag(c.nodes[i].config.group)
    out = []
    for _, send in c.logged(i, Send):
        d = wire.decode(send.data, group_tag=tag, keys=(KEY,))
        assert d.sender == host_id(i + 1)
        out.append((d.epoch, d.seq))
    return out


def test_info_every_heartbeat_on_every_control_address() -> None:
    c = Cluster([make_config(n, networks=2) for n in (1, 2, 3)])
    c.run_until(3.0)
    for i in range(3):
        sends = c.logged(i, Send)
        assert sends and all(s.vias == (0, 1) for _, s in sends)
        times = [t for t, _ in sends]
        assert times[0] == 0.0
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= HEARTBEAT + TICK  # the clock moves in whole ticks
        # steady state: exactly one info per heartbeat
        steady = [t for t in times if 1.0 <= t < 3.0]
        assert len(steady) == round(2.0 / HEARTBEAT)
        # each datagram arrives twice (once per network) and is taken once
        assert c.core(i).drops()["duplicate"] > 0
        assert set(c.core(i).drops()) == {"duplicate"}


def test_sequence_numbers_strictly_ascend() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(2.0)
    c.kill(1)
    c.run_until(3.0)
    for i in range(3):
        seqs = _seqs(c, i)
        assert len(seqs) > 10
        assert all(b > a for a, b in itertools.pairwise(seqs)), i


def test_a_restart_with_a_higher_epoch_is_accepted_and_older_epochs_are_replays() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(1.0)
    old = [s.data for _, s in c.logged(2, Send)]
    c.kill(2)
    c.run_until(1.5)
    c.restart(2)
    c.run_until(2.5)
    epochs = {e for e, _ in _seqs(c, 2)}
    assert epochs == {1, 2}
    for i in (0, 1):
        core = c.core(i)
        assert core.drops().get("replay", 0) == 0
        rec = core.members.records[host_id(3)]
        assert rec.live and rec.last_heard > 2.4
    assert c.holders(service(3)) == [2]

    # the old incarnation's datagrams, even its newest, are now replays
    leader = c.core(0)
    before = (leader.entry(), leader.leader, dict(leader.served.states))
    heard = leader.members.records[host_id(3)].last_heard
    for k, data in enumerate((old[-1], old[0], old[len(old) // 2])):
        assert c.deliver(0, data) == []
        assert leader.drops()["replay"] == k + 1
    assert (leader.entry(), leader.leader, dict(leader.served.states)) == before
    assert leader.members.records[host_id(3)].last_heard == heard


def _pair() -> tuple[Core, Core]:
    a = Core(make_config(1, networks=2), epoch=1, rng=random.Random(1), now=0.0)
    b = Core(make_config(2, networks=2), epoch=1, rng=random.Random(2), now=0.0)
    return a, b


def _datagrams(core: Core) -> list[bytes]:
    return [e.data for e in core.effects() if isinstance(e, Send)]


def test_the_same_datagram_over_two_networks_is_processed_once() -> None:
    a, b = _pair()
    a.handle_timer(0.0)
    b.handle_timer(0.0)
    b.effects()
    (first,) = _datagrams(a)
    b.datagram_received(0.001, first, 0)
    assert [e for e in b.effects() if not isinstance(e, Send)] != []  # host-joined
    assert b.members.records[host_id(1)].last_heard == 0.001
    b.datagram_received(0.002, first, 1)
    assert b.effects() == []
    assert b.drops() == {"duplicate": 1}
    assert b.members.records[host_id(1)].last_heard == 0.001

    # a state change, delivered twice, is reported once
    a.quiesce(0.05)
    (change,) = _datagrams(a)
    b.datagram_received(0.051, change, 1)
    assert b.members.records[host_id(1)].entry.quiesced
    b.effects()
    state = (b.entry(), dict(b.members.records), b.leader)
    b.datagram_received(0.052, change, 0)
    assert b.effects() == []
    assert b.drops() == {"duplicate": 2}
    assert (b.entry(), dict(b.members.records), b.leader) == state


def test_window_reorder_is_accepted_and_far_behind_is_a_replay() -> None:
    a, b = _pair()
    sent: list[bytes] = []
    for k in range(80):
        a.handle_timer(k * HEARTBEAT)
        sent.extend(_datagrams(a))
    # newest first, then an older one still in the 64-wide window: not a
    # replay, but stale (it would turn the sender's state back), so not taken
    b.datagram_received(8.0, sent[70], 0)
    b.datagram_received(8.0, sent[60], 0)
    assert b.drops() == {"stale": 1}
    b.datagram_received(8.0, sent[60], 1)
    assert b.drops() == {"stale": 1, "duplicate": 1}
    b.datagram_received(8.0, sent[5], 0)
    assert b.drops() == {"stale": 1, "duplicate": 1, "replay": 1}
    b.datagram_received(8.0, sent[75], 0)  # newer again: taken
    assert sum(b.drops().values()) == 3


def test_a_late_older_message_never_turns_a_host_back() -> None:
    """Found by the stateful test: a spare's info showing an address acquiring,
    arriving after a newer one, made the leader think the acquire had failed."""
    a, b = _pair()
    a.handle_timer(0.0)
    old = _datagrams(a)
    a.quiesce(0.05)
    new = _datagrams(a)
    for data in new + old:  # the newer over a fast network, the older late
        b.datagram_received(0.1, data, 0)
    assert b.members.records[a.id].entry.quiesced
    assert b.drops() == {"stale": len(old)}


@dataclass(frozen=True)
class _Snapshot:
    entry: HostEntry
    leader: Addr | None
    served: dict[Addr, AddrState]
    peers: dict[Addr, tuple[HostEntry, float, bool]]
    rows: dict[Addr, tuple[Addr, float | None]]


def _snapshot(core: Core) -> _Snapshot:
    return _Snapshot(
        core.entry(),
        core.leader,
        dict(core.served.states),
        {h: (r.entry, r.last_heard, r.live) for h, r in core.members.records.items()},
        {a: (r.preferred, r.deadline) for a, r in core.table.rows.items()},
    )


def test_bad_input_changes_nothing_and_is_counted() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(1.05)
    core = c.core(0)
    before = _snapshot(core)
    base = sum(core.drops().values())
    rng = random.Random(7)
    good = c.logged(1, Send)[-1][1].data
    bad: list[bytes] = [b"", b"RS", bytes(1401), good + b"\x00"]
    bad += [rng.randbytes(rng.randrange(0, 1500)) for _ in range(200)]
    bad += [good[:n] for n in range(len(good))]  # every truncation
    for _ in range(200):  # single-bit flips anywhere
        pos = rng.randrange(len(good))
        bad.append(good[:pos] + bytes([good[pos] ^ (1 << rng.randrange(8))]) + good[pos + 1 :])
    # well-formed and fresh, but signed with a key the group does not have
    msg = Message(entry=c.core(1).entry(), peers=(), table=(), commands=())
    (wrong_key,), _ = wire.encode(
        msg,
        group_tag=wire.group_tag("web"),
        sender=host_id(2),
        epoch=1,
        seq=10**6,
        key=b"not the key",
    )
    bad.append(wrong_key)
    # right key, other group
    (other_group,), _ = wire.encode(
        msg, group_tag=wire.group_tag("mail"), sender=host_id(2), epoch=1, seq=10**6, key=KEY
    )
    bad.append(other_group)
    for k, data in enumerate(bad):
        assert c.deliver(0, data, via=k % 2) == []
    assert _snapshot(core) == before
    drops = core.drops()
    assert sum(drops.values()) - base == len(bad)
    assert drops["auth"] > 100 and drops["truncated"] >= len(good) - 1
    assert drops["oversized"] >= 1 and drops["group"] >= 1
    # and the cluster goes on as if nothing happened
    c.run_until(2.0)
    assert [c.holders(service(n)) for n in (1, 2, 3)] == [[0], [1], [2]]
    assert c.events(0, EventKind.HOST_LOST) == []


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=1500), via=st.integers(0, 1))
def test_random_bytes_never_change_a_core(data: bytes, via: int) -> None:
    a, b = _pair()
    a.handle_timer(0.0)
    for d in _datagrams(a):
        b.datagram_received(0.001, d, 0)
    b.effects()
    before = _snapshot(b)
    b.datagram_received(0.002, data, via)
    assert b.effects() == []
    assert _snapshot(b) == before
    assert sum(b.drops().values()) == 1


def test_a_forged_datagram_in_the_past_window_is_still_a_duplicate() -> None:
    # forge() takes the next sequence number; delivering it twice drops the second
    c = Cluster([make_config(n) for n in (1, 2)])
    c.run_until(1.0)
    data = forge(c, 1)
    c.deliver(0, data)
    assert c.deliver(0, data, via=0) == []
    assert c.core(0).drops()["duplicate"] == 1
    c.run_until(1.0 + TIMEOUT)
    assert c.core(0).members.is_live(host_id(2))


def test_split_messages_reordered_over_two_networks_still_work() -> None:
    configs = [
        dataclasses.replace(make_config(n, networks=2, spare=n == 4), max_datagram=90)
        for n in (1, 2, 3, 4)
    ]
    c = Cluster(configs, jitter=0.004)
    c.run_until(1.0)
    tag = wire.group_tag("web")
    parts = [wire.decode(s.data, group_tag=tag, keys=(KEY,)).parts for _, s in c.logged(0, Send)]
    assert max(parts) > 1
    assert [c.holders(service(n)) for n in (1, 2, 3)] == [[0], [1], [2]]
    c.kill(1)
    c.run_until(2.0)
    assert c.holders(service(2)) == [3]
    c.restart(1)
    c.run_until(3.0)
    assert [c.holders(service(n)) for n in (1, 2, 3)] == [[0], [1], [2]]
    assert c.nodes[3].held == set()
    for i in (0, 2, 3):
        assert c.core(i).drops()["duplicate"] > 0


def test_key_rotation_any_listed_key_is_accepted() -> None:
    old, new = b"old key", b"new key"
    c = Cluster(
        [
            make_config(1, keys=(new, old)),  # already signs with the new key
            make_config(2, keys=(old, new)),
            make_config(3, keys=(old, new)),
        ]
    )
    c.run_until(1.0)
    assert [c.holders(service(n)) for n in (1, 2, 3)] == [[0], [1], [2]]
    assert c.leaders() == {host_id(1)}
    for i in range(3):
        assert c.core(i).drops() == {}
    # a host that only knows the old key cannot hear the one signing with the new
    late = c.add(make_config(4, keys=(old,)))
    c.run_until(2.0)
    assert c.core(late).drops()["auth"] > 0
    assert not c.core(late).members.is_live(host_id(1))
