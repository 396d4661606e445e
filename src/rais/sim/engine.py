"""The event loop: real cores in the simulated world (sim/world.py), a virtual
clock in 0.1 ms ticks, the fault schedule, delivery, and the checker
(sim/invariants.py) told of what happens and run after every step."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from math import ceil
from typing import Any

from rais.core.addr import fmt
from rais.core.core import Core
from rais.core.effects import Acquire, Announce, Campaign, Event, EventKind, Release, Send
from rais.core.pause import KERNEL_MARGIN
from rais.sim.delivery import DELIVER, Delivery, Quiet
from rais.sim.episodes import Operator
from rais.sim.faults import FaultAction, schedule
from rais.sim.guarded import Guarded
from rais.sim.guardsteps import ARB, I8, KEXP, GuardSteps
from rais.sim.inject import inject_bad
from rais.sim.invariants import Checker
from rais.sim.network import TICK
from rais.sim.params import SimParams, SimResult
from rais.sim.world import SimHost, World

__all__ = ["SimHost", "Simulation"]

_WAKES = frozenset(("leave+", "test+", "test-", "quiesce+", "quiesce-", "link+", "link-", "pause+"))
"""Faults that give their hosts' cores an input (the others add or stop one)."""

_DELIVER = DELIVER
_TIMER, _ACTION, _FAULT, _DEADLINE, _INJECT, _LINK = range(1, 7)


class Simulation(Delivery, GuardSteps):
    def __init__(
        self,
        params: SimParams,
        *,
        keep_trace: bool = False,
        core_factory: Callable[..., Core] = Core,
    ) -> None:
        params.validate()
        self.params = params
        self.world = world = World(params, keep_trace=keep_trace, core_factory=core_factory)
        self.trace_lines: list[str] | None = world.trace.lines
        self.timeout = world.timeout
        self.net = world.net
        self.rng = world.rng
        self.hosts = world.hosts
        self.group_tag = world.group_tag
        self.checker = Checker(world)
        self.guarded = Guarded(world, random.Random(params.seed * 7333 + 11))
        self._last_boot = 0.0
        self.operator = Operator(world)
        self.result = SimResult(params)
        self.tick = 0
        self._heap: list[int] = []
        self._buckets: dict[int, list[tuple[Any, ...]]] = {}
        self.quiets: dict[int, Quiet] = {}

    # ------------------------------------------------------------- scheduling

    def _at(self, tick: int, item: tuple[Any, ...]) -> None:
        bucket = self._buckets.get(tick)
        if bucket is None:
            self._buckets[tick] = [item]
            heapq.heappush(self._heap, tick)
        else:
            bucket.append(item)

    def _log(self, now: float, text: str) -> None:
        self.world.trace.log(now, text)

    def _judge_later(self, now: float) -> None:
        """The group is quiet from now: judge I1 and I6 a bound later (with a
        guard, and a host booted lately, later still: sim/guardcheck.py ``cold``)."""
        when = now + self.checker.bound
        if self.guarded.on:
            when = max(when, self._last_boot + self.checker.bound + self.checker.guard.cold)
        self._at(ceil(when / TICK) + 1, (_DEADLINE, now))

    # ----------------------------------------------------------------- hosts

    def _boot(self, h: SimHost, now: float) -> None:
        self._last_boot = now
        if self.guarded.on:
            self._stale_addresses(h, now)
        self.world.boot(h, now)
        h.timer_tick = -1
        self.checker.host_up(now, h.index)
        self._log(now, f"boot {h.index} epoch {h.epoch}")
        self._after(h, now)

    def _down(self, h: SimHost, now: float, why: str) -> None:
        # With a guard the kernel keeps a crashed host's addresses for their lifetime.
        released = self.world.down(h, now, keep=self.guarded.on and why == "crash")
        self.guarded.stalled.pop(h.index, None)
        self.guarded.pending.pop(h.index, None)
        if self.checker.host_down(now, h.index, released):
            self._judge_later(now)
        self._log(now, f"down {h.index} {why}")

    def _after(self, h: SimHost, now: float) -> None:
        """Drain a host's effects and re-arm its timer."""
        core = h.core
        if core is None:
            return
        effects = core.effects()
        if effects:
            for eff in effects:
                if isinstance(eff, Send):
                    self._send(h, now, eff)
                elif isinstance(eff, Acquire):
                    ok = core.entry().ok  # its tests pass and its link is fit
                    if not ok or core.quiesced or core.config.observer:
                        self.checker.violate(
                            "I2",
                            now,
                            f"host {h.index} acquires {fmt(eff.address)} "
                            f"(ok={ok}, quiesced={core.quiesced})",
                        )
                    self._action(h, now, "acquire", eff)
                elif isinstance(eff, Release):
                    self._action(h, now, "release", eff)
                elif isinstance(eff, Announce):
                    pass
                elif isinstance(eff, Event):
                    self._event(h, eff)
                elif isinstance(eff, Campaign):
                    self._campaign(h, now, eff.want)
            if core.left:
                self._down(h, now, "left")
                return
        if self.guarded.on:
            self._refreshed(h, now)
        t = core.get_timer()
        if t is not None:
            tick = ceil(t / TICK - 1e-6)
            if tick <= self.tick:
                tick = self.tick + 1
            if h.timer_tick < 0 or tick < h.timer_tick:
                h.timer_tick = tick
                self._at(tick, (_TIMER, h.index, h.epoch))

    def _event(self, h: SimHost, ev: Event) -> None:
        self._log(ev.time, f"{h.index} {ev.kind.value} {fmt(ev.address)} {ev.reason}")
        if ev.kind == EventKind.CANNOT_ASSIGN and ev.address is not None:
            self.checker.cannot_assign(ev.time, ev.address)
        elif ev.kind == EventKind.ACQUIRED:
            self.result.failovers += 1

    def _action(self, h: SimHost, now: float, op: str, eff: Acquire | Release) -> None:
        tick = self.tick + max(1, round(self.params.action_delay / TICK))
        extras = tuple(a for a, _ in eff.extras)
        self._at(tick, (_ACTION, h.index, h.epoch, op, eff.address, extras, eff.extras_only))

    # ------------------------------------------------------------------- run

    def run(self) -> SimResult:
        """Run the whole schedule to ``params.duration``; return the result."""
        self.start()
        self.run_until(self.params.duration)
        return self._finish()

    def start(self) -> None:
        """Schedule the boots, the faults and the bad-datagram injections."""
        p = self.params
        for h in self.hosts:
            # Staggered start within one heartbeat, as real hosts would be.
            start = self.rng.random() * p.heartbeat
            self._at(ceil(start / TICK), (_FAULT, FaultAction(start, "boot", (h.index,))))
        if p.faults == "random":
            candidates = [h.index for h in self.hosts]
            for act in schedule(
                random.Random(p.seed * 7919 + 3),
                hosts=p.hosts,
                candidates=candidates,
                duration=p.duration,
                heartbeat=p.heartbeat,
                timeout=self.timeout,
                networks=p.networks,
                orphan_timeout=p.orphan_timeout,
                link_hold=p.link_hold,
                guard=p.guard,
                bound=self.checker.guard.wait if self.guarded.on else 0.0,
                lease=p.lease,
            ):
                self._at(ceil(act.time / TICK), (_FAULT, act))
        if p.inject_bad:
            t = 1.0
            while t < p.duration:
                self._at(ceil(t / TICK), (_INJECT, self.rng.randrange(p.hosts)))
                t += 0.5 + self.rng.random() * 2.0
        self.checker.fault(0.0, FaultAction(0.0, "start"))
        self._at(
            ceil((p.heartbeat + 2 * self.timeout + self.checker.bound) / TICK), (_DEADLINE, 0.0)
        )

    def run_until(self, until: float) -> None:
        """Process every step up to virtual time ``until`` (seconds)."""
        end = ceil(until / TICK - 1e-6)
        heap = self._heap
        buckets = self._buckets
        checker = self.checker
        while heap and heap[0] <= end:
            tick = heapq.heappop(heap)
            self.tick = tick
            now = tick * TICK
            for item in buckets.pop(tick):
                kind = item[0]
                if kind == _DELIVER:
                    self._deliver(now, item)
                elif kind == _TIMER:
                    h = self.hosts[item[1]]
                    if h.index in self.guarded.stalled:
                        h.timer_tick = -1  # its stall's end calls the timer
                    elif h.core is not None and h.epoch == item[2] and h.timer_tick == tick:
                        self._wake(h, now)
                        if h.core is not None:
                            h.timer_tick = -1
                            h.core.handle_timer(now)
                            self._after(h, now)
                elif kind == _ACTION:
                    self._complete(now, item)
                elif kind == _FAULT:
                    self._fault(now, item[1])
                elif kind == _DEADLINE:
                    if not self._too_soon(now):
                        checker.deadline(now, item[1])
                elif kind == _LINK:
                    checker.link_released(now, item[1], item[2])
                elif kind == KEXP:
                    self._kernel_removes(now, item)
                elif kind == ARB:
                    self._arbiter(now, item)
                elif kind == I8:
                    checker.guard.judge(now, item[1])
                else:
                    self._inject(now, item[1])
            if checker.dirty or checker.dups or checker.introducing:
                checker.step(now)
        self.tick = max(self.tick, end)

    def apply(self, act: FaultAction) -> None:
        """Apply a fault action now (for tests that drive the simulator step by step)."""
        self._fault(self.tick * TICK, act)

    def _complete(self, now: float, item: tuple[Any, ...]) -> None:
        _, index, epoch, op, address, extras, extras_only = item
        h = self.hosts[index]
        if h.core is None or h.epoch != epoch:
            return
        if index in self.guarded.stalled:
            self.guarded.pending.setdefault(index, []).append(item)
            return
        self._wake(h, now)
        if h.core is None:
            return
        world = self.world
        if op == "acquire" and not extras_only and not self._may_hold(h, now, address):
            h.core.action_done(now, address, False, "under a second of lease left")
            self._after(h, now)
            return
        if op == "acquire":
            if not extras_only:
                world.hold(address, index)
                self.checker.held(now, address, index)
            for extra in extras:
                world.hold_extra(extra, index)
        else:
            if not extras_only:
                held = world.release(address, index)
                self.checker.unheld(now, address, index, held)
            for extra in extras:
                world.release_extra(extra, index)
        if extras or world.extras:
            self.checker.sets.changed(now, index)
        h.core.action_done(now, address, True)
        self._after(h, now)

    def result_now(self) -> SimResult:
        return self._finish()

    def _finish(self) -> SimResult:
        r = self.result
        r.violations = self.checker.violations
        r.convergences = self.checker.convergences
        r.max_convergence_s = round(max(r.convergences, default=0.0), 4)
        r.dropped = self.net.drops
        r.trace_sha256 = self.world.trace.sha.hexdigest()
        r.events = self.world.trace.events
        return r

    # ---------------------------------------------------------------- faults

    def _fault(self, now: float, act: FaultAction) -> None:
        kind = act.kind
        if kind == "lapse?":
            # the kernel lifetime of a paused host's addresses ends: a fault
            # only if it has not come back (or paused again) since
            h = self.hosts[act.hosts[0]]
            if h.paused_until == act.value and h.core is None:
                self._fault(now, FaultAction(now, "lapse+", act.hosts, act.value))
            return
        self._log(now, f"fault {kind} {list(act.hosts)} {act.value:.4f}")
        self.checker.fault(now, act)
        self._apply(now, act)
        if kind != "boot":
            self.result.faults += kind.endswith("+")
        if self.checker.quiet:
            self._judge_later(now)

    def _apply(self, now: float, act: FaultAction) -> None:
        """Apply a fault to the world, and drain the effects of the cores it touched."""
        kind = act.kind
        world = self.world
        net = world.net
        start = kind.endswith("+")
        if kind in _WAKES:
            for index in act.hosts:
                self._wake(self.hosts[index], now)
        elif kind.startswith("move"):
            self._wake_all(now)  # its asker is drawn later
        if kind in ("boot", "crash-", "leave-"):
            for index in act.hosts:
                h = self.hosts[index]
                if not h.up:
                    self._boot(h, now)
        elif kind == "crash+":
            for index in act.hosts:
                h = self.hosts[index]
                if h.paused_until is not None:
                    # the host itself dies while stopped in place: its pause is over
                    h.paused_until = None
                    self.checker.pauses.over(now, index)
                if h.up:
                    self._down(h, now, "crash")
        elif kind == "leave+":
            for index in act.hosts:
                h = self.hosts[index]
                if h.core is not None:
                    world.leave(h, now)
                    self._after(h, now)
        elif kind in ("test+", "test-", "quiesce+", "quiesce-"):
            for index in act.hosts:
                h = self.hosts[index]
                if kind.startswith("test"):
                    world.fail_test(h, now, start)
                else:
                    world.quiesce(h, now, start)
                self._after(h, now)
        elif kind == "partition+":
            net.partition(now, act.hosts)
            self.guarded.partition(act.hosts, act.value >= 0.5)
            if self.guarded.on:
                when = now + self.checker.guard.wait
                self._at(ceil(when / TICK), (I8, now))
        elif kind == "partition-":
            net.heal(now)
            self.guarded.heal()
        elif kind in ("deaf+", "deaf-"):
            net.deafen(now, act.hosts if start else ())
        elif kind in ("stall+", "stall-"):
            for index in act.hosts:
                self._stall(now, start, self.hosts[index])
        elif kind in ("etcd+", "etcd-"):
            self.guarded.etcd_up = not start
            self.guarded.counts["etcd-down"] += start
        elif kind == "netcut+":
            net.cut_link(now, int(act.value), act.hosts)
        elif kind == "netcut-":
            net.mend_link(now, int(act.value))
        elif kind in ("loss+", "loss-"):
            net.set_loss(act.value if start else 0.0)
        elif kind in ("latency+", "latency-"):
            net.set_latency(now, act.value if start else 0.0)
        elif kind in ("link+", "link-", "linkup-"):
            for index in act.hosts:
                h = self.hosts[index]
                if kind == "linkup-":
                    world.link_held(h)
                    continue
                world.link(h, now, kind == "link-")
                self._after(h, now)
                if kind == "link+":
                    # L1: by the time its releases have completed, it holds nothing.
                    tick = self.tick + 2 + max(1, round(self.params.action_delay / TICK))
                    self._at(tick, (_LINK, index, h.epoch))
        elif kind in ("move+", "move-"):
            asker = self.operator.act(now, kind, act.hosts)
            if asker is not None:
                self._after(asker, now)
        elif kind == "drained-":
            net.drained(now)
        elif kind == "lapse-":
            pass  # the end of the lapse's disturbance, for the checker
        elif kind in ("pause+", "pause-", "lapse+"):
            for index in act.hosts:
                self._pause(now, kind, self.hosts[index], act.value)

    def _pause(self, now: float, kind: str, h: SimHost, window: float) -> None:
        """``rais pause --for window``, the agent stopped in place (its addresses
        stay on the service network), then back in time (``resume``), too late,
        or never; "lapse+": the kernel lifetime of a paused host's addresses ran
        out (KERNEL_MARGIN before the window ends), which is a crash."""
        if kind == "pause+":
            if h.core is None or not h.up:
                return
            why = h.core.pause(now, window)
            if why is not None:
                self._log(now, f"pause refused {h.index}: {why}")
                self.world.pauses["refused"] += 1
                return
            self.world.pauses["paused"] += 1
            self._after(h, now)  # the info announcing the pause goes out
            held = self.world.stop_in_place(h, now, now + window)
            self.checker.pauses.paused(now, h.index, held, now + window - KERNEL_MARGIN)
            lapse = now + window - KERNEL_MARGIN
            until = now + window
            self._at(ceil(lapse / TICK), (_FAULT, FaultAction(lapse, "lapse?", (h.index,), until)))
            self._log(now, f"paused {h.index} holding {sorted(map(fmt, held))}")
        elif kind == "lapse+":
            if h.paused_until == window and h.core is None:
                # The group takes the host for failed at the end of the window:
                # its addresses are unserved from the lapse until then, by
                # design; I1 is judged from there ("lapse-"), as after any
                # disturbance.
                end = window + self.net.max_delay()
                lapse_end = FaultAction(end, "lapse-", (h.index,), window)
                self._at(ceil(end / TICK), (_FAULT, lapse_end))
                h.paused_until = None
                self.checker.pauses.over(now, h.index)
                self.world.pauses["lapsed"] += 1
                self._down(h, now, "pause lapsed")
        elif h.paused_until is not None and h.core is None:
            # back in time: the new process takes over what the kernel still has
            kept = [(a, 24 if len(a) == 4 else 64) for a in self.world.held_by(h.index)]
            h.paused_until = None
            self.world.drop_extras(h.index)
            self.world.boot(h, now, resume=kept)
            h.timer_tick = -1
            self.checker.host_up(now, h.index, resumed=True)
            self.checker.pauses.over(now, h.index)
            self.world.pauses["resumed"] += 1
            self._log(now, f"resumed {h.index} epoch {h.epoch}")
            self._after(h, now)
        elif not h.up:
            self._boot(h, now)

    def _inject(self, now: float, index: int) -> None:
        self._wake(self.hosts[index], now)
        n, changed = inject_bad(self.world, now, self.hosts[index])
        if changed:
            self.checker.violate("I5", now, f"host {index} changed state on a bad datagram")
        self.result.injected += n
