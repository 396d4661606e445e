"""Feeding bad datagrams to hosts (invariant I5): garbage, bit flips, a replay
and forgeries with the wrong key. Uses the world's public state only."""

from __future__ import annotations

from rais.core import wire
from rais.core.core import Core
from rais.sim.world import KEY, SimHost, World


def _digest(core: Core, now: float) -> tuple[object, ...]:
    """What a datagram could change (the drops it is counted in aside)."""
    v = core.view(now)
    return (v.entry, v.leader, v.members, v.rows, v.expired, core.get_timer(), core.has_work())


def inject_bad(world: World, now: float, h: SimHost) -> tuple[int, bool]:
    """Feed one host a handful of bad datagrams. Returns how many, and whether
    its state changed (an I5 violation)."""
    core = h.core
    if core is None:
        return 0, False
    rng = world.rng
    samples: list[bytes] = [rng.randbytes(rng.randrange(0, 1500))]
    if h.last_rx:
        good = h.last_rx
        samples.append(good)  # a replay of a datagram it has already taken
        flipped = bytearray(good)
        pos = rng.randrange(len(flipped))
        flipped[pos] ^= 1 << rng.randrange(8)
        samples.append(bytes(flipped))
        try:
            d = wire.decode(good, group_tag=world.group_tag, keys=(KEY,))
            if d.message is not None:
                forged, _ = wire.encode(
                    d.message,
                    group_tag=world.group_tag,
                    sender=d.sender,
                    epoch=d.epoch,
                    seq=d.seq + 1000,
                    key=b"not the group key",
                )
                samples.extend(forged)
        except wire.DecodeError:
            pass
    before = _digest(core, now)
    for data in samples:
        core.datagram_received(now, data, 0)
    return len(samples), _digest(core, now) != before
