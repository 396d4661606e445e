"""The engine's delivery steps: a send fanned out over the control networks
(sim/network.py), and its copies handed to the receivers' cores.

With ``SimParams.late_steady`` a receiver also has the quiet socket of
rais.drivers.quiet: per sender, the steady part (rais.core.wire.steady) of the
last datagram it processed at once is a *candidate*, and one that comes again
becomes the sender's *pattern*. A datagram equal to its sender's pattern is
*held*: the core gets it, with ``now`` its arrival time (or the core's own
clock if that is later), only when the host next wakes for anything else (its
timer, a datagram processed at once, an action completing, a fault or an
operator touching it, a bad datagram, the arbiter), before that input. Held
datagrams go with the socket if the host stops or restarts first. A host that
runs the version-1 release (``SimParams.old``) has no quiet socket.

The checker is told of a datagram (``Checker.delivered``) when the core gets it.

A base of ``Simulation`` (sim/engine.py), which provides the scheduling."""

from __future__ import annotations

from typing import Any

from rais.core import wire
from rais.core.effects import Send
from rais.core.messages import Datagram
from rais.drivers.quiet import Patterns
from rais.sim.guarded import Guarded
from rais.sim.invariants import Checker
from rais.sim.network import TICK, Network
from rais.sim.params import SimParams, SimResult
from rais.sim.world import KEY, SimHost

DELIVER = 0
"""The engine's kind of a scheduled delivery (sim/engine.py)."""

_Held = tuple[float, int, Datagram, bytes, float]
"""A held datagram: when it arrived, its sender, the datagram, its bytes, when sent."""


class Quiet:
    """One host's quiet socket and patterns, for one epoch of its agent (the
    patterns are the driver's own bookkeeping, rais.drivers.quiet.Patterns)."""

    __slots__ = ("epoch", "held", "patterns")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.patterns = Patterns()
        self.held: list[_Held] = []
        """Waiting on the quiet socket, in arrival order."""


class Delivery:
    params: SimParams
    checker: Checker
    guarded: Guarded
    hosts: list[SimHost]
    net: Network
    result: SimResult
    group_tag: int
    tick: int
    quiets: dict[int, Quiet]
    """Each receiving host's quiet socket (``late_steady``)."""

    def _at(self, tick: int, item: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def _after(self, h: SimHost, now: float) -> None:
        raise NotImplementedError

    def _judge_later(self, now: float) -> None:
        raise NotImplementedError

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
                        self.checker.lost(now, s, r.index, dgram)
                    continue
                for d in delays if exact else [min(delays)]:
                    tick = now_tick + 1 + int(d / TICK)
                    fan.setdefault(tick, []).append(r.index)
        for tick, receivers in fan.items():
            self._at(tick, (DELIVER, s, dgram, data, receivers, now))

    def _deliver(self, now: float, item: tuple[Any, ...]) -> None:
        _, s, dgram, data, receivers, sent = item
        hosts = self.hosts
        late = self.params.late_steady
        steady = wire.steady(data) if late else None
        for r in receivers:
            h = hosts[r]
            if h.core is None or h.started_at > sent or r in self.guarded.stalled:
                continue  # down, restarted since (its old socket is gone) or stalled
            if late and not h.old:
                quiet = self._quiet(h)
                if steady is not None and quiet.patterns.installed.get(steady.sender) == steady:
                    quiet.held.append((now, s, dgram, data, sent))
                    self.result.held += 1
                    continue
                self._wake(h, now)
                self._receive(h, now, now, (now, s, dgram, data, sent))
                quiet.patterns.seen(steady, now)
            else:
                self._receive(h, now, now, (now, s, dgram, data, sent))

    def _receive(self, h: SimHost, now: float, at: float, held: _Held) -> None:
        """h's core gets a datagram now, as arrived at ``at``."""
        core = h.core
        if core is None:
            return  # it left while taking the held ones
        _, s, dgram, data, sent = held
        self.result.deliveries += 1
        h.last_rx = data
        if self.checker.delivered(now, s, h.index, dgram, sent, at):
            self._judge_later(now)
        core.receive(at, dgram, 0)
        if core.has_work():
            self._after(h, now)

    def _quiet(self, h: SimHost) -> Quiet:
        quiet = self.quiets.get(h.index)
        if quiet is None or quiet.epoch != h.epoch:
            quiet = self.quiets[h.index] = Quiet(h.epoch)
        return quiet

    def _wake(self, h: SimHost, now: float) -> None:
        """h is about to take an input: first what waits on its quiet socket."""
        quiet = self.quiets.get(h.index)
        if quiet is None or not quiet.held:
            return
        held, quiet.held = quiet.held, []
        if quiet.epoch != h.epoch:
            return  # its agent stopped since: they went with its socket
        for one in held:
            core = h.core
            if core is None:
                return
            self._receive(h, now, max(one[0], core.now), one)

    def _wake_all(self, now: float) -> None:
        for h in self.hosts:
            self._wake(h, now)
