"""Duplicate addresses after a partition heals: one keeper, who announces again."""

from __future__ import annotations

from clusterkit import HEARTBEAT, Cluster, make_config, partition, service

from rais.core.addr import Addr
from rais.core.effects import Announce


def _heal_and_check(c: Cluster, healed: float, address: Addr, keeper: int) -> None:
    """Within two heartbeats of ``healed`` only ``keeper`` holds ``address``, and it
    announced the address after the last other holder's release completed."""
    assert c.holders(address) == [keeper]
    released = [
        end
        for n in c.nodes
        if n.index != keeper
        for a, _, end in n.claims
        if a == address and end is not None and end > healed
    ]
    assert released, "somebody else had to let go"
    announces = [t for t, e in c.logged(keeper, Announce) if e.address == address]
    assert any(t >= max(released) for t in announces)


def _split(c: Cluster, sides: tuple[list[int], list[int]], start: float, end: float) -> None:
    c.run_until(start)
    c.drop = partition(*sides)
    c.run_until(end)
    c.drop = None


def test_the_preferred_host_keeps_its_address() -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3), make_config(4, spare=True)])
    _split(c, ([0, 1], [2, 3]), 1.0, 2.0)
    # both halves served everything
    assert c.holders(service(1)) == [0, 3]
    assert c.holders(service(2)) == [1, 3]
    assert len(c.holders(service(3))) == 2
    c.run_until(2.0 + 2 * HEARTBEAT)
    for i in range(3):
        _heal_and_check(c, 2.0, service(i + 1), i)
    assert c.nodes[3].held == set()


def test_a_quiesced_preferred_host_gives_way_to_a_spare() -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3), make_config(4, spare=True)])
    c.run_until(1.0)
    c.drop = partition([0, 1], [2, 3])
    c.run_until(1.9)
    c.quiesce(1)  # keeps what it has, in its half
    c.run_until(2.0)
    c.drop = None
    assert c.holders(service(2)) == [1, 3]
    c.run_until(2.0 + 2 * HEARTBEAT)
    _heal_and_check(c, 2.0, service(2), 3)
    _heal_and_check(c, 2.0, service(1), 0)
    assert c.nodes[1].held == set()


def test_without_preferred_or_spare_a_random_claimant_keeps_it() -> None:
    keepers = set()
    for seed in range(8):
        c = Cluster([make_config(n) for n in (1, 2, 3, 4)], seed=seed)
        c.run_until(0.5)
        c.kill(3)  # service(4) has no preferred host from now on
        c.run_until(1.0)
        (first,) = c.holders(service(4))
        _split(c, ([0, 1], [2]), 1.0, 2.0)
        holders = c.holders(service(4))
        assert len(holders) == 2 and first in holders
        c.run_until(2.0 + 2 * HEARTBEAT)
        (keeper,) = c.holders(service(4))
        assert keeper in holders
        keepers.add(keeper)
        _heal_and_check(c, 2.0, service(4), keeper)
        for n in (1, 2, 3):
            assert c.holders(service(n)) == [n - 1]
    assert len(keepers) > 1
