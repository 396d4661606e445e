"""The service groups this host runs: joining one starts its runner and its
supervised parts (the address refresher it cannot run without, its DNS
publishers), subscribes it to its tests and registers its DNS; leaving undoes
all that after a graceful leave. And what a reload changes (``reloaded``)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from rais.admin.metrics import Metrics
from rais.config import IP, AgentConfig, GroupConfig, HostConfig
from rais.config.etcd import EtcdConfig
from rais.core.pause import out_of_bounds
from rais.drivers.base import Arbiter, Links
from rais.probes.spec import LoadSpec, TestSpec
from rais.runtime.arbiter import Campaigner
from rais.runtime.dns_service import DnsService
from rais.runtime.events import AnyEvent
from rais.runtime.group import Drivers, GroupRunner
from rais.runtime.state import HeldFile
from rais.runtime.supervise import Supervisor

log = logging.getLogger("rais.agent")

DriverFactory = Callable[[GroupConfig, tuple[IP, ...]], Drivers]


class Probes(Protocol):
    """The test and load objects of this host (rais.probes.hub.ProbeHub)."""

    async def run(self) -> None: ...

    def subscribe(
        self, names: Sequence[str], callback: Callable[[bool, str], None]
    ) -> Callable[[], None]: ...

    def load(self, names: Sequence[str], how: Literal["max", "sum"]) -> tuple[int, int] | None: ...

    def test_states(self) -> Mapping[str, Any]: ...

    def reconfigure(self, tests: Mapping[str, TestSpec], loads: Mapping[str, LoadSpec]) -> None: ...

    def stopped(self, reason: str) -> None:
        """Every test counts as failing (the probes' task failed) until they run again."""


@dataclass(frozen=True, slots=True)
class PauseRefused:
    """Why ``rais pause`` was refused: the text, the group, the hosts lacking
    the ``pause`` feature (empty when that is not why)."""

    reason: str
    group: str
    hosts: tuple[str, ...]


class Groups:
    def __init__(
        self,
        runners: dict[str, GroupRunner],
        *,
        host: HostConfig,
        keys: tuple[bytes, ...],
        make_drivers: DriverFactory,
        probes: Probes,
        publish: Callable[[AnyEvent], None],
        metrics: Metrics,
        dns: DnsService,
        supervisor: Callable[[], Supervisor | None],
        rng: random.Random,
        leave_grace: float,
        links: Links | None = None,
        etcd: Callable[[], EtcdConfig | None] = lambda: None,
        arbiter: Callable[[], Arbiter] | None = None,
    ) -> None:
        """``runners``: the running groups by name (filled and emptied here);
        ``host`` and ``keys`` never change while the agent runs; ``publish``:
        the event bus; ``supervisor()``: the running agent's supervisor; each
        group's random generator is seeded from ``rng``; ``links``: the link
        watcher a group with ``track_link`` subscribes to (None: no tracking);
        ``etcd()``: the running ``[etcd]``, and ``arbiter()`` the agent's one
        client of it, for the groups with guard "etcd" (rais.runtime.arbiter)."""
        self.runners = runners
        self.host = host
        self.keys = keys
        self.make_drivers = make_drivers
        self.probes = probes
        self.publish = publish
        self.metrics = metrics
        self.dns = dns
        self._supervisor = supervisor
        self.rng = rng
        self.leave_grace = leave_grace
        self.links = links
        self.etcd = etcd
        self.arbiter = arbiter
        self._unsubscribe: dict[str, list[Callable[[], None]]] = {}
        self.beat_origin: float | None = None
        """The heartbeats' grid of every group (``_beat_origin``)."""
        self.campaigners: dict[str, Campaigner] = {}
        """The arbiter loop of each group with guard "etcd", by group name."""

    async def join(self, group: GroupConfig, epoch: int, resume_until: float | None = None) -> None:
        """Start ``group``; ``resume_until``: the end of the pause of the previous
        process of this agent, whose addresses the group then takes over."""
        control = self.host.control
        runner = GroupRunner(
            group,
            control=control,
            keys=self.keys,
            epoch=epoch,
            drivers=self.make_drivers(group, control),
            held=HeldFile(Path(self.host.state_dir) / f"held-{group.name}"),
            on_event=self.publish,
            rng=random.Random(self.rng.getrandbits(64)),
            load_source=self._load_source(group),
            metrics=self.metrics,
            on_fatal=self._fatal,
            beat_origin=self._beat_origin(),
        )
        await runner.start(resume_until)
        self.runners[group.name] = runner
        sup = self.supervisor()
        sup.need(f"refresher {group.name}", runner.refresh_forever, group=group.name)
        subs = self._unsubscribe[group.name] = []
        if self.links is not None and group.track_link:
            # No await since start(): nothing was acquired on an unknown link.
            runner.tracks_link = True
            subs.append(self.links.subscribe(group.interface, runner.link_state))
        if group.guard == "etcd":
            self._campaign(group, runner)
        if group.tests:
            subs.append(self.probes.subscribe(group.tests, runner.test_result))
        gd = self.dns.add(group)
        if gd is not None:
            subs.append(self.dns.follow(group.name, runner))
        for kind, run in gd.runs() if gd is not None else ():
            sup.keep(f"dns {kind} {group.name}", run, group=group.name)
        log.info("group %s: joined", group.name)

    def _beat_origin(self) -> float:
        """One beat grid for all groups (the loop time of the first join): the
        heartbeats of groups of one period leave in one wake-up."""
        if self.beat_origin is None:
            self.beat_origin = asyncio.get_running_loop().time()
        return self.beat_origin

    async def leave(self, name: str) -> None:
        runner = self.runners.pop(name, None)
        if runner is None:
            return
        for unsubscribe in self._unsubscribe.pop(name, []):
            unsubscribe()
        sup = self.supervisor()
        arbiter = _arbiter_part(name)
        for part in [p for p in sup.parts.values() if p.group == name]:
            if part.name != arbiter:  # it resigns the key when the leave says so
                sup.stop(part.name)
        self.dns.remove(name)
        await runner.leave(self.leave_grace)
        runner.stop()
        sup.stop(arbiter)
        self.campaigners.pop(name, None)
        log.info("group %s: left", name)

    async def join_all(
        self, groups: Sequence[GroupConfig], epoch: int, resume_until: float | None = None
    ) -> None:
        await asyncio.gather(*(self.join(group, epoch, resume_until) for group in groups))

    def pause_refused(self, duration: float) -> PauseRefused | None:
        """Why this host cannot pause every group now (None: it can)."""
        for name, runner in self.runners.items():
            why = out_of_bounds(duration, runner.core_config.timeout)
            if why is not None:
                return PauseRefused(f"group {name}: {why}", name, ())
            hosts = runner.pause_lacking()
            if hosts:
                lacking = ", ".join(str(h) for h in hosts)
                why = f"group {name}: {lacking} cannot keep a pause (no 'pause' feature)"
                return PauseRefused(why, name, tuple(str(h) for h in hosts))
            why = runner.pause_refusal(duration)
            if why is not None:
                return PauseRefused(why, name, ())
        return None

    def pause(self, duration: float) -> PauseRefused | None:
        """Operator: pause every group (all or none; rais.core.pause)."""
        refused = self.pause_refused(duration)
        if refused is not None:
            return refused
        for name, runner in self.runners.items():
            why = runner.pause(duration)
            if why is not None:
                return PauseRefused(f"group {name}: {why}", name, ())
        return None

    async def stop_all_in_place(self) -> None:
        """End the groups without a leave (after a pause): their addresses stay
        configured for the next process of this agent."""
        sup = self.supervisor()
        for name in list(self.runners):
            runner = self.runners.pop(name)
            for unsubscribe in self._unsubscribe.pop(name, []):
                unsubscribe()
            for part in [p for p in sup.parts.values() if p.group == name]:
                sup.stop(part.name)
            self.dns.remove(name)
            self.campaigners.pop(name, None)
            runner.stop()
            await runner.drain()
            log.info("group %s: stopped in place (paused)", name)

    async def leave_all(self) -> None:
        await asyncio.gather(*(self.leave(name) for name in list(self.runners)))

    async def change(
        self, old: Sequence[GroupConfig], new: Sequence[GroupConfig], epoch: int
    ) -> None:
        """Leave the groups removed or changed, then join the new or changed ones."""
        before = {g.name: g for g in old}
        after = {g.name: g for g in new}
        for name, group in before.items():
            if after.get(name) != group:
                await self.leave(name)
        for name, group in after.items():
            if before.get(name) != group:
                await self.join(group, epoch)

    def _campaign(self, group: GroupConfig, runner: GroupRunner) -> None:
        """Start the arbiter loop of a group with guard "etcd"."""
        etcd = self.etcd()
        if etcd is None or self.arbiter is None:
            raise RuntimeError(f'group {group.name}: guard "etcd" but no [etcd] is running')
        loop = Campaigner(
            self.arbiter(),
            key=etcd.prefix + group.name,
            value=str(self.host.control[0]).encode(),
            ttl=etcd.ttl,
            report=runner.arbiter_state,
            name=f"group {group.name}",
        )
        self.campaigners[group.name] = loop
        runner.on_campaign = loop.want
        loop.want(runner.wants_key)
        self.supervisor().keep(_arbiter_part(group.name), loop.run, group=group.name)

    def supervisor(self) -> Supervisor:
        sup = self._supervisor()
        if sup is None:
            raise RuntimeError("the agent is not running")
        return sup

    def _fatal(self, part: str, reason: str) -> None:
        self.supervisor().fatal(part, reason)

    def _load_source(self, group: GroupConfig) -> Callable[[], tuple[int, int] | None] | None:
        if not group.loads:
            return None
        names, how = group.loads, group.load_combine
        return lambda: self.probes.load(names, how)


def _arbiter_part(group: str) -> str:
    return f"arbiter {group}"


def reloaded(running: AgentConfig, new: AgentConfig) -> AgentConfig:
    """The config after a reload: ``new``'s groups, tests and loads; the rest
    (host, auth, DNS server, SNMP, etcd) stays as running (logged if it
    changed). An ``[etcd]`` the running config did not have is taken: nothing
    used one yet."""
    etcd = running.etcd if running.etcd is not None else new.etcd
    if (
        new.host != running.host
        or new.auth.keys != running.auth.keys
        or new.dns != running.dns
        or new.snmp != running.snmp
        or new.etcd != etcd
    ):
        log.error(
            "reload: [host], [auth], [dns], [snmp] and [etcd] changes need a restart; "
            "groups, tests and loads reloaded only"
        )
    return replace(running, groups=new.groups, tests=new.tests, loads=new.loads, etcd=etcd)
