"""Who knows an orphan: for each address whose preferred host is down, the up
hosts that know of it (part of the checker, sim/invariants.py). When every
host that knew it is gone, the address is forgotten (docs/protocol.md,
*Orphans*). Reads the world."""

from __future__ import annotations

from rais.core.addr import Addr
from rais.sim.world import World


class Knowers:
    def __init__(self, world: World) -> None:
        self.world = world
        self.hb = world.params.heartbeat
        self.timeout = world.timeout
        self.knowers: dict[Addr, set[int] | None] = {}
        """For addresses whose preferred host is down: the up hosts that know of
        them (None: unclear, a knower vanished while a new host was learning)."""
        self.learning: dict[int, float] = {}
        """Hosts that (re)started: until when they are still learning the group."""

    def up(self, now: float, index: int) -> None:
        # A restarted host knows nothing of its own old row: who knows it stays
        # as it was until the host is fit and brings its address in again.
        self.learning[index] = now + self.timeout + self.hb

    def down(self, now: float, index: int) -> None:
        """Host ``index`` went down (the world has it down already)."""
        self.learn(now)
        self.learning.pop(index, None)
        for address, knew in self.knowers.items():
            if knew is not None:
                knew.discard(index)
                if not knew and any(t > now for t in self.learning.values()):
                    self.knowers[address] = None
        gone = self.world.hosts[index]
        if gone.preferred is not None:
            # Hosts that were up and heard it for the last heartbeat know it. A
            # network change or loss in that time, or a partition, makes it unclear.
            heard = now - self.hb - 0.01
            net = self.world.net
            known = set()
            unclear = False
            for h in self.world.hosts:
                if not h.up:
                    continue
                since = max(h.started_at, gone.started_at)
                if since > heard:
                    # Too new to be sure (rows also spread through other hosts'
                    # tables). Even a host started this very instant may still
                    # get what the gone host sent before it went (in flight): the
                    # stateful test found one that did.
                    unclear = True
                    continue
                if (
                    net.last_change >= heard
                    or net.last_loss.get((index, h.index), -1.0) >= heard
                    or not net.connected(now, index, h.index)
                ):
                    unclear = True
                else:
                    known.add(h.index)
            before = self.knowers.get(gone.preferred, set())
            if before is None or unclear:
                self.knowers[gone.preferred] = None
            else:
                # Still known to those who knew it before a restart that never brought it in.
                self.knowers[gone.preferred] = known | before

    def resumed(self, index: int) -> None:
        """Host ``index`` restarted in place (``rais pause``): its new process
        holds what the old one held but knows none of the rows; an orphan only
        it knew is unclear from now on (docs/protocol.md, "Restarting in place")."""
        for address, knew in self.knowers.items():
            if knew is not None and index in knew and len(knew) == 1:
                self.knowers[address] = None

    def learn(self, now: float) -> None:
        """New hosts whose learning time is over know what the hosts they hear know."""
        done = [i for i, t in self.learning.items() if t <= now]
        net = self.world.net
        for index in done:
            start = self.learning.pop(index) - self.timeout - self.hb
            # A new host learns the rows of the hosts it hears; a network change
            # while it was learning leaves that unclear.
            changed = net.last_change >= start
            for address, known in self.knowers.items():
                if not known:
                    continue
                if changed:
                    self.knowers[address] = None
                elif any(net.connected(now, index, k) for k in known):
                    known.add(index)
