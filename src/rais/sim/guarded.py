"""What a guarded run (``--guard``) adds to the simulated world: the kernel's
address lifetimes, stalled agents, and etcd.

* **Kernel lifetimes.** With a guard the service network keeps an address as
  long as the kernel does, not as long as the agent lives: every acquire and
  every refresh (each ``REFRESH`` seconds while the agent runs) sets the
  lifetime to the whole seconds left of the core's lease
  (``Core.lease_left``), and skips the refresh with under ``MIN_KERNEL`` left,
  as the agent does (rais.runtime.group). An address not refreshed in time is
  removed by the kernel up to ``KERNEL_SLACK`` after its lifetime ends (drawn
  at random). A crashed or stalled host's addresses stay until then.
* **Stalls** (fault "stall"): the agent stops (SIGSTOP, a VM pause): it takes
  no datagram, no timer and no completed action until it goes on; the kernel
  meanwhile drops what it does not refresh.
* **etcd** (guard "etcd"): one linearizable key with a lease of ``ttl``
  seconds, reachable from the side of a partition it is on and not at all
  while it is down (fault "etcd"); each host's driver campaigns while its core
  wants the key, renews every ttl/3, retries every ``RETRY`` seconds, and
  tells its core every outcome (``Core.arbiter_state``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from rais.core.addr import Addr
from rais.core.config import KERNEL_SLACK, MIN_KERNEL
from rais.core.messages import AddrState
from rais.sim.world import SimHost, World

REFRESH = 0.25
RETRY = 0.3
ETCD_TTL = 2.0


@dataclass(slots=True)
class _Key:
    holder: tuple[int, int] | None = None
    """(host index, epoch) of the campaigner that holds it."""
    expiry: float = 0.0
    revision: int = 0


class Guarded:
    """The kernel, the stalls and etcd of one guarded run."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        p = world.params
        self.on = p.guard != "none"
        self.etcd = p.guard == "etcd"
        self.rng = rng
        self.kexp: dict[tuple[Addr, int], float] = {}
        """(address, host): when the kernel lifetime last set runs out."""
        self._next_refresh: dict[int, float] = {}
        self.stalled: dict[int, float] = {}
        """Hosts whose agent is stopped, since when."""
        self.pending: dict[int, list[tuple[object, ...]]] = {}
        """Per stalled host: the actions that finished while it was stopped (its
        agent hears of them when it goes on)."""
        self.key = _Key()
        self.etcd_up = True
        self.etcd_side: frozenset[int] | None = None
        """During a partition: the hosts that reach etcd (None: all)."""
        self.wants: dict[int, tuple[int, bool]] = {}
        """Per host: (epoch, wants the key) as its core last said (``Campaign``)."""
        self._until: dict[tuple[int, int], float] = {}
        self.counts = {"kernel-removed": 0, "stalls": 0, "grants": 0, "etcd-down": 0}

    # ----------------------------------------------------------------- kernel

    def lifetime(self, h: SimHost, address: Addr, now: float) -> float | None:
        """Set the kernel lifetime of ``address`` on ``h`` from its lease; returns
        when the kernel may remove it (None: not set, under MIN_KERNEL left)."""
        core = h.core
        left = None if core is None else core.lease_left(address, now)
        if left is None or left < MIN_KERNEL:
            return None
        expiry = now + math.floor(left)
        self.kexp[(address, h.index)] = expiry
        return expiry + self.rng.uniform(0.0, KERNEL_SLACK)

    def refresh(self, h: SimHost, now: float) -> list[tuple[Addr, float, float]]:
        """The agent's refresher, if due: (address, expiry, removal time) per
        address whose lifetime it set. Like the agent's (``ip addr replace``)
        it adds again an address the kernel removed meanwhile (after a stall),
        if the lease allows: the caller puts it back on the service network."""
        if not self.on or h.core is None or h.index in self.stalled:
            return []
        if now < self._next_refresh.get(h.index, 0.0):
            return []
        self._next_refresh[h.index] = now + REFRESH
        out = []
        for address, state in h.core.entry().served:
            if state != AddrState.ONLINE:
                continue
            removal = self.lifetime(h, address, now)
            if removal is not None:
                out.append((address, self.kexp[(address, h.index)], removal))
        return out

    def expired(self, address: Addr, index: int, expiry: float) -> bool:
        """The kernel's removal is due: True if the lifetime set then was never
        extended and the host still has the address."""
        if self.kexp.get((address, index)) != expiry:
            return False
        del self.kexp[(address, index)]
        if index not in self.world.holders.get(address, ()):
            return False
        self.counts["kernel-removed"] += 1
        return True

    # ------------------------------------------------------------------- etcd

    def reachable(self, index: int) -> bool:
        return self.etcd_up and (self.etcd_side is None or index in self.etcd_side)

    def partition(self, side: tuple[int, ...], with_side: bool) -> None:
        """The control network splits off ``side``; etcd is on it if ``with_side``."""
        inside = frozenset(side)
        rest = frozenset(range(len(self.world.hosts))) - inside
        self.etcd_side = inside if with_side else rest

    def heal(self) -> None:
        self.etcd_side = None

    def campaign(self, h: SimHost, want: bool) -> None:
        self.wants[h.index] = (h.epoch, want)

    def arbiter_tick(self, h: SimHost, now: float) -> float | None:
        """One round of host ``h``'s arbiter loop; returns when the next is due
        (None: the loop stops until the core wants the key again)."""
        core = h.core
        if core is None or h.index in self.stalled:
            return None
        epoch, want = self.wants.get(h.index, (h.epoch, False))
        if epoch != h.epoch:
            return None
        me = (h.index, h.epoch)
        key = self.key
        mine = key.holder == me and key.expiry > now
        until = self._until.get(me, 0.0)
        if not self.reachable(h.index):
            held = mine and until > now
            core.arbiter_state(now, reachable=False, held=held, token=key.revision, until=until)
            return now + RETRY if want or held else None
        if not want:
            if key.holder == me:
                key.holder = None  # resign: the key is deleted
            core.arbiter_state(now, reachable=True, held=False)
            return None
        if mine or key.holder is None or key.expiry <= now:
            if not mine:
                key.revision += 1
                key.holder = me
                self.counts["grants"] += 1
            key.expiry = now + ETCD_TTL
            self._until[me] = key.expiry
            core.arbiter_state(now, reachable=True, held=True, token=key.revision, until=key.expiry)
            return now + ETCD_TTL / 3
        core.arbiter_state(now, reachable=True, held=False)
        return now + RETRY
