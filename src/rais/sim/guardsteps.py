"""The engine's steps of a guarded run (sim/guarded.py): kernel removals,
refreshes, the arbiter loops, stalls. A base of ``Simulation``
(sim/engine.py), which provides the scheduling and the world."""

from __future__ import annotations

from math import ceil
from typing import Any

from rais.core.addr import Addr, fmt
from rais.sim.guarded import Guarded
from rais.sim.invariants import Checker
from rais.sim.network import TICK
from rais.sim.world import SimHost, World

KEXP, ARB, I8 = 100, 101, 102
"""Kinds of the engine's scheduled items that are this module's."""


class GuardSteps:
    world: World
    checker: Checker
    guarded: Guarded
    hosts: list[SimHost]
    tick: int
    _last_boot: float

    def _at(self, tick: int, item: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def _after(self, h: SimHost, now: float) -> None:
        raise NotImplementedError

    def _complete(self, now: float, item: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def _log(self, now: float, text: str) -> None:
        raise NotImplementedError

    def _wake(self, h: SimHost, now: float) -> None:
        raise NotImplementedError

    def _too_soon(self, now: float) -> bool:
        """A judgement scheduled before a host booted at that same instant: the
        boot scheduled a later one (with a guard, see ``_judge_later``)."""
        if not self.guarded.on:
            return False
        return now + TICK < self._last_boot + self.checker.bound + self.checker.guard.cold

    def _removal(self, address: Addr, index: int, expiry: float, when: float) -> None:
        self._at(max(self.tick + 1, ceil(when / TICK)), (KEXP, address, index, expiry))

    def _refreshed(self, h: SimHost, now: float) -> None:
        for address, expiry, when in self.guarded.refresh(h, now):
            self._removal(address, h.index, expiry, when)
            if h.index not in self.world.holders.get(address, ()):
                self.world.hold(address, h.index)
                self.checker.held(now, address, h.index)
                self._log(now, f"refresh adds {fmt(address)} to {h.index} again")

    def _kernel_removes(self, now: float, item: tuple[Any, ...]) -> None:
        _, address, index, expiry = item
        if self.guarded.expired(address, index, expiry):
            held = self.world.release(address, index)
            self.checker.unheld(now, address, index, held)
            self._log(now, f"kernel removes {fmt(address)} from {index}")

    def _may_hold(self, h: SimHost, now: float, address: Addr) -> bool:
        """An acquire completes: with a guard only with MIN_KERNEL of lease left
        (the agent's add sets the lifetime from it, rais.runtime.actions)."""
        if not self.guarded.on:
            return True
        when = self.guarded.lifetime(h, address, now)
        if when is None:
            return False
        self._removal(address, h.index, self.guarded.kexp[(address, h.index)], when)
        return True

    def _campaign(self, h: SimHost, now: float, want: bool) -> None:
        self.guarded.campaign(h, want)
        self._at(self.tick + 1, (ARB, h.index, h.epoch))

    def _arbiter(self, now: float, item: tuple[Any, ...]) -> None:
        _, index, epoch = item
        h = self.hosts[index]
        if h.epoch != epoch or h.core is None:
            return
        self._wake(h, now)
        if h.core is None:
            return
        nxt = self.guarded.arbiter_tick(h, now)
        self._after(h, now)
        if nxt is not None:
            self._at(ceil(nxt / TICK), (ARB, index, epoch))

    def _stall(self, now: float, start: bool, h: SimHost) -> None:
        g = self.guarded
        if start:
            if h.core is not None and h.index not in g.stalled:
                g.stalled[h.index] = now
                g.counts["stalls"] += 1
            return
        if g.stalled.pop(h.index, None) is None or h.core is None:
            return
        for item in g.pending.pop(h.index, []):
            self._complete(now, item)
        self._wake(h, now)
        if h.core is None:
            return
        h.core.handle_timer(now)
        self._after(h, now)
        self._at(self.tick + 1, (ARB, h.index, h.epoch))

    def _stale_addresses(self, h: SimHost, now: float) -> None:
        """A (re)booting agent removes what its previous run left configured
        (rais.runtime.group ``reconcile``)."""
        for address in self.world.held_by(h.index):
            held = self.world.release(address, h.index)
            self.checker.unheld(now, address, h.index, held)
            self.guarded.kexp.pop((address, h.index), None)
