"""A tiny deterministic cluster of protocol cores for the core's unit tests.

Every host is one :class:`~rais.core.core.Core` on a shared virtual clock
that advances in whole milliseconds (``TICK``). The cluster

* calls ``handle_timer`` as soon as a core's timer is due (at the first tick
  at or after ``get_timer()``),
* delivers every ``Send`` to every other live core, on each network (``via``)
  the receiver has a control address on, ``latency`` seconds later (plus up to
  ``jitter`` more, drawn per copy, which reorders datagrams), unless the
  ``drop`` filter says otherwise (loss, partitions),
* completes ``Acquire`` and ``Release`` effects ``action_delay`` seconds later
  with ``action_done`` (ok, unless the host's ``fail_next_acquire`` is set),
* records, per host, every effect with the time it was produced and which
  service addresses the host holds (an acquire that completed ok, until the
  release completed or the host was killed), every address of a set included.

Time only moves from one thing due to the next, so a run of several
simulated seconds costs milliseconds. Nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from rais.core import wire
from rais.core.addr import Addr, pack
from rais.core.config import CoreConfig
from rais.core.core import Core
from rais.core.effects import Acquire, Effect, Event, EventKind, Release, Send
from rais.core.features import FEATURES, WIRE_VERSIONS
from rais.core.messages import Command, HostEntry, Message
from rais.core.view import CoreView

TICKS_PER_SECOND = 1000
TICK = 1.0 / TICKS_PER_SECOND
GROUP = "web"
KEY = b"clusterkit-key"
HEARTBEAT = 0.1
TIMEOUT = 0.3

DropFilter = Callable[[int, int, int], bool]
"""``drop(sender, receiver, via)``: True to lose that copy of a datagram."""

E = TypeVar("E")


def host_id(n: int) -> Addr:
    """The id (first control address) of host number ``n``: 192.0.2.n."""
    return pack(f"192.0.2.{n}")


def service(n: int) -> Addr:
    """Service address number ``n``: 198.51.100.n."""
    return pack(f"198.51.100.{n}")


def make_config(
    n: int,
    *,
    spare: bool = False,
    observer: bool = False,
    group: str = GROUP,
    networks: int = 1,
    heartbeat: float = HEARTBEAT,
    timeout: float = TIMEOUT,
    orphan_timeout: float = 86400.0,
    keys: tuple[bytes, ...] = (KEY,),
    preferred: Addr | None = None,
    extras: tuple[tuple[Addr, int], ...] = (),
    old: bool = False,
) -> CoreConfig:
    """Host ``n``: id 192.0.2.n (plus 198.18.k.n on network k), preferred address
    198.51.100.n/24 unless it is a spare or an observer."""
    control = (host_id(n), *tuple(pack(f"198.18.{k}.{n}") for k in range(1, networks)))
    if preferred is None and not (spare or observer):
        preferred = service(n)
    return CoreConfig(
        group=group,
        control=control,
        keys=keys,
        heartbeat=heartbeat,
        timeout=timeout,
        preferred=preferred,
        prefixlen=24 if preferred is not None else 0,
        observer=observer,
        orphan_timeout=orphan_timeout,
        extras=extras,
        # ``old``: the version-1 release (wire version 1, no features)
        wire_versions=(1,) if old else WIRE_VERSIONS,
        features=() if old else FEATURES,
    )


@dataclass(slots=True)
class Node:
    """One host of the cluster, across its restarts."""

    index: int
    config: CoreConfig
    core: Core
    epoch: int
    seed: int
    alive: bool = True
    stopped_in_place: bool = False
    """Its process stopped after ``rais pause``; its addresses stay configured."""
    fail_next_acquire: bool = False
    fail_acquires: bool = False
    """Every acquire on this host fails (a broken acquire script)."""
    held: set[Addr] = field(default_factory=set)
    log: list[tuple[float, Effect]] = field(default_factory=list)
    """Every effect this host produced (all incarnations), with its time."""
    claims: list[tuple[Addr, float, float | None]] = field(default_factory=list)
    """(address, Acquire emitted, release completed or None while still claimed)."""

    @property
    def id(self) -> Addr:
        return self.config.host_id


@dataclass(frozen=True, slots=True)
class _Delivery:
    sender: int
    sender_epoch: int
    receiver: int
    receiver_epoch: int
    data: bytes
    via: int


@dataclass(frozen=True, slots=True)
class _Action:
    node: int
    epoch: int
    address: Addr
    acquire: bool
    ok: bool
    extras: tuple[Addr, ...] = ()
    extras_only: bool = False


class Cluster:
    """Hosts on a shared virtual clock, in milliseconds."""

    def __init__(
        self,
        configs: Iterable[CoreConfig] = (),
        *,
        latency: float = 0.001,
        action_delay: float = 0.001,
        seed: int = 0,
        drop: DropFilter | None = None,
        jitter: float = 0.0,
    ) -> None:
        self.latency_ticks = max(1, round(latency * TICKS_PER_SECOND))
        self.jitter_ticks = round(jitter * TICKS_PER_SECOND)
        self._jitter = random.Random(seed)
        self.action_ticks = max(1, round(action_delay * TICKS_PER_SECOND))
        self.seed = seed
        self.drop = drop
        self.tick = 0
        self.nodes: list[Node] = []
        self._queue: list[tuple[int, int, _Delivery | _Action]] = []
        self._order = 0
        for c in configs:
            self.add(c)

    # ------------------------------------------------------------- building

    @property
    def now(self) -> float:
        return self.tick / TICKS_PER_SECOND

    def add(self, config: CoreConfig) -> int:
        """Start a new host now; returns its index."""
        index = len(self.nodes)
        seed = self.seed * 1000 + index
        core = Core(config, epoch=1, rng=random.Random(seed), now=self.now)
        self.nodes.append(Node(index, config, core, 1, seed))
        self._fire(self.nodes[index])
        return index

    def kill(self, i: int) -> None:
        """Crash host ``i``: nothing more goes to or from it, its addresses are gone."""
        node = self.nodes[i]
        node.alive = False
        node.held.clear()
        self._close_claims(node, None)

    def stop_in_place(self, i: int) -> None:
        """Stop host ``i``'s process without a leave (after ``rais pause``): it
        sends and hears nothing more, but its addresses stay configured."""
        node = self.nodes[i]
        node.alive = False
        node.stopped_in_place = True

    def kernel_drop(self, i: int) -> None:
        """The kernel lifetime of a stopped host's addresses ran out."""
        node = self.nodes[i]
        node.stopped_in_place = False
        node.held.clear()
        self._close_claims(node, None)

    def restart(self, i: int, *, resume: bool = False) -> None:
        """Boot host ``i`` again with a fresh core and the next epoch; with
        ``resume`` after ``stop_in_place``, the new core holds what is still
        configured (``Core.resume``), else whatever was left is removed."""
        node = self.nodes[i]
        if node.alive or (node.stopped_in_place and not resume):
            self.kill(i)
        node.stopped_in_place = False
        node.epoch += 1
        node.seed += 7919
        node.core = Core(node.config, epoch=node.epoch, rng=random.Random(node.seed), now=self.now)
        node.alive = True
        if resume and node.held:
            node.core.resume(
                self.now, [(a, node.config.prefixlen or 24) for a in sorted(node.held)]
            )
            self._drain(node)
        self._fire(node)

    # -------------------------------------------------------------- running

    def step(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def run_until(self, t: float) -> None:
        """Advance the clock to ``t`` (rounded to the tick), doing everything due on the way."""
        end = round(t * TICKS_PER_SECOND)
        while True:
            nxt = self._next_tick()
            if nxt is None or nxt > end:
                self.tick = max(self.tick, end)
                return
            self.tick = nxt
            self._process()

    def run_until_true(self, cond: Callable[[], bool], limit: float) -> float:
        """Advance tick by tick until ``cond()`` holds; return the time. Fails after ``limit``."""
        end = self.now + limit
        while not cond():
            if self.now >= end:
                raise AssertionError(f"condition not met by t={self.now:.3f}")
            self.step(TICK)
        return self.now

    # ---------------------------------------------------------- operations

    def deliver(self, i: int, data: bytes, via: int = 0) -> list[Effect]:
        """Hand ``data`` to host ``i`` now, as if it arrived on ``via``; returns the
        effects it produced (which the cluster then carries out as usual)."""
        node = self.nodes[i]
        node.core.datagram_received(self.now, data, via)
        return self._drain(node)

    def poke(self, i: int, call: Callable[[Core, float], None]) -> list[Effect]:
        """Call ``call(core, now)`` on host ``i`` (an operator command, a test result)
        and carry out its effects; returns them."""
        node = self.nodes[i]
        call(node.core, self.now)
        return self._drain(node)

    def test_result(self, i: int, ok: bool) -> list[Effect]:
        return self.poke(i, lambda core, now: core.test_result(now, ok))

    def quiesce(self, i: int) -> list[Effect]:
        return self.poke(i, lambda core, now: core.quiesce(now))

    def unquiesce(self, i: int) -> list[Effect]:
        return self.poke(i, lambda core, now: core.unquiesce(now))

    def leave(self, i: int) -> list[Effect]:
        return self.poke(i, lambda core, now: core.leave(now))

    # -------------------------------------------------------------- queries

    def core(self, i: int) -> Core:
        return self.nodes[i].core

    def view(self, i: int) -> CoreView:
        """Host ``i``'s core as code outside the core sees it, now."""
        return self.nodes[i].core.view(self.now)

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    def holders(self, address: Addr) -> list[int]:
        """Indexes of the live (or stopped in place) hosts that hold ``address`` now."""
        return [
            n.index for n in self.nodes if (n.alive or n.stopped_in_place) and address in n.held
        ]

    def leaders(self) -> set[Addr | None]:
        """The leaders the live, not-left hosts see (one element once they agree)."""
        return {n.core.leader for n in self.nodes if n.alive and not n.core.left}

    def logged(self, i: int, kind: type[E]) -> list[tuple[float, E]]:
        """Host ``i``'s effects of type ``kind``, with their times."""
        return [(t, e) for t, e in self.nodes[i].log if isinstance(e, kind)]

    def events(self, i: int, kind: EventKind | None = None) -> list[Event]:
        return [e for _, e in self.logged(i, Event) if kind is None or e.kind == kind]

    def all_events(self, kind: EventKind) -> list[tuple[int, Event]]:
        return [(n.index, e) for n in self.nodes for e in self.events(n.index, kind)]

    def acquires(self, address: Addr) -> list[tuple[float, int]]:
        """(time, host index) of every Acquire of ``address``, in time order."""
        out = [
            (t, n.index)
            for n in self.nodes
            for t, e in self.logged(n.index, Acquire)
            if e.address == address
        ]
        return sorted(out)

    def last_send(self, i: int) -> float:
        sends = self.logged(i, Send)
        if not sends:
            raise AssertionError(f"host {i} never sent")
        return sends[-1][0]

    def overlapping_claims(self, address: Addr) -> list[tuple[int, int]]:
        """Pairs of hosts whose claims on ``address`` (from the Acquire effect to
        the completed release) overlapped in time."""
        spans = [
            (n.index, start, math.inf if end is None else end)
            for n in self.nodes
            for a, start, end in n.claims
            if a == address
        ]
        out = []
        for k, (i, s1, e1) in enumerate(spans):
            for j, s2, e2 in spans[k + 1 :]:
                if i != j and s1 < e2 and s2 < e1:
                    out.append((i, j))
        return out

    # ------------------------------------------------------------ internals

    def _push(self, tick: int, item: _Delivery | _Action) -> None:
        self._order += 1
        heapq.heappush(self._queue, (tick, self._order, item))

    def _next_tick(self) -> int | None:
        best = self._queue[0][0] if self._queue else None
        for n in self.nodes:
            if not n.alive:
                continue
            t = n.core.get_timer()
            if t is None:
                continue
            k = max(self.tick + 1, math.ceil(t * TICKS_PER_SECOND - 1e-6))
            if best is None or k < best:
                best = k
        if best is not None and best <= self.tick:
            best = self.tick + 1
        return best

    def _process(self) -> None:
        while self._queue and self._queue[0][0] <= self.tick:
            _, _, item = heapq.heappop(self._queue)
            if isinstance(item, _Delivery):
                self._on_delivery(item)
            else:
                self._on_action(item)
        for n in self.nodes:
            self._fire(n)

    def _fire(self, node: Node) -> None:
        if not node.alive:
            return
        t = node.core.get_timer()
        if t is not None and t <= self.now:
            node.core.handle_timer(self.now)
            self._drain(node)

    def _on_delivery(self, d: _Delivery) -> None:
        sender = self.nodes[d.sender]
        node = self.nodes[d.receiver]
        if not (sender.alive and sender.epoch == d.sender_epoch):
            return
        if not (node.alive and node.epoch == d.receiver_epoch):
            return
        node.core.datagram_received(self.now, d.data, d.via)
        self._drain(node)

    def _on_action(self, a: _Action) -> None:
        node = self.nodes[a.node]
        if not (node.alive and node.epoch == a.epoch):
            return
        addresses = (*(() if a.extras_only else (a.address,)), *a.extras)
        for address in addresses:
            if a.acquire and a.ok:
                node.held.add(address)
            else:
                node.held.discard(address)
                self._close_claims(node, address)
        node.core.action_done(self.now, a.address, a.ok, "" if a.ok else "clusterkit failure")
        self._drain(node)

    def _close_claims(self, node: Node, address: Addr | None) -> None:
        for k, (a, start, end) in enumerate(node.claims):
            if end is None and (address is None or a == address):
                node.claims[k] = (a, start, self.now)

    def _drain(self, node: Node) -> list[Effect]:
        effects = node.core.effects()
        now = self.now
        for e in effects:
            node.log.append((now, e))
            if isinstance(e, Send):
                self._send(node, e)
            elif isinstance(e, Acquire):
                ok = not (node.fail_next_acquire or node.fail_acquires)
                node.fail_next_acquire = False
                extras = tuple(a for a, _ in e.extras)
                for address in (*(() if e.extras_only else (e.address,)), *extras):
                    node.claims.append((address, now, None))
                self._push(
                    self.tick + self.action_ticks,
                    _Action(node.index, node.epoch, e.address, True, ok, extras, e.extras_only),
                )
            elif isinstance(e, Release):
                extras = tuple(a for a, _ in e.extras)
                self._push(
                    self.tick + self.action_ticks,
                    _Action(node.index, node.epoch, e.address, False, True, extras, e.extras_only),
                )
        return effects

    def _send(self, node: Node, send: Send) -> None:
        for via in send.vias:
            for other in self.nodes:
                if other is node or not other.alive or len(other.config.control) <= via:
                    continue
                if self.drop is not None and self.drop(node.index, other.index, via):
                    continue
                delay = self.latency_ticks
                if self.jitter_ticks:
                    delay += self._jitter.randint(0, self.jitter_ticks)
                self._push(
                    self.tick + delay,
                    _Delivery(node.index, node.epoch, other.index, other.epoch, send.data, via),
                )


def partition(*sides: Iterable[int]) -> DropFilter:
    """A drop filter that cuts all traffic between the given sides (hosts in no
    side talk to everyone)."""
    side_of: dict[int, int] = {}
    for k, side in enumerate(sides):
        for i in side:
            side_of[i] = k

    def drop(sender: int, receiver: int, via: int) -> bool:
        a, b = side_of.get(sender), side_of.get(receiver)
        return a is not None and b is not None and a != b

    return drop


def forge(
    cluster: Cluster,
    i: int,
    commands: Iterable[Command] = (),
    *,
    entry: HostEntry | None = None,
) -> bytes:
    """A datagram as host ``i`` would sign it, carrying ``commands`` (and its own
    current entry unless ``entry`` is given). It takes host ``i``'s next sequence
    number, which the host then skips, so the forgery is fresh to every receiver
    and the host's own later datagrams stay fresh too."""
    node = cluster.nodes[i]
    core = node.core
    msg = Message(
        entry=core.entry() if entry is None else entry,
        peers=(),
        table=(),
        commands=tuple(commands),
    )
    datagrams, _ = wire.encode(
        msg,
        group_tag=wire.group_tag(node.config.group),
        sender=node.id,
        epoch=node.epoch,
        seq=core.sender.seq,
        key=node.config.keys[0],
    )
    assert len(datagrams) == 1
    core.sender.seq += 1
    return datagrams[0]
