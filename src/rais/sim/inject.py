"""Applying fault actions, and feeding bad datagrams to hosts (invariant I5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rais.core import wire
from rais.core.addr import fmt
from rais.core.core import Core

if TYPE_CHECKING:
    from rais.sim.engine import SimHost, Simulation
    from rais.sim.faults import FaultAction


def apply_fault(sim: Simulation, now: float, act: FaultAction) -> None:
    kind = act.kind
    net = sim.net
    sim._log(now, f"fault {kind} {list(act.hosts)} {act.value:.4f}")
    if kind in ("crash+", "leave+", "test+", "quiesce+"):
        for index in act.hosts:
            sim.checker.unfit(now, index)
    elif kind in ("boot", "crash-", "leave-", "test-", "quiesce-"):
        for index in act.hosts:
            sim.checker.fit_from[index] = now
    for index in act.hosts if kind in ("boot", "crash+", "crash-", "leave+", "leave-") else ():
        h = sim.hosts[index]
        if kind in ("boot", "crash-", "leave-"):
            if not h.up:
                sim._boot(h, now)
        elif kind == "crash+":
            if h.up:
                sim._down(h, now, "crash")
        elif h.core is not None:  # leave+
            h.core.leave(now)
            sim._after(h, now)
    if kind in ("test+", "test-", "quiesce+", "quiesce-"):
        start = kind.endswith("+")
        for index in act.hosts:
            h = sim.hosts[index]
            if kind.startswith("test"):
                h.ok = not start
                if h.core is not None:
                    h.core.test_result(now, h.ok, "simulated test")
            else:
                h.quiesced = start
                if h.core is not None:
                    if start:
                        h.core.quiesce(now)
                    else:
                        h.core.unquiesce(now)
            sim._after(h, now)
    elif kind in ("partition+", "partition-"):
        net.side = {i: 1 for i in act.hosts} if kind.endswith("+") else {}
        net.last_change = now
    elif kind in ("netcut+", "netcut-"):
        n = int(act.value)
        if kind.endswith("+"):
            net.cut[n] = set(act.hosts) if act.hosts else None
        else:
            net.cut[n] = set()
        net.last_change = now
    elif kind in ("loss+", "loss-"):
        net.extra_loss = act.value if kind.endswith("+") else 0.0
    elif kind in ("latency+", "latency-"):
        old = net.extra_latency
        net.extra_latency = act.value if kind.endswith("+") else 0.0
        net.last_change = now
        if net.extra_latency < old:
            # Spikes may overlap: what was sent under the higher latency still lands.
            net.in_flight_until = max(net.in_flight_until, now + old + net.jitter)
    elif kind in ("move+", "move-"):
        _operator(sim, now, kind, act.hosts)
    elif kind == "drained-":
        net.last_change = now
    sim.checker.dirty = True


def _operator(sim: Simulation, now: float, kind: str, chosen: tuple[int, ...]) -> None:
    """``rais move`` of a random address to a random host, asked on a random
    host; at the end, ``rais failback`` of it, asked on another random host.
    ``chosen`` fixes them instead: (asker, owner of the address, target) for a
    move, (asker, owner) for a failback."""
    picked = _chosen(sim, chosen) if chosen else _random(sim, kind)
    if picked is None:
        return
    asker, address, target = picked
    assert asker.core is not None
    stamp = int(now * 1000) + 1
    if target is not None:
        why = asker.core.move(now, address, target.id, stamp)
        if why is None and not chosen:
            sim.moved.append(address)  # the random episode's end fails it back
    else:
        why = asker.core.failback(now, address, stamp)
    to = f" to {target.index}" if target is not None else ""
    sim._log(now, f"{kind} {fmt(address)}{to} on {asker.index}: {why}")
    sim._after(asker, now)


_Pick = tuple["SimHost", bytes, "SimHost | None"]
"""Who asks, which address, the target of a move (None: a failback)."""


def _chosen(sim: Simulation, chosen: tuple[int, ...]) -> _Pick | None:
    asker, owner = sim.hosts[chosen[0]], sim.hosts[chosen[1]]
    if not asker.up or asker.core is None or owner.preferred is None:
        return None
    return asker, owner.preferred, sim.hosts[chosen[2]] if len(chosen) > 2 else None


def _random(sim: Simulation, kind: str) -> _Pick | None:
    rng = sim.rng
    up = [h for h in sim.hosts if h.up and h.core is not None]
    if not up:
        return None
    asker = rng.choice(up)
    if kind != "move+":
        return (asker, sim.moved.pop(0), None) if sim.moved else None
    owners = [h for h in sim.hosts if h.preferred is not None]
    targets = [h for h in up if not h.observer]
    if not owners or not targets:
        return None
    owner = rng.choice(owners)
    target = rng.choice([t for t in targets if t is not owner] or targets)
    assert owner.preferred is not None
    return asker, owner.preferred, target


def _digest(core: Core, now: float) -> tuple[object, ...]:
    """What a datagram could change (the drops it is counted in aside)."""
    v = core.view(now)
    return (v.entry, v.leader, v.members, v.rows, v.expired, core.get_timer(), core.has_work())


def inject_bad(sim: Simulation, now: float, h: SimHost) -> int:
    """Feed one host a handful of bad datagrams; check that nothing changes."""
    core = h.core
    if core is None:
        return 0
    rng = sim.rng
    samples: list[bytes] = [rng.randbytes(rng.randrange(0, 1500))]
    if h.last_rx:
        good = h.last_rx
        samples.append(good)  # a replay of a datagram it has already taken
        flipped = bytearray(good)
        pos = rng.randrange(len(flipped))
        flipped[pos] ^= 1 << rng.randrange(8)
        samples.append(bytes(flipped))
        try:
            d = wire.decode(good, group_tag=sim.group_tag, keys=(b"rais-simulator-group-key",))
            if d.message is not None:
                forged, _ = wire.encode(
                    d.message,
                    group_tag=sim.group_tag,
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
    after = _digest(core, now)
    if after != before:
        sim.checker.violate("I5", now, f"host {h.index} changed state on a bad datagram")
    return len(samples)
