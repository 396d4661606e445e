"""Invariants I7 and I8 of a guarded run (``--guard``; sim/guarded.py), part of
the checker (sim/invariants.py).

I7  at no instant do two hosts hold one address, anywhere on the shared
    service network: across partitions, stalls, crashes (whose addresses stay
    for their kernel lifetime) and heals. Checked at every acquire.
I8  while a partition of the control network lasts and one side holds a
    majority of the voters (guard "majority": its up hosts; every host votes)
    or etcd (guard "etcd": etcd is on that side and up), every valid address
    is online on exactly one host of that side, and no host of the other side
    holds any, ``wait`` after the partition began: ``bound`` = timeout + lease
    + KERNEL_SLACK + 2 x heartbeat (plus the action and network delays); for
    etcd also the key's TTL and one retry (the side's new leader gets the key
    only once the old holder's lease at etcd lapsed). Judged once per
    partition, if nothing else happened from ``bound`` before it began until
    the judgement.
"""

from __future__ import annotations

from collections.abc import Callable

from rais.core.addr import Addr, fmt
from rais.core.config import KERNEL_SLACK
from rais.core.hosts import eligible
from rais.sim.faults import FaultAction
from rais.sim.guarded import ETCD_TTL, RETRY
from rais.sim.world import World


class GuardJudge:
    def __init__(
        self,
        world: World,
        violate: Callable[[str, float, str], None],
        valid: Callable[[float, Addr, int], bool | None],
    ) -> None:
        p = world.params
        self.world = world
        self.violate = violate
        self.valid = valid
        self.on = p.guard != "none"
        self.etcd = p.guard == "etcd"
        hb = p.heartbeat
        delays = 2 * p.action_delay + 2 * world.net.max_delay() + 0.01
        self.bound = p.effective_timeout + p.lease + KERNEL_SLACK + 2 * hb + delays
        self.wait = self.bound + (ETCD_TTL + RETRY if self.etcd else 0.0)
        self.cold = 2 * p.effective_timeout + 2 * hb
        """More after a host boots: it settles one timeout later, and if it
        has the lowest id the voters name it one timeout after they last named
        the leader before it (staggered boots: one heartbeat more); only then
        does its quorate interval, and rule 3's wait, begin."""
        self._partition: tuple[float, frozenset[int], bool] | None = None
        self._etcd_up = True
        self.last_fault = -1e9
        self.judged = 0
        self.two_holders = 0

    def fault(self, now: float, act: FaultAction) -> None:
        kind = act.kind
        if kind == "partition+":
            self._partition = (now, frozenset(act.hosts), act.value >= 0.5)
            return
        if kind == "partition-":
            self._partition = None
        elif kind in ("etcd+", "etcd-"):
            self._etcd_up = kind == "etcd-"
        if kind not in ("boot", "start"):
            self.last_fault = now

    def can_serve(self) -> bool:
        """Whether the group can serve at all now (I1 is judged only then): a
        majority of the voters is up, or etcd is."""
        if not self.on:
            return True
        if self.etcd:
            return self._etcd_up
        hosts = self.world.hosts
        return sum(1 for h in hosts if h.up and h.core is not None) >= len(hosts) // 2 + 1

    def held(self, now: float, address: Addr, holders: set[int]) -> None:
        """I7: an acquire completed."""
        if self.on and len(holders) > 1:
            self.two_holders += 1
            self.violate("I7", now, f"{fmt(address)} held by {sorted(holders)} at once")

    def _side(self) -> frozenset[int] | None:
        """The side of the partition that may serve, or None."""
        assert self._partition is not None
        _, inside, etcd_inside = self._partition
        hosts = self.world.hosts
        rest = frozenset(range(len(hosts))) - inside
        if self.etcd:
            return (inside if etcd_inside else rest) if self._etcd_up else None
        needed = len(hosts) // 2 + 1
        for side in (inside, rest):
            if sum(1 for i in side if hosts[i].up and hosts[i].core is not None) >= needed:
                return side
        return None

    def judge(self, now: float, start: float) -> None:
        part = self._partition
        if not self.on or part is None or part[0] != start:
            return
        if self.last_fault > start - self.bound:
            return  # something else happened since, or just before
        side = self._side()
        hosts = self.world.hosts
        if side is None or not any(eligible(hosts[i]) for i in side):
            return
        self.judged += 1
        holders = self.world.holders
        for h in hosts:
            address = h.preferred
            if address is None or self.valid(now, address, h.index) is not True:
                continue
            on = holders.get(address, set())
            if len(on) != 1 or not on <= side:
                where = sorted(on)
                self.violate(
                    "I8", now, f"{fmt(address)} held by {where}, not by one host of {sorted(side)}"
                )
                return
        for h in hosts:
            if h.index not in side and self.world.held_by(h.index):
                held = [fmt(a) for a in self.world.held_by(h.index)]
                self.violate("I8", now, f"host {h.index}, outside {sorted(side)}, holds {held}")
                return
