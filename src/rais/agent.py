"""The composition root: one process per host, one group runner per service group.

Config is parsed once (``rais.config.load``) and passed in. ``Agent.run`` holds
one TaskGroup, and every long-lived task runs in it under the supervision
rules of ``rais.supervise``; SIGTERM/SIGINT leave every group gracefully and
return 0; SIGHUP reloads the config (groups join and leave without a restart;
reloads run one at a time). A part the agent cannot run without (a group's
transport, the driver of its core, its address refresher) failing ends it:
graceful leave where it still can, and ``run`` returns 1.
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
from rais.supervise import Part, Supervisor

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
        trap_sender: Callable[..., TrapSender] = TrapSender,
        group_dns: Callable[..., GroupDns] = GroupDns,
    ) -> None:
        """``drivers``, ``probes``, ``trap_sender`` and ``group_dns`` make the
        parts (tests give fakes)."""
        self.config = config
        self.make_traps = trap_sender
        self.make_group_dns = group_dns
        self.make_drivers = drivers
        self.rng = rng or random.Random()
        self.leave_grace = leave_grace
        self.groups: dict[str, GroupRunner] = {}
        self.probes = probes(config.tests, config.loads)
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self.dns: dict[str, GroupDns] = {}
        self._dns_wake = asyncio.Event()
        self.dns_servers: list[DnsServer] = []
        self.traps: TrapSender | None = None
        self.events: collections.deque[Event] = collections.deque(maxlen=1000)
        self.event_log = EventLog()
        self.metrics = Metrics(self.status)
        self.epoch = 0
        self.ready = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._reload_wake = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self.supervisor: Supervisor | None = None
        self.exit_code = 0

    # ------------------------------------------------------------- running

    async def run(self, *, install_signals: bool = True) -> int:
        """Run until stopped: 0 after a stop, 1 after a fatal failure."""
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
        try:
            async with asyncio.TaskGroup() as tg:
                sup = self.supervisor = Supervisor(
                    tg, on_event=self._part_event, on_fatal=self._fatal, clock=loop.time
                )
                sup.keep("probes", self.probes.run, on_down=self._probes_down)
                sup.keep("dns", self._dns_forever)
                sup.keep("reload", self._reload_forever)
                if self.config.snmp.receivers:
                    started = loop.time()
                    self.traps = self.make_traps(
                        self.config.snmp,
                        uptime=lambda: loop.time() - started,
                        engine_boots=self.epoch & 0x7FFFFFFF,
                        on_outcome=self._trap_outcome,
                    )
                    sup.keep("snmp", self.traps.run)
                await asyncio.gather(*(self._start_group(g) for g in self.config.groups))
                # After the groups: a zone the server does not know yet is
                # REFUSED, where a warming group's names get no answer at all.
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
                async with self._reload_lock:  # not while a reload starts or stops groups
                    await asyncio.gather(*(self._stop_group(name) for name in list(self.groups)))
                if self.traps is not None and "snmp" in sup.parts:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.traps.flush(), 1.0)
                sup.stop_all()
        finally:
            for server in self.dns_servers:
                await server.close()
            for runner in self.groups.values():
                runner.stop()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            await api.cleanup()
        if self.exit_code:
            log.critical("rais stopped after a failure: %s", self.supervisor.failed)
        else:
            log.info("rais stopped")
        return self.exit_code

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def request_reload(self) -> None:
        """SIGHUP: reload soon (requests made while one runs give one more reload)."""
        self._reload_wake.set()

    async def _reload_forever(self) -> None:
        while True:
            await self._reload_wake.wait()
            self._reload_wake.clear()
            await self.reload()

    def _fatal(self, reason: str) -> None:
        self.exit_code = 1
        self._agent_event(EventKind.AGENT_FAILED, "", f"{reason}; leaving and exiting")
        self.stop()

    def _part_event(self, kind: str, part: Part, reason: str) -> None:
        self._agent_event(EventKind(kind), part.group, f"{part.name}: {reason}")

    def _agent_event(self, kind: EventKind, group: str, reason: str) -> None:
        now = asyncio.get_running_loop().time()
        self._event(Event(now, kind, group, to_addr(self.config.host.control[0]), None, reason))

    def _probes_down(self, reason: str) -> None:
        self.probes.stopped(f"probes stopped: {reason}")

    async def reload(self) -> bool:
        """Re-read the config file; start new groups, leave removed or changed ones.
        One reload at a time: a second waits for the first."""
        async with self._reload_lock:
            if self._stop is not None and self._stop.is_set():
                return False
            return await self._reload()

    async def _reload(self) -> bool:
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
            on_fatal=self._group_fatal,
        )
        await runner.start()
        self.groups[group.name] = runner
        sup = self._sup()
        sup.need(f"refresher {group.name}", runner.refresh_forever, group=group.name)
        if group.tests:
            self._unsubscribe[group.name] = self.probes.subscribe(group.tests, runner.test_result)
        if group.dns is not None:
            name = group.name
            gd = self.make_group_dns(
                group.dns,
                group=name,
                scale=group.load_scale,
                on_event=lambda kind, reason: self._dns_event(name, kind, reason),
                on_publish=lambda which, ok: self.metrics.dns_publish(name, which, ok),
            )
            self.dns[name] = gd
            self._dns_wake.set()
            for kind, run in gd.runs():
                sup.keep(f"dns {kind} {name}", run, group=name)
        log.info("group %s: joined", group.name)

    def _sup(self) -> Supervisor:
        if self.supervisor is None:
            raise RuntimeError("the agent is not running")
        return self.supervisor

    def _group_fatal(self, part: str, reason: str) -> None:
        self._sup().fatal(part, reason)

    async def _stop_group(self, name: str) -> None:
        runner = self.groups.pop(name, None)
        if runner is None:
            return
        unsubscribe = self._unsubscribe.pop(name, None)
        if unsubscribe is not None:
            unsubscribe()
        sup = self._sup()
        for part in [p for p in sup.parts.values() if p.group == name]:
            sup.stop(part.name)
        self.dns.pop(name, None)
        await runner.leave(self.leave_grace)
        runner.stop()
        log.info("group %s: left", name)

    async def _dns_forever(self) -> None:
        """The DNS thread: recompute each group's answer every 100 ms (asleep
        while no group has DNS). While it is down (restarting after a failure)
        the embedded server leaves the groups' names unanswered, as in warm-up."""
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
        thread = self.supervisor.parts.get("dns") if self.supervisor is not None else None
        stale = thread is None or thread.state != "running"  # the DNS thread is down
        zones = [gd.zone_data(stale=stale) for gd in self.dns.values()]
        return merge_zones(zones, self.config.dns.ns)

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
        where = f"group {ev.group}" if ev.group else "agent"
        log.info("%s %s: %s%s%s", fmt(ev.host), where, ev.kind.value, address, reason)

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
            "parts": self.supervisor.status() if self.supervisor is not None else [],
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
    counters = runner.drivers.transport.counters
    return {f"transport_{k}": int(v) for k, v in counters.items()}


def _read_token(path: str | None) -> str | None:
    if path is None:
        return None
    return Path(path).read_text().strip() or None
