"""Wire versions and features in a group of mixed releases (rais.core.versions,
docs/protocol.md "Versions and features"): a host sends version 2 only while
every live member speaks it, else version 1 and a hello beside it; what a
hello says holds for its sender's epoch."""

from __future__ import annotations

import dataclasses

from clusterkit import Cluster, forge, make_config, service

from rais.core import wire
from rais.core.config import CoreConfig
from rais.core.effects import EventKind, Send
from rais.core.features import FEATURES
from rais.core.messages import Hello

OLD = {"wire_versions": (1,), "features": ()}


def old(config: CoreConfig) -> CoreConfig:
    return dataclasses.replace(config, **OLD)  # type: ignore[arg-type]


def sent_versions(c: Cluster, i: int, since: float) -> list[tuple[int, bool]]:
    """(version, is a hello) of every datagram host ``i`` sent since ``since``."""
    out = []
    for t, eff in c.nodes[i].log:
        if t >= since and isinstance(eff, Send):
            d = wire.decode(eff.data, group_tag=wire.group_tag("web"), keys=(b"clusterkit-key",))
            out.append((d.version, d.hello is not None))
    return out


def test_a_group_of_this_release_talks_version_2() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(2.0)
    for i in range(3):
        v = c.view(i)
        assert v.wire_version == 2
        assert v.common_features == FEATURES
        assert all(m.entry.features == FEATURES for m in v.members)
        assert set(sent_versions(c, i, 1.0)) == {(2, False)}
        assert c.core(i).drops().get("version", 0) == 0


def test_one_old_host_keeps_the_group_on_version_1_with_hellos() -> None:
    c = Cluster([make_config(1), old(make_config(2)), make_config(3)])
    c.run_until(3.0)
    assert len(c.leaders()) == 1
    for i in (0, 2):
        v = c.view(i)
        assert v.wire_version == 1
        assert v.common_features == ()
        # each new host knows the other is new (from its hellos)
        other = next(m for m in v.members if m.entry.id == c.nodes[2 - i].id)
        assert other.entry.versions == (1, 2) and other.entry.features == FEATURES
        olds = next(m for m in v.members if m.entry.id == c.nodes[1].id)
        assert olds.entry.versions == (1,) and olds.entry.features == ()
        sent = sent_versions(c, i, 2.0)
        assert set(sent) == {(1, False), (2, True)}
        assert sent.count((1, False)) == sent.count((2, True))
    # the old host hears every info and drops only the hellos, as the old release does
    v = c.view(1)
    assert all(m.live for m in v.members)
    assert c.core(1).drops()["version"] > 0
    assert set(sent_versions(c, 1, 0.0)) == {(1, False)}
    # every address is held, once
    for n in (1, 2, 3):
        assert len(c.holders(service(n))) == 1


def test_upgrading_the_last_old_host_moves_the_group_to_version_2() -> None:
    c = Cluster([make_config(1), old(make_config(2)), make_config(3)])
    c.run_until(2.0)
    c.nodes[1].config = make_config(2)
    c.restart(1)
    t = c.now
    c.run_until(t + 1.0)
    for i in range(3):
        assert c.view(i).wire_version == 2
        assert c.view(i).common_features == FEATURES
        assert set(sent_versions(c, i, t + 0.5)) == {(2, False)}


def test_downgrading_a_host_moves_the_group_back_to_version_1_at_once() -> None:
    c = Cluster([make_config(n) for n in (1, 2, 3)])
    c.run_until(2.0)
    c.nodes[2].config = old(make_config(3))
    c.restart(2)
    t = c.now
    c.run_until(t + 1.0)
    for i in (0, 1):
        v = c.view(i)
        assert v.wire_version == 1 and v.common_features == ()
    # within one heartbeat of the old host's first info, the others talk version 1
    first_old = min(tt for tt, eff in c.nodes[2].log if tt >= t and isinstance(eff, Send))
    for i in (0, 1):
        v2_after = [
            tt
            for tt, eff in c.nodes[i].log
            if isinstance(eff, Send)
            and tt > first_old + 0.1 + 0.002
            and wire.decode(
                eff.data, group_tag=wire.group_tag("web"), keys=(b"clusterkit-key",)
            ).version
            == 2
            and wire.decode(
                eff.data, group_tag=wire.group_tag("web"), keys=(b"clusterkit-key",)
            ).hello
            is None
        ]
        assert v2_after == []
    # the old host was never lost by anyone
    assert not [e for _, e in c.all_events(EventKind.HOST_LOST)]
    assert c.view(2).members[0].entry.id == c.nodes[2].id
    assert all(m.live for m in c.view(2).members)


def test_a_hello_counts_only_for_its_epoch() -> None:
    c = Cluster([make_config(1), old(make_config(2)), make_config(3)])
    c.run_until(2.0)
    core = c.core(0)
    host3 = c.nodes[2].id
    # host 3 restarts as the old release: its new epoch has no hello, so the
    # hello of its previous epoch no longer counts
    c.nodes[2].config = old(make_config(3))
    c.restart(2)
    c.run_until(c.now + 0.5)
    rec = core.members.records[host3]
    assert rec.entry.versions == (1,) and rec.entry.features == ()
    # a stale hello (from the older epoch) changes nothing
    stale = wire.encode_hello_datagram(
        Hello((1, 2), FEATURES),
        group_tag=wire.group_tag("web"),
        sender=host3,
        epoch=c.nodes[2].epoch - 1,
        seq=5,
        key=b"clusterkit-key",
    )
    c.deliver(0, stale)
    assert core.members.records[host3].entry.features == ()


def test_an_unknown_must_understand_section_is_dropped_and_counted() -> None:
    c = Cluster([make_config(n) for n in (1, 2)])
    c.run_until(1.0)
    node = c.nodes[1]
    forged = wire.decode(forge(c, 1), group_tag=wire.group_tag("web"), keys=(b"clusterkit-key",))
    assert forged.message is not None
    msg = forged.message
    entry = dataclasses.replace(msg.entry, versions=(1, 2), features=FEATURES)
    rich = dataclasses.replace(msg, entry=entry, unknown=((0xC0, b"new"),))
    (data,), _ = wire.encode(
        rich,
        group_tag=wire.group_tag("web"),
        sender=node.id,
        epoch=node.epoch,
        seq=node.core.sender.seq + 10,
        key=b"clusterkit-key",
        version=2,
    )
    before = c.core(0).drops().get("unsupported", 0)
    c.deliver(0, data)
    assert c.core(0).drops()["unsupported"] == before + 1
    # a skippable unknown section is read past
    skippable = dataclasses.replace(rich, unknown=((0x40, b"new"),))
    (data,), _ = wire.encode(
        skippable,
        group_tag=wire.group_tag("web"),
        sender=node.id,
        epoch=node.epoch,
        seq=node.core.sender.seq + 20,
        key=b"clusterkit-key",
        version=2,
    )
    drops = dict(c.core(0).drops())
    heard = c.core(0).members.records[node.id].last_heard
    c.deliver(0, data)
    assert c.core(0).drops() == drops
    assert c.core(0).members.records[node.id].last_heard > heard
