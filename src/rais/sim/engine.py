"""The event loop: real cores, a virtual clock in 0.1 ms ticks, faults, checks."""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass
from math import ceil
from typing import Any

from rais.core import wire
from rais.core.addr import Addr, fmt
from rais.core.config import CoreConfig
from rais.core.core import Core
from rais.core.effects import Acquire, Announce, Event, EventKind, Release, Send
from rais.core.messages import Datagram
from rais.sim.faults import FaultAction, schedule
from rais.sim.hearing import Hearing
from rais.sim.invariants import Checker
from rais.sim.network import TICK, Network
from rais.sim.params import SimParams, SimResult

KEY = b"rais-simulator-group-key"
GROUP = "sim"

DISTURBANCES = ("partition", "loss", "latency", "drained")
"""Faults that last: I1 is judged from their end. Crashes, leaves, failed tests,
quiesce and a cut control network are states the group must converge under. A
receiver being behind on a sender after a lost datagram (sim/hearing.py) also
lasts, until it has caught up."""

_DELIVER, _TIMER, _ACTION, _FAULT, _DEADLINE, _INJECT = range(6)


def _ids(i: int, ipv6: bool) -> tuple[Addr, Addr, Addr]:
    """Host i's id (first control address), second control address, service address."""
    if ipv6 or i >= 254:
        base = int(ipaddress.IPv6Address("2001:db8::c:0"))
        host = ipaddress.IPv6Address(base + i + 1).packed
        service = ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8:5::")) + i + 1).packed
    else:
        host = ipaddress.IPv4Address(f"192.0.2.{i + 1}").packed
        service = ipaddress.IPv4Address(f"198.51.100.{i + 1}").packed
    second = ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8:1::")) + i + 1).packed
    return host, second, service


@dataclass(slots=True)
class SimHost:
    index: int
    id: Addr
    control: tuple[Addr, ...]
    preferred: Addr | None
    observer: bool
    core: Core | None = None
    up: bool = False
    ok: bool = True
    quiesced: bool = False
    epoch: int = 0
    started_at: float = 0.0
    down_at: float = 0.0
    timer_tick: int = -1
    last_rx: bytes = b""

    @property
    def leaving(self) -> bool:
        """Out of the group, as rais.core.hosts reads the flag. The checker judges
        the hosts' real state, not their entries: it has no leaving state, a host
        that has left is down (one still releasing counts as up, as before)."""
        return not self.up


class Simulation:
    def __init__(
        self,
        params: SimParams,
        *,
        keep_trace: bool = False,
        core_factory: Callable[..., Core] = Core,
    ) -> None:
        params.validate()
        self.core_factory = core_factory
        self.trace_lines: list[str] | None = [] if keep_trace else None
        self.params = params
        p = params
        self.timeout = p.effective_timeout
        self.net = Network(
            random.Random(p.seed * 7919 + 1),
            networks=p.networks,
            latency=p.latency,
            jitter=p.jitter,
            loss=p.loss,
            hear_limit=self.timeout - p.heartbeat,
        )
        self.hearing = Hearing(heartbeat=p.heartbeat, timeout=self.timeout, tick=TICK)
        self.rng = random.Random(p.seed * 7919 + 2)
        self.hosts: list[SimHost] = []
        first_spare = p.hosts - p.observers - p.spares
        for i in range(p.hosts):
            hid, second, service = _ids(i, p.ipv6)
            observer = i >= p.hosts - p.observers
            preferred = None if i >= first_spare else service
            control = (hid, second)[: p.networks] if p.networks <= 2 else (hid, second)
            self.hosts.append(SimHost(i, hid, control, preferred, observer))
        self.index_of = {h.id: h.index for h in self.hosts}
        self.index_of_service = {h.preferred: h.index for h in self.hosts if h.preferred}
        self.group_tag = wire.group_tag(GROUP)
        self.checker = Checker(self)
        self.result = SimResult(params)
        self.trace = hashlib.sha256()
        self.tick = 0
        self._heap: list[int] = []
        self._buckets: dict[int, list[tuple[Any, ...]]] = {}
        self._events = 0
        self.active = 0
        self.moved: list[Addr] = []
        """Addresses an operator moved (sim/inject.py), oldest first."""

    # ------------------------------------------------------------- scheduling

    def _at(self, tick: int, item: tuple[Any, ...]) -> None:
        bucket = self._buckets.get(tick)
        if bucket is None:
            self._buckets[tick] = [item]
            heapq.heappush(self._heap, tick)
        else:
            bucket.append(item)

    def _log(self, now: float, text: str) -> None:
        self._events += 1
        line = f"{now:.4f} {text}\n"
        self.trace.update(line.encode())
        if self.trace_lines is not None:
            self.trace_lines.append(line)

    # ----------------------------------------------------------------- hosts

    def _boot(self, h: SimHost, now: float) -> None:
        p = self.params
        h.epoch += 1
        pref = h.preferred
        cfg = CoreConfig(
            group=GROUP,
            control=h.control,
            keys=(KEY,),
            heartbeat=p.heartbeat,
            timeout=self.timeout,
            preferred=pref,
            prefixlen=(24 if pref is not None and len(pref) == 4 else 64) if pref else 0,
            observer=h.observer,
            orphan_timeout=p.orphan_timeout,
        )
        rng = random.Random((p.seed * 1_000_003 + h.index) * 131 + h.epoch)
        h.core = self.core_factory(cfg, epoch=h.epoch, rng=rng, now=now)
        h.up = True
        h.started_at = now
        h.timer_tick = -1
        h.last_rx = b""
        self.checker.host_up(now, h.index)
        self._log(now, f"boot {h.index} epoch {h.epoch}")
        if not h.ok:
            h.core.test_result(now, False, "still failing")
        if h.quiesced:
            h.core.quiesce(now)
        self._after(h, now)

    def _down(self, h: SimHost, now: float, why: str) -> None:
        h.up = False
        h.core = None
        h.down_at = now
        self.checker.host_down(now, h.index)
        if self.hearing.forget(h.index):
            self._caught_up(now)
        for address, holders in list(self.checker.holders.items()):
            if h.index in holders:
                self.checker.unheld(now, address, h.index)
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
                    if not core.ok or core.quiesced or core.config.observer:
                        self.checker.violate(
                            "I2",
                            now,
                            f"host {h.index} acquires {fmt(eff.address)} "
                            f"(ok={core.ok}, quiesced={core.quiesced})",
                        )
                    self._action(h, now, "acquire", eff.address)
                elif isinstance(eff, Release):
                    self._action(h, now, "release", eff.address)
                elif isinstance(eff, Announce):
                    pass
                elif isinstance(eff, Event):
                    self._event(h, eff)
            if core.left:
                self._down(h, now, "left")
                return
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

    def _action(self, h: SimHost, now: float, op: str, address: Addr) -> None:
        tick = self.tick + max(1, round(self.params.action_delay / TICK))
        self._at(tick, (_ACTION, h.index, h.epoch, op, address))

    def _send(self, h: SimHost, now: float, eff: Send) -> None:
        data = eff.data
        copies = len(eff.vias)
        self.result.messages += copies
        self.result.bytes += copies * len(data)
        dgram = wire.decode(data, group_tag=self.group_tag, keys=(KEY,))
        net = self.net
        s = h.index
        fan: dict[int, list[int]] = {}
        now_tick = self.tick
        exact = self.params.exact_duplicates
        if net.quiet and not exact:
            base = net.latency
            jit = net.jitter
            rnd = net.rng.random
            for r in self.hosts:
                if r.up and r.index != s:
                    tick = now_tick + 1 + int((base + rnd() * jit) / TICK)
                    fan.setdefault(tick, []).append(r.index)
        else:
            for r in self.hosts:
                if not r.up or r.index == s:
                    continue
                dropped = net.drops
                delays = net.delays(now, s, r.index)
                if not delays:
                    if net.drops != dropped:
                        self._lost(now, s, r.index, dgram)
                    continue
                for d in delays if exact else [min(delays)]:
                    tick = now_tick + 1 + int(d / TICK)
                    fan.setdefault(tick, []).append(r.index)
        for tick, receivers in fan.items():
            self._at(tick, (_DELIVER, s, dgram, data, receivers, now))

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
            ):
                self._at(ceil(act.time / TICK), (_FAULT, act))
        if p.inject_bad:
            t = 1.0
            while t < p.duration:
                self._at(ceil(t / TICK), (_INJECT, self.rng.randrange(p.hosts)))
                t += 0.5 + self.rng.random() * 2.0
        self.checker.fault(0.0)
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
                    if h.core is not None and h.epoch == item[2] and h.timer_tick == tick:
                        h.timer_tick = -1
                        h.core.handle_timer(now)
                        self._after(h, now)
                elif kind == _ACTION:
                    self._complete(now, item)
                elif kind == _FAULT:
                    self._fault(now, item[1])
                elif kind == _DEADLINE:
                    self._deadline(now, item[1])
                else:
                    self._inject(now, item[1])
            if checker.dirty or checker.dups or checker.introducing:
                checker.step(now)
        self.tick = max(self.tick, end)

    def apply(self, act: FaultAction) -> None:
        """Apply a fault action now (for tests that drive the simulator step by step)."""
        self._fault(self.tick * TICK, act)

    def _deliver(self, now: float, item: tuple[Any, ...]) -> None:
        _, _sender, dgram, data, receivers, sent = item
        hosts = self.hosts
        n = 0
        for r in receivers:
            h = hosts[r]
            core = h.core
            if core is None or h.started_at > sent:
                continue  # down, or restarted since: its old socket is gone
            n += 1
            h.last_rx = data
            if self.hearing.delivered(now, _sender, r, dgram, sent):
                self._caught_up(now)
            core.receive(now, dgram, 0)
            if core.has_work():
                self._after(h, now)
        self.result.deliveries += n

    def _complete(self, now: float, item: tuple[Any, ...]) -> None:
        _, index, epoch, op, address = item
        h = self.hosts[index]
        if h.core is None or h.epoch != epoch:
            return
        if op == "acquire":
            self.checker.held(now, address, index)
        else:
            self.checker.unheld(now, address, index)
        h.core.action_done(now, address, True)
        self._after(h, now)

    def _deadline(self, now: float, fault_at: float) -> None:
        if self.active:
            return  # a lasting disturbance began since: its end schedules the check
        self.checker.deadline(now, fault_at)

    # ------------------------------------------------------------------ loss

    def _lost(self, now: float, s: int, r: int, dgram: Datagram) -> None:
        """A datagram from s reached r in no copy (sim/hearing.py): if r missed
        news, that is a disturbance until r hears s again."""
        if self.hearing.lost(now, s, r, dgram, self.net.max_delay()):
            self.active += 1
            self.checker.disturbance(now)
            self.checker.fault(now)

    def _caught_up(self, now: float) -> None:
        """Nobody is behind any more: judge from now, as after a disturbance."""
        self.active -= 1
        self.checker.fault(now)
        if not self.active:
            self._at(self.tick + ceil(self.checker.bound / TICK) + 1, (_DEADLINE, now))

    def result_now(self) -> SimResult:
        return self._finish()

    def _finish(self) -> SimResult:
        r = self.result
        r.violations = self.checker.violations
        r.convergences = self.checker.convergences
        r.max_convergence_s = round(max(r.convergences, default=0.0), 4)
        r.dropped = self.net.drops
        r.trace_sha256 = self.trace.hexdigest()
        r.events = self._events
        return r

    # ---------------------------------------------------------------- faults

    def _fault(self, now: float, act: FaultAction) -> None:
        from rais.sim.inject import apply_fault

        apply_fault(self, now, act)
        self.checker.introduce()
        if act.kind != "boot":
            self.result.faults += act.kind.endswith("+")
        base = act.kind.rstrip("+-")
        if base in DISTURBANCES and act.kind != "latency-":
            self.active += 1 if act.kind.endswith("+") else -1
            if act.kind.endswith("+"):
                self.checker.disturbance(now)
        self.checker.fault(now)
        if not self.active:
            self._at(self.tick + ceil(self.checker.bound / TICK) + 1, (_DEADLINE, now))

    def _inject(self, now: float, index: int) -> None:
        from rais.sim.inject import inject_bad

        self.result.injected += inject_bad(self, now, self.hosts[index])
