"""The composition root: one process per host, one group runner per service group.

Config is parsed once (``rais.config.load``) and passed in. ``Agent.run`` holds
one TaskGroup; SIGTERM/SIGINT leave every group gracefully and return 0;
SIGHUP reloads the config (groups join and leave without a restart).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from rais import __version__
from rais.api import make_app, serve
from rais.config import IP, AgentConfig, ConfigError, GroupConfig, load
from rais.core.addr import fmt
from rais.core.effects import Event, EventKind
from rais.dns.group import GroupDns, merge_zones
from rais.dns.server import DnsServer, ZoneData
from rais.drivers.scripts import ScriptRunner
from rais.events import EventLog
from rais.group import Drivers, GroupRunner, to_addr
from rais.metrics import Metrics
from rais.probes.spec import LoadSpec, TestSpec
from rais.snmp.sender import TrapSender
from rais.state import HeldFile, next_epoch
from rais.status import group_status

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


def real_probes(tests: Mapping[str, TestSpec], loads: Mapping[str, LoadSpec]) -> Probes:
    from rais.probes.hub import ProbeHub

    return ProbeHub(tests, loads)


def real_drivers(group: GroupConfig, control: tuple[IP, ...]) -> Drivers:
    """UDP multicast (or unicast peers), netlink and raw-socket announcements."""
    from rais.drivers.announce import LinkAnnouncer
    from rais.drivers.netlink import NetlinkAddresses
    from rais.drivers.transport import UdpTransport

    return Drivers(
        transport=UdpTransport(
            control, group.address, group.port, peers=group.peers, ttl=group.ttl
        ),
        addresses=NetlinkAddresses(),
        announcer=LinkAnnouncer(),
        scripts=ScriptRunner(group.script_timeout),
    )


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        drivers: DriverFactory = real_drivers,
        probes: Callable[[Mapping[str, TestSpec], Mapping[str, LoadSpec]], Probes] = real_probes,
        rng: random.Random | None = None,
        leave_grace: float = 5.0,
    ) -> None:
        self.config = config
        self.make_drivers = drivers
        self.rng = rng or random.Random()
        self.leave_grace = leave_grace
        self.groups: dict[str, GroupRunner] = {}
        self.probes = probes(config.tests, config.loads)
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self.dns: dict[str, GroupDns] = {}
        self._dns_wake = asyncio.Event()
        self._dns_tasks: dict[str, asyncio.Task[None]] = {}
        self.dns_servers: list[DnsServer] = []
        self.traps: TrapSender | None = None
        self.events: collections.deque[Event] = collections.deque(maxlen=1000)
        self.event_log = EventLog()
        self.metrics = Metrics(self.status)
        self.epoch = 0
        self.ready = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._reload_requested = False

    # ------------------------------------------------------------- running

    async def run(self, *, install_signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.epoch = next_epoch(self.config.host.state_dir)
        host, port = self.config.host.api
        token = _read_token(self.config.host.api_token_file)
        api = await serve(make_app(self, token, source=self), host, port)
        if install_signals:
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        probing = loop.create_task(self.probes.run(), name="probes")
        dns_tick = loop.create_task(self._dns_forever(), name="dns")
        trapping: asyncio.Task[None] | None = None
        if self.config.snmp.receivers:
            started = loop.time()
            self.traps = TrapSender(
                self.config.snmp,
                uptime=lambda: loop.time() - started,
                engine_boots=self.epoch & 0x7FFFFFFF,
                on_outcome=self._trap_outcome,
            )
            trapping = loop.create_task(self.traps.run(), name="snmp")
        try:
            async with asyncio.TaskGroup() as tg:
                for group in self.config.groups:
                    tg.create_task(self._start_group(group))
            # after the groups: a zone the server does not know yet is REFUSED,
            # where a warming group's names get no answer at all (issue 10)
            for ip, dport in self.config.dns.listen:
                server = DnsServer((str(ip), dport), self.zones)
                await server.start()
                self.dns_servers.append(server)
            log.info(
                "rais %s up: host %s, epoch %d, groups %s, api %s:%d",
                __version__,
                self.config.host.control[0],
                self.epoch,
                ",".join(self.groups) or "-",
                host,
                port,
            )
            self.ready.set()
            await self._stop.wait()
            async with asyncio.TaskGroup() as tg:
                for name in list(self.groups):
                    tg.create_task(self._stop_group(name))
        finally:
            probing.cancel()
            dns_tick.cancel()
            if trapping is not None:
                if self.traps is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.traps.flush(), 1.0)
                trapping.cancel()
            for task in self._dns_tasks.values():
                task.cancel()
            for server in self.dns_servers:
                await server.close()
            for runner in self.groups.values():
                runner.stop()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            await api.cleanup()
        log.info("rais stopped")
        return 0

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def request_reload(self) -> None:
        asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> bool:
        """Re-read the config file; start new groups, leave removed or changed ones."""
        try:
            new = load(self.config.file)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return False
        if (
            new.host != self.config.host
            or new.auth.keys != self.config.auth.keys
            or new.dns != self.config.dns
            or new.snmp != self.config.snmp
        ):
            log.error(
                "reload: [host], [auth], [dns] and [snmp] changes need a restart; "
                "groups, tests and loads reloaded only"
            )
        old = {g.name: g for g in self.config.groups}
        fresh = {g.name: g for g in new.groups}
        self.config = AgentConfig(
            self.config.file,
            self.config.host,
            self.config.auth,
            new.groups,
            tests=new.tests,
            loads=new.loads,
            dns=self.config.dns,
            snmp=self.config.snmp,
        )
        self.probes.reconfigure(new.tests, new.loads)
        for name, group in old.items():
            if fresh.get(name) != group:
                await self._stop_group(name)
        for name, group in fresh.items():
            if old.get(name) != group:
                await self._start_group(group)
        log.info("reloaded: groups %s", ",".join(self.groups) or "-")
        return True

    async def _start_group(self, group: GroupConfig) -> None:
        control = self.config.host.control
        state = Path(self.config.host.state_dir)
        runner = GroupRunner(
            group,
            control=control,
            keys=self.config.auth.keys,
            epoch=self.epoch,
            drivers=self.make_drivers(group, control),
            held=HeldFile(state / f"held-{group.name}"),
            on_event=self._event,
            rng=random.Random(self.rng.getrandbits(64)),
            load_source=self._load_source(group),
            metrics=self.metrics,
        )
        await runner.start()
        self.groups[group.name] = runner
        if group.tests:
            self._unsubscribe[group.name] = self.probes.subscribe(group.tests, runner.test_result)
        if group.dns is not None:
            name = group.name
            gd = GroupDns(
                group.dns,
                group=name,
                scale=group.load_scale,
                on_event=lambda kind, reason: self._dns_event(name, kind, reason),
                on_publish=lambda which, ok: self.metrics.dns_publish(name, which, ok),
            )
            self.dns[name] = gd
            self._dns_wake.set()
            self._dns_tasks[name] = asyncio.get_running_loop().create_task(gd.run())
        log.info("group %s: joined", group.name)

    async def _stop_group(self, name: str) -> None:
        runner = self.groups.pop(name, None)
        if runner is None:
            return
        unsubscribe = self._unsubscribe.pop(name, None)
        if unsubscribe is not None:
            unsubscribe()
        self.dns.pop(name, None)
        task = self._dns_tasks.pop(name, None)
        if task is not None:
            task.cancel()
        await runner.leave(self.leave_grace)
        runner.stop()
        log.info("group %s: left", name)

    async def _dns_forever(self) -> None:
        """The DNS thread: recompute each group's answer every 100 ms (asleep
        while no group has DNS)."""
        while True:
            if not self.dns:
                self._dns_wake.clear()
                await self._dns_wake.wait()
                continue
            for name, gd in list(self.dns.items()):
                runner = self.groups.get(name)
                if runner is not None:
                    gd.refresh(runner.core)
            await asyncio.sleep(0.1)

    def zones(self) -> list[ZoneData]:
        """The zones of every group with DNS (what the embedded server answers)."""
        return merge_zones([gd.zone_data() for gd in self.dns.values()], self.config.dns.ns)

    def _dns_event(self, group: str, kind: str, reason: str) -> None:
        now = asyncio.get_running_loop().time()
        host = to_addr(self.config.host.control[0])
        self._event(Event(now, EventKind(kind), group, host, None, reason))

    def _load_source(self, group: GroupConfig) -> Callable[[], tuple[int, int] | None] | None:
        if not group.loads:
            return None
        names, how = group.loads, group.load_combine
        return lambda: self.probes.load(names, how)

    def _trap_outcome(self, outcome: str) -> None:
        if outcome == "dropped":
            self.metrics.trap_dropped()
        else:
            self.metrics.trap_sent(outcome == "sent")

    def _event(self, ev: Event) -> None:
        self.events.append(ev)
        self.metrics.event(ev.kind.value, ev.group)
        if self.traps is not None:
            self.traps.submit(ev)
        self.event_log.add(ev)
        address = f" {fmt(ev.address)}" if ev.address is not None else ""
        reason = f": {ev.reason}" if ev.reason else ""
        log.info("%s group %s: %s%s%s", fmt(ev.host), ev.group, ev.kind.value, address, reason)

    # ------------------------------------------------------------ the API

    def metrics_text(self) -> tuple[bytes, str]:
        """The Prometheus exposition (GET /metrics): body and content type."""
        return self.metrics.render()

    def events_since(self, seq: int) -> list[dict[str, Any]]:
        return self.event_log.since(seq)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        return self.event_log.subscribe()

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.event_log.unsubscribe(q)

    def status(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        return {
            "version": __version__,
            "host": str(self.config.host.control[0]),
            "epoch": self.epoch,
            "groups": [
                group_status(
                    r.core,
                    now,
                    dict(r.counters) | _transport_counters(r),
                    scale=r.config.load_scale,
                    tests=self._tests(r.config.tests, now),
                )
                | ({"dns": self.dns[r.config.name].status()} if r.config.name in self.dns else {})
                for r in self.groups.values()
            ],
        }

    def _tests(self, names: tuple[str, ...], now: float) -> list[dict[str, Any]]:
        states = self.probes.test_states()
        out = []
        for name in names:
            st = states.get(name)
            out.append(
                {
                    "name": name,
                    "ok": None if st is None else st.ok,
                    "reason": "" if st is None else st.reason,
                    "since_s": None if st is None or st.ok is None else round(now - st.since, 3),
                }
            )
        return out

    def _pick(self, group: str | None) -> list[GroupRunner]:
        if group is None:
            return list(self.groups.values())
        return [self.groups[group]]

    def quiesce(self, group: str | None) -> list[str]:
        runners = self._pick(group)
        for r in runners:
            r.quiesce()
        return [r.config.name for r in runners]

    def unquiesce(self, group: str | None) -> list[str]:
        runners = self._pick(group)
        for r in runners:
            r.unquiesce()
        return [r.config.name for r in runners]

    def _owner(self, address: IP, group: str | None) -> GroupRunner:
        """The group that has ``address`` as a service address (KeyError: none)."""
        for r in self._pick(group):
            if r.serves_group_address(address):
                return r
        where = f"group {group}" if group else "any group of this host"
        raise LookupError(f"{address} is not a service address of {where}")

    def move(self, address: IP, host: IP, group: str | None) -> str:
        """Operator: pin ``address`` to ``host`` (LookupError / ValueError: refused)."""
        runner = self._owner(address, group)
        why = runner.move(address, host, int(time.time() * 1000))
        if why:
            raise ValueError(why)
        return runner.config.name

    def failback(self, address: IP, group: str | None) -> str:
        runner = self._owner(address, group)
        why = runner.failback(address, int(time.time() * 1000))
        if why:
            raise ValueError(why)
        return runner.config.name


def _transport_counters(runner: GroupRunner) -> dict[str, int]:
    counters = getattr(runner.drivers.transport, "counters", None)
    if not counters:
        return {}
    return {f"transport_{k}": int(v) for k, v in dict(counters).items()}


def _read_token(path: str | None) -> str | None:
    if path is None:
        return None
    return Path(path).read_text().strip() or None
