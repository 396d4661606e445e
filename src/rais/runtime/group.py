"""One service group on this host: drives one protocol core with real drivers.

The runner feeds the core (datagrams, timer expiries, action results, operator
commands), drains its effects and re-arms one loop timer. It makes no protocol
decision. Slow work (netlink, scripts, announcements) runs in tasks of its own,
serialized per address, so a heartbeat never waits behind it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from rais.admin.metrics import Metrics
from rais.admin.traffic import GroupTraffic
from rais.base.ip import IP, ip_key
from rais.config import GroupConfig
from rais.config.keys import core_settings
from rais.core.addr import Addr
from rais.core.config import CoreConfig
from rais.core.core import Core
from rais.core.effects import Acquire, Announce, Campaign, Event, Release, Send
from rais.runtime.actions import Drivers as Drivers  # re-exported: tests take it from here
from rais.runtime.actions import RefreshFailed as RefreshFailed  # re-exported
from rais.runtime.actions import _by_set, to_ip
from rais.runtime.actions import to_addr as to_addr  # re-exported: the agent takes it from here
from rais.runtime.refresh import Refresher
from rais.runtime.state import HeldFile

log = logging.getLogger("rais.group")


def _raise(part: str, reason: str) -> None:
    raise RuntimeError(f"{part}: {reason}")


class GroupRunner(Refresher):
    def __init__(
        self,
        config: GroupConfig,
        *,
        control: tuple[IP, ...],
        keys: tuple[bytes, ...],
        epoch: int,
        drivers: Drivers,
        held: HeldFile,
        on_event: Callable[[Event], None],
        rng: random.Random,
        loop: asyncio.AbstractEventLoop | None = None,
        load_source: Callable[[], tuple[int, int] | None] | None = None,
        metrics: Metrics | None = None,
        on_fatal: Callable[[str, str], None] | None = None,
        beat_origin: float | None = None,
    ) -> None:
        """``load_source`` gives this group's combined (load, capacity), read
        before each timer pass; a group with ``tests`` starts not OK until its
        tests report (``test_result``). ``on_fatal(part, reason)`` hears of a
        failure this group cannot go on after: its transport lost, its core's
        driver raising (the agent ends; see rais.runtime.supervise).
        ``beat_origin`` (loop time): the core's beat grid (rais.core.parts),
        the same for every group of the agent."""
        self.config = config
        self.drivers = drivers
        self.held = held
        self.on_event = on_event
        self.loop = loop or asyncio.get_running_loop()
        self.core_config = CoreConfig(
            control=tuple(to_addr(c) for c in control),
            keys=keys,
            **core_settings(config),  # the mapping is declared on GroupConfig's fields
        )
        self.load_source = load_source
        self.metrics = metrics
        self.traffic = GroupTraffic() if metrics is None else metrics.traffic(config.name)
        """Datagrams sent and received, heartbeat lateness (rais.admin.traffic)."""
        self.on_fatal = on_fatal or _raise
        self.broken: str | None = None
        """Why this group's core can no longer be driven (None: it can)."""
        self.core = Core(
            self.core_config, epoch=epoch, rng=rng, now=self.loop.time(), beat_origin=beat_origin
        )
        self.counters: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None
        self._chains: dict[Addr, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._left = asyncio.Event()
        self._stopped = False
        # Dead man's switch: held addresses carry a kernel lifetime of about the
        # group timeout (whole seconds) and are refreshed well before it runs
        # out; an agent that dies (SIGKILL) leaves nothing behind for long.
        self.lifetime = max(1, math.ceil(config.timeout))
        self.refresh_every = self.lifetime / 2
        self._refreshing: set[IP] = set()
        """Addresses whose refresh waits in their set's chain."""
        self._refresh_failed = asyncio.Event()
        self._refresh_why = ""
        self._refresh_at = 0.0
        self._refresh_seen = -1
        self._fresh: dict[IP, float] = {}
        """When each held address was last added or refreshed."""
        self._lifetimes: dict[IP, int] = {}
        self.tracks_link = False
        """A link watcher reports this group's interface (``link_state``)."""
        self.pause_until: float | None = None
        """While this host pauses (``rais pause``): until when (loop time)."""
        self.wants_key = False
        """Guard "etcd": the core wants the group's leader key (its last ``Campaign``)."""
        self.on_campaign: Callable[[bool], None] | None = None
        """Hears every ``Campaign`` (the group's arbiter loop, rais.runtime.arbiter)."""
        self.on_pumped: Callable[[], None] | None = None
        """Called after the effects of every input are drained (the DNS
        looks whether what its answer depends on changed)."""

    # ------------------------------------------------------------- lifecycle

    async def start(self, resume_until: float | None = None) -> None:
        """Clean up what a previous run left (or, with ``resume_until``, the end
        of the previous process's pause, take it over), open the control
        channel, start beating."""
        try:
            await self.drivers.addresses.prepare(self.config.interface)
        except Exception as exc:
            # Not fatal: the interface may come later; the refresher re-adds
            # addresses the kernel drops with a removed primary.
            self.counters["prepare_failed"] += 1
            log.warning("group %s: %s", self.config.name, exc)
        await self.reconcile(resume_until)
        await self.drivers.transport.start(
            self._on_datagram, self._on_transport_lost, self._on_late_datagram
        )
        self._drive(self._start_listening)

    async def reconcile(self, resume_until: float | None = None) -> None:
        """Remove service addresses a crashed previous run left configured: the
        ones it recorded as held, and every address of this host's own preferred
        set. The leader assigns them afresh (release before acquire: never on two
        hosts); the release script runs once per set found. After an in-place
        restart (``resume_until`` given) the held keys still configured are taken
        over instead (``Core.resume``); the other addresses of their sets are
        removed, and the core adds them again once it may (docs/protocol.md,
        *Address sets*)."""
        wanted = set(self.held.load())
        of = self.held.loaded_keys()
        kept: list[tuple[IP, int]] = []
        pref = self.config.preferred
        if pref is not None:
            wanted.add((pref.ip, pref.network.prefixlen))
            for extra in self.config.extras:
                wanted.add((extra.ip, extra.network.prefixlen))
                of.setdefault((extra.ip, extra.network.prefixlen), pref.ip)
        if not wanted:
            return
        try:
            present = await self.drivers.addresses.present(self.config.interface)
        except Exception as exc:
            log.error("group %s: cannot list %s: %s", self.config.name, self.config.interface, exc)
            return
        present_ips = {ip for ip, _ in present}
        held = self.held.load() if resume_until is not None else set()
        leftovers: list[tuple[IP, int]] = []
        for ip, prefixlen in sorted(wanted, key=lambda w: ip_key(w[0])):
            if ip not in present_ips:
                continue
            if (ip, prefixlen) in held and (ip, prefixlen) not in of:
                kept.append((ip, prefixlen))
                continue
            leftovers.append((ip, prefixlen))
        for key, members in _by_set(leftovers, of):
            log.warning(
                "group %s: removing leftover %s", self.config.name, " ".join(map(str, members))
            )
            await self._release_addresses(key, members, script=True)
            self.counters["reconciled"] += len(members)
        self.held.save(set(kept))
        if kept:
            self._resume(kept)

    def _resume(self, kept: list[tuple[IP, int]]) -> None:
        """Take over what the paused previous process kept (held ONLINE, refreshed)."""
        now = self.loop.time()
        for ip, prefixlen in kept:
            log.info("group %s: taking over %s after an in-place restart", self.config.name, ip)
            self._fresh[ip] = now
            self._chain(to_addr(ip), self._refresh(ip, prefixlen))
        self.counters["resumed"] += len(kept)
        self._drive(lambda: self._input(self.core.resume, [(to_addr(i), p) for i, p in kept]))

    def _input(self, call: Callable[[float, Any], object], arg: Any) -> None:
        call(self.loop.time(), arg)
        self._pump()

    async def leave(self, grace: float) -> None:
        """Graceful leave: release everything, tell the group, wait until done.
        A broken group (see ``broken``) cannot tell the group: it removes its
        addresses itself, and the others take them over after the timeout."""
        if self.broken is None:
            self._drive(self._leave)
        if self.broken is not None:
            await self.abandon()
            return
        try:
            await asyncio.wait_for(self._left.wait(), grace)
        except TimeoutError:
            log.warning("group %s: leave not complete after %.1fs", self.config.name, grace)
        await self.drain()

    async def drain(self) -> None:
        """Wait for the actions in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _start_listening(self) -> None:
        self.core.start_listening(self.loop.time())
        self._pump()

    def _leave(self) -> None:
        self.core.leave(self.loop.time())
        self._pump()

    async def abandon(self) -> None:
        """Remove every address this host holds for the group, without the core."""
        self._stopped = True
        await self.drain()
        for key, members in _by_set(self.held.current(), self.held.keys()):
            shown = " ".join(map(str, members))
            log.warning("group %s: removing %s (the group is broken)", self.config.name, shown)
            await self._release_addresses(key, members, script=True)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.drivers.transport.close()

    # --------------------------------------------------------------- inputs

    def _drive(self, step: Callable[[], object]) -> None:
        """Run one input of the core and its effects; if that raises, the core's
        driver is broken: the group stops and the agent is told (no silent
        death: a timer callback that raised would never be re-armed)."""
        if self.broken is not None:
            return
        try:
            step()
        except Exception as exc:
            self._broke(exc)

    def _broke(self, exc: Exception) -> None:
        """The core's driver failed: see ``_drive``."""
        self.broken = f"{type(exc).__name__}: {exc}"
        log.exception("group %s: the core's driver failed", self.config.name)
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.on_fatal(f"core {self.config.name}", self.broken)

    def _on_transport_lost(self, reason: str) -> None:
        if self._stopped:
            return
        self.broken = f"transport lost: {reason}"
        self._stopped = True
        self.on_fatal(f"transport {self.config.name}", reason)

    def _on_late_datagram(self, data: bytes, via: int, at: float) -> bool:
        """A control datagram read after it arrived, at ``at`` (loop time)."""
        # The core's clock never goes back: a datagram that arrived while the
        # last input was being handled counts from that input's time.
        return self._on_datagram(data, via, max(at, self.core.now))

    def _on_datagram(self, data: bytes, via: int, at: float | None = None) -> bool:
        """One control datagram; returns whether it was authentic."""
        if self._stopped or self.broken is not None:
            return False
        traffic = self.traffic
        traffic.received += 1
        traffic.received_bytes += len(data)
        try:
            now = self.loop.time() if at is None else at
            core = self.core
            authentic = core.datagram_received(now, data, via)
            if not core.idle:  # a steady info leaves nothing to drain
                self._pump()
        except Exception as exc:
            self._broke(exc)
            return False
        return authentic

    def _on_timer(self) -> None:
        self._timer = None
        if self._stopped:
            return
        self._drive(self._timer_pass)

    def _timer_pass(self) -> None:
        self.drivers.transport.catch_up()  # what arrived before now, first
        now = self.loop.time()
        late = now - self._timer_at
        if late > self.config.heartbeat / 2:
            self.counters["late_timers"] += 1
        self.traffic.late(late)
        if self.load_source is not None:
            sample = self.load_source()
            if sample is not None:
                self.core.load_sample(now, *sample)
        self.core.handle_timer(now)
        self._pump()
        self.refresh_due(now)

    def quiesce(self) -> None:
        self.core.quiesce(self.loop.time())
        self._pump()

    def unquiesce(self) -> None:
        self.core.unquiesce(self.loop.time())
        self._pump()

    def test_result(self, ok: bool, reason: str = "") -> None:
        self.core.test_result(self.loop.time(), ok, reason)
        self._pump()

    def link_state(self, up: bool, reason: str) -> None:
        """The service interface's carrier changed (rais.drivers.links)."""
        if self._stopped:
            return

        def step() -> None:
            self.core.link_state(self.loop.time(), up, reason)
            self._pump()

        self._drive(step)

    def arbiter_state(
        self, *, reachable: bool, held: bool, token: int = 0, until: float = 0.0
    ) -> None:
        """Guard "etcd": the arbiter loop's latest word on the leader key."""
        if self._stopped:
            return

        def step() -> None:
            now = self.loop.time()
            self.core.arbiter_state(now, reachable=reachable, held=held, token=token, until=until)
            self._pump()

        self._drive(step)

    def load_sample(self, load: int, capacity: int) -> None:
        self.core.load_sample(self.loop.time(), load, capacity)

    def pause_lacking(self) -> list[IP]:
        return [to_ip(a) for a in self.core.pause_lacking()]

    def pause_refusal(self, duration: float) -> str | None:
        return self.core.pause_refusal(duration)

    def pause(self, duration: float) -> str | None:
        """Operator: restart in place within ``duration`` s; the held addresses'
        kernel lifetime covers the window at once (rais.core.pause)."""
        now = self.loop.time()
        why = self.core.pause(now, duration)
        self._pump()
        if why is None:
            self.pause_until = now + duration
            for ip, prefixlen in self.held.current():
                self._chain(to_addr(ip), self._refresh(ip, prefixlen))
        return why

    def serves_group_address(self, ip: IP) -> bool:
        """Whether ``ip`` is a service address of this group (as this host knows)."""
        return self.core.is_service_address(to_addr(ip))

    def set_key(self, ip: IP) -> IP:
        """The key of the address set that has ``ip`` (``ip`` itself if none)."""
        return to_ip(self.core.key_of(to_addr(ip)))

    def move(self, ip: IP, host: IP, stamp_ms: int) -> str | None:
        """Operator: pin ``ip`` to ``host``; returns why it was refused, or None."""
        why = self.core.move(self.loop.time(), to_addr(ip), to_addr(host), stamp_ms)
        self._pump()
        return why

    def failback(self, ip: IP, stamp_ms: int) -> str | None:
        why = self.core.failback(self.loop.time(), to_addr(ip), stamp_ms)
        self._pump()
        return why

    # -------------------------------------------------------------- effects

    def _pump(self) -> None:
        for eff in self.core.effects():
            if isinstance(eff, Send):
                self.drivers.transport.send(eff.data, eff.vias)
                self.traffic.sent += 1
                self.traffic.sent_bytes += len(eff.data)
            elif isinstance(eff, Acquire):
                self._chain(eff.address, self._acquire(eff))
            elif isinstance(eff, Release):
                self._chain(eff.address, self._release(eff))
            elif isinstance(eff, Announce):
                ips = [to_ip(eff.address), *(to_ip(a) for a, _ in eff.extras)]
                self._spawn(self._announce(ips))
            elif isinstance(eff, Campaign):
                self.wants_key = eff.want
                if self.on_campaign is not None:
                    self.on_campaign(eff.want)
            else:
                self.on_event(eff)
        if self.on_pumped is not None:
            self.on_pumped()
        if self.core.left:
            self._left.set()
        if self._stopped:
            return
        when = self.core.get_timer()
        if when is None:
            return
        if self._timer is not None:
            if self._timer_at == when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    _timer_at: float = 0.0

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _chain(self, address: Addr, coro: Coroutine[Any, Any, None]) -> None:
        """Run actions on one address set (by its key) one after the other."""
        before = self._chains.get(address)

        async def run() -> None:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            await coro

        task = self._spawn(run())
        self._chains[address] = task

        def forget(t: asyncio.Task[None]) -> None:
            if self._chains.get(address) is t:
                del self._chains[address]

        task.add_done_callback(forget)

    def _done(self, address: Addr, ok: bool, reason: str) -> None:
        if self._stopped:
            return

        def step() -> None:
            self.core.action_done(self.loop.time(), address, ok, reason)
            self._pump()

        self._drive(step)
