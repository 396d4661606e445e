"""Invariant I3: two hosts that hear each other never hold the same address for
longer than 2 x heartbeat (plus the network and action delays) after they hear
each other again and agree on a leader that hears them both. Part of the
checker (sim/invariants.py); reads the world."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rais.core.addr import Addr, fmt
from rais.sim.world import World


@dataclass(slots=True)
class _Dup:
    start: float
    reported: bool = False


class Duplicates:
    def __init__(
        self,
        world: World,
        violate: Callable[[str, float, str], None],
        excused: Callable[[int], bool] = lambda index: False,
    ) -> None:
        self.world = world
        self.violate = violate
        self.excused = excused
        """A host whose duplicates are not judged (a paused host nobody may know
        of: sim/invariants.py, P1)."""
        p = world.params
        self.hb = p.heartbeat
        self.dups: dict[tuple[Addr, int, int], _Dup] = {}
        """(address, a, b) held by hosts a < b that hear each other: since when."""

    def track(self, now: float) -> None:
        net = self.world.net
        seen: set[tuple[Addr, int, int]] = set()
        for address, hs in self.world.holders.items():
            if len(hs) < 2:
                continue
            ordered = sorted(h for h in hs if not self.excused(h))
            for i, a in enumerate(ordered):
                for b in ordered[i + 1 :]:
                    if net.connected(now, a, b):
                        key = (address, a, b)
                        seen.add(key)
                        if key not in self.dups:
                            self.dups[key] = _Dup(now)
        for key in list(self.dups):
            if key not in seen:
                del self.dups[key]

    def check(self, now: float) -> None:
        world = self.world
        net = world.net
        hosts = world.hosts
        limit = 2 * self.hb + 2 * net.max_delay() + 2 * world.params.action_delay + 0.001
        for key, dup in self.dups.items():
            if dup.reported:
                continue
            address, a, b = key
            start = max(dup.start, net.last_change, hosts[a].started_at, hosts[b].started_at)
            group = {a, b}
            leaders = set()
            for h in (a, b):
                core = hosts[h].core
                if core is not None and core.leader is not None:
                    leaders.add(world.index_of.get(core.leader, -1))
            (leader,) = leaders if len(leaders) == 1 else (-1,)
            if (
                leader < 0
                or not hosts[leader].up
                or not (
                    leader in group
                    or (net.connected(now, leader, a) and net.connected(now, leader, b))
                )
            ):
                # They do not agree on a leader that hears them both (yet): that
                # settles within a timeout, and only then can the duplicate go.
                dup.start = now
                continue
            group.add(leader)
            for x in group:
                for y in group:
                    if x != y:
                        start = max(start, net.last_loss.get((x, y), 0.0))
            if now - start > limit:
                dup.reported = True
                self.violate(
                    "I3",
                    now,
                    f"{fmt(address)} held by hosts {a} and {b} since {dup.start:.4f} "
                    f"({now - start:.4f}s after they could hear each other)",
                )
