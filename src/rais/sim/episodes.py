"""Operator episodes: ``rais move`` and ``rais failback`` asked on a host.
Uses the world's public state only; the engine drains the asker's effects."""

from __future__ import annotations

from rais.core.addr import Addr, fmt
from rais.sim.world import SimHost, World

_Pick = tuple[SimHost, Addr, "SimHost | None"]
"""Who asks, which address, the target of a move (None: a failback)."""


class Operator:
    def __init__(self, world: World) -> None:
        self.world = world
        self.moved: list[Addr] = []
        """Addresses the random episodes moved, oldest first."""

    def act(self, now: float, kind: str, chosen: tuple[int, ...]) -> SimHost | None:
        """``rais move`` of a random address to a random host, asked on a random
        host ('move+'); at the end ('move-'), ``rais failback`` of it, asked on
        another random host. ``chosen`` fixes them instead: (asker, owner of the
        address, target) for a move, (asker, owner) for a failback. Returns the
        host that was asked, if any."""
        picked = self._chosen(chosen) if chosen else self._random(kind)
        if picked is None:
            return None
        asker, address, target = picked
        assert asker.core is not None
        stamp = int(now * 1000) + 1
        if target is not None:
            why = asker.core.move(now, address, target.id, stamp)
            if why is None and not chosen:
                self.moved.append(address)  # the random episode's end fails it back
        else:
            why = asker.core.failback(now, address, stamp)
        to = f" to {target.index}" if target is not None else ""
        self.world.trace.log(now, f"{kind} {fmt(address)}{to} on {asker.index}: {why}")
        return asker

    def _chosen(self, chosen: tuple[int, ...]) -> _Pick | None:
        hosts = self.world.hosts
        asker, owner = hosts[chosen[0]], hosts[chosen[1]]
        if not asker.up or asker.core is None or owner.preferred is None:
            return None
        return asker, owner.preferred, hosts[chosen[2]] if len(chosen) > 2 else None

    def _random(self, kind: str) -> _Pick | None:
        world = self.world
        rng = world.rng
        up = [h for h in world.hosts if h.up and h.core is not None]
        if not up:
            return None
        asker = rng.choice(up)
        if kind != "move+":
            return (asker, self.moved.pop(0), None) if self.moved else None
        owners = [h for h in world.hosts if h.preferred is not None]
        targets = [h for h in up if not h.observer]
        if not owners or not targets:
            return None
        owner = rng.choice(owners)
        target = rng.choice([t for t in targets if t is not owner] or targets)
        assert owner.preferred is not None
        return asker, owner.preferred, target
