"""P1, the pause invariant (part of the checker, sim/invariants.py): while a host
is stopped in place after ``rais pause`` and its addresses' kernel lifetime
lasts, no other host acquires an address it holds, and its new process, back
in time, holds them all (docs/protocol.md, "Restarting in place").

Not judged for a pause that overlaps a partition or a latency spike (or comes
within a timeout of a network change): a host cut off from the pausing one, or
hearing it later than its timeout, takes it for failed, as it would any host
(issue 13). Nor once no host that is up knows of the pause (it was alone, or
everyone who knew has gone): a host booting then cannot learn of it. Nor once a
host of the version-1 release boots during the pause: it cannot know of pauses.
Reads the world."""

from __future__ import annotations

from collections.abc import Callable

from rais.core.addr import Addr, fmt
from rais.sim.world import World


class PauseJudge:
    def __init__(self, world: World, violate: Callable[[str, float, str], None]) -> None:
        self.world = world
        self.violate = violate
        self.timeout = world.timeout
        self.hold: dict[int, tuple[frozenset[Addr], float]] = {}
        """What each judged paused host held when its agent stopped, and until
        when (its kernel lifetime) nobody may take it from it."""
        self.cut = 0
        """Partitions and latency spikes going on."""

    def unjudged(self, index: int) -> bool:
        """Host ``index`` is stopped in place by a pause that P1 does not judge
        (its duplicates are not judged either: sim/duplicates.py)."""
        return self.world.hosts[index].paused_until is not None and index not in self.hold

    def fault(self, kind: str) -> None:
        if kind in ("partition+", "latency+"):
            self.cut += 1
            self.hold.clear()
        elif kind in ("partition-", "drained-"):
            self.cut -= 1

    def paused(self, now: float, index: int, held: list[Addr], kernel_until: float) -> None:
        """Host ``index``'s agent stopped in place after a pause, holding ``held``."""
        others = any(h.up and h.index != index for h in self.world.hosts)
        if others and not self.cut and self.world.net.last_change < now - self.timeout:
            self.hold[index] = (frozenset(held), kernel_until)

    def host_up(self, index: int) -> None:
        """A host booted: one of the version-1 release cannot know of pauses and
        takes a silent host for failed, so the pauses going on are not judged."""
        if self.world.hosts[index].old:
            self.hold.clear()

    def host_down(self, now: float) -> None:
        for paused in list(self.hold):
            if not self._remembered(now, paused):
                del self.hold[paused]

    def _remembered(self, now: float, index: int) -> bool:
        """Some other host that is up knows host ``index`` is paused."""
        paused_id = self.world.hosts[index].id
        for h in self.world.hosts:
            if h.index != index and h.up and h.core is not None:
                for m in h.core.view(now).members:
                    if m.id == paused_id and m.paused_s is not None:
                        return True
        return False

    def over(self, now: float, index: int) -> None:
        """The paused host is back (a new process that took over) or its
        addresses' kernel lifetime ran out. Back: it must still hold them all."""
        hold, _ = self.hold.pop(index, (frozenset(), 0.0))
        h = self.world.hosts[index]
        if h.core is not None:
            for address in hold:
                if h.core.holding(address) is None:
                    self.violate("P1", now, f"host {index} resumed without {fmt(address)}")

    def held(self, now: float, address: Addr, host: int) -> None:
        for index, (hold, until) in self.hold.items():
            if index != host and address in hold and now < until:
                self.violate(
                    "P1", now, f"host {host} acquired {fmt(address)} of paused host {index}"
                )

    def unheld(self, now: float, address: Addr, host: int) -> None:
        if host in self.hold:
            hold, until = self.hold[host]
            if address in hold and now < until:
                self.violate("P1", now, f"paused host {host} lost {fmt(address)}")
