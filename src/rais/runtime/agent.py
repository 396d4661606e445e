"""The composition root: one process per host, one group runner per service group.

Config is parsed once (``rais.config.load``) and passed in. ``Agent.run`` holds
one TaskGroup, and every long-lived task runs in it under the supervision
rules of ``rais.runtime.supervise``; SIGTERM/SIGINT leave every group gracefully and
return 0; SIGHUP reloads the config (groups join and leave without a restart;
reloads run one at a time). A part the agent cannot run without (a group's
transport, the driver of its core, its address refresher) failing ends it:
graceful leave where it still can, and ``run`` returns 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
from collections.abc import Callable, Mapping

from rais import __version__
from rais.admin.agent_status import agent_status
from rais.admin.api import make_app, read_token, serve
from rais.admin.facade import AgentFacade
from rais.admin.metrics import Metrics
from rais.admin.status_view import AgentStatus
from rais.config import IP, AgentConfig, ConfigError, GroupConfig, load
from rais.config.etcd import EtcdConfig
from rais.dns.group import GroupDns
from rais.dns.server import DnsServer
from rais.drivers.base import Arbiter, Links
from rais.drivers.scripts import ScriptRunner
from rais.probes.spec import LoadSpec, TestSpec
from rais.runtime.dns_service import DnsService
from rais.runtime.events import AgentEventKind, AnyEvent, EventBus
from rais.runtime.group import Drivers, GroupRunner, to_addr
from rais.runtime.lifecycle import DriverFactory, Groups, PauseRefused, Probes, reloaded
from rais.runtime.pause import PauseRecord, boot_id
from rais.runtime.state import next_epoch
from rais.runtime.supervise import Part, Supervisor
from rais.snmp.sender import TrapSender

log = logging.getLogger("rais.agent")


def real_probes(tests: Mapping[str, TestSpec], loads: Mapping[str, LoadSpec]) -> Probes:
    from rais.probes.hub import ProbeHub

    return ProbeHub(tests, loads)


def real_links() -> Links:
    """The link watcher over rtnetlink (link events, rais.drivers.links).
    Made (and pyroute2 imported) when the agent is, not in its first run: an
    import under load can take longer than the wait for the first reading."""
    from rais.drivers.links import NetlinkLinks

    return NetlinkLinks()


def real_arbiter(config: EtcdConfig) -> Arbiter:
    """The etcd v3 client over its JSON gateway (rais.drivers.etcd)."""
    from rais.drivers.etcd import EtcdClient, ssl_context

    tls = config.ca_file is not None or config.cert_file is not None
    return EtcdClient(
        config.endpoints,
        ssl=ssl_context(config.ca_file, config.cert_file, config.key_file) if tls else None,
        user=config.user,
        password=config.password,
    )


def freeze_heap() -> None:
    """Leave the start-up heap (modules, config, drivers: never garbage) out of
    every later collection: collect once, before the groups join, then
    ``gc.freeze()``. Otherwise each full collection walks all of it, a pause
    of tens of milliseconds that shows as a late heartbeat."""
    gc.collect()
    gc.freeze()


LINKS_READY = 1.0
"""How long the agent waits for the link watcher's first reading before the
groups join (after that, a group's link counts as up until it is read)."""


def real_drivers(group: GroupConfig, control: tuple[IP, ...]) -> Drivers:
    """UDP multicast (or unicast peers), netlink and raw-socket announcements."""
    from rais.core import wire
    from rais.drivers.announce import LinkAnnouncer
    from rais.drivers.netlink import NetlinkAddresses
    from rais.drivers.transport import UdpTransport

    return Drivers(
        transport=UdpTransport(
            control,
            group.address,
            group.port,
            peers=group.peers,
            ttl=group.ttl,
            steady=wire.steady,
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
        boot: Callable[[], str] = boot_id,
        links: Links | None = None,
        arbiter: Callable[[EtcdConfig], Arbiter] = real_arbiter,
    ) -> None:
        """``drivers``, ``probes``, ``trap_sender``, ``group_dns`` and
        ``arbiter`` (the client of ``[etcd]``, made when a group with guard
        "etcd" first needs it) make the parts (tests give fakes); ``boot()``
        is this boot's id (the pause record of an in-place restart is valid
        only within one boot). ``links`` watches the service interfaces'
        carrier (``track_link``); None: the netlink watcher with the real
        drivers, and no link tracking with any other (fake interfaces have
        no carrier to watch)."""
        self.config = config
        if links is None and drivers is real_drivers:
            links = real_links()
        self.links = links
        self.make_traps = trap_sender
        self.make_arbiter = arbiter
        self.arbiter: Arbiter | None = None
        """The one client of ``[etcd]`` every group with guard "etcd" shares."""
        self.groups: dict[str, GroupRunner] = {}
        self.probes = probes(config.tests, config.loads)
        self.metrics = Metrics(self.status)
        self.bus = EventBus(to_addr(config.host.control[0]), count=self.metrics.event)
        self.dns = DnsService(
            self.groups,
            ns=config.dns.ns,
            emit=self.bus.emit,
            published=self.metrics.dns_publish,
            make_group_dns=group_dns,
        )
        self.lifecycle = Groups(
            self.groups,
            host=config.host,
            keys=config.auth.keys,
            make_drivers=drivers,
            probes=self.probes,
            publish=self.bus.publish,
            metrics=self.metrics,
            dns=self.dns,
            supervisor=lambda: self.supervisor,
            rng=rng or random.Random(),
            leave_grace=leave_grace,
            links=links,
            etcd=lambda: self.config.etcd,
            arbiter=self._arbiter,
        )
        self.api = AgentFacade(
            self.groups, status=self.status, bus=self.bus, metrics=self.metrics, pause=self.pause
        )
        self.pause_record = PauseRecord(config.host.state_dir, boot())
        self.paused_until: float | None = None
        """While this agent pauses (``rais pause``): until when (loop time)."""
        self.traps: TrapSender | None = None
        self.epoch = 0
        self.ready = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._reload_wake = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self.supervisor: Supervisor | None = None
        self.exit_code = 0

    @property
    def events(self) -> list[AnyEvent]:
        """The recent events, oldest first."""
        return self.bus.events

    @property
    def dns_servers(self) -> list[DnsServer]:
        return self.dns.servers

    # ------------------------------------------------------------- running

    async def run(self, *, install_signals: bool = True) -> int:
        """Run until stopped: 0 after a stop, 1 after a fatal failure."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.epoch = next_epoch(self.config.host.state_dir)
        resume_until = self.pause_record.take(loop.time())
        host, port = self.config.host.api
        token = read_token(self.config.host.api_token_file)
        api = await serve(make_app(self.api, token, source=self.api), host, port)
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
                self.dns.thread = sup.keep("dns", self.dns.run)
                sup.keep("reload", self._reload_forever)
                if self.links is not None:
                    # Restarted with backoff when it fails; meanwhile every
                    # group keeps its link's last known state.
                    sup.keep("links", self.links.run)
                    if not await self.links.wait_ready(LINKS_READY):
                        log.error("links: no link state after %gs; counted up", LINKS_READY)
                if self.config.snmp.receivers:
                    started = loop.time()
                    self.traps = self.bus.traps = self.make_traps(
                        self.config.snmp,
                        uptime=lambda: loop.time() - started,
                        engine_boots=self.epoch & 0x7FFFFFFF,
                        on_outcome=self.metrics.trap_outcome,
                    )
                    sup.keep("snmp", self.traps.run)
                freeze_heap()
                await self.lifecycle.join_all(self.config.groups, self.epoch, resume_until)
                # After the groups: a zone the server does not know yet is
                # REFUSED, where a warming group's names get no answer at all.
                await self.dns.serve(self.config.dns.listen)
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
                # Silence while the groups leave: their zones go first, and a
                # zone the server no longer knows would be REFUSED (cached by
                # resolvers) where no answer sends them to the other servers.
                await self.dns.close()
                async with self._reload_lock:  # not while a reload starts or stops groups
                    if self._in_pause(loop.time()):
                        await self.lifecycle.stop_all_in_place()
                    else:
                        self.pause_record.clear()
                        await self.lifecycle.leave_all()
                if self.traps is not None and "snmp" in sup.parts:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.traps.flush(), 1.0)
                sup.stop_all()
        finally:
            await self.dns.close()
            for runner in self.groups.values():
                runner.stop()
            if self.arbiter is not None:
                await self.arbiter.close()
                self.arbiter = None
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

    def pause(self, duration: float) -> PauseRefused | None:
        """Operator (``rais pause --for``): this agent restarts in place within
        ``duration`` seconds; a stop within the window then leaves every address
        configured for the next process (rais.runtime.pause). Returns why it was
        refused, or None."""
        if self._stop is None or self._stop.is_set():
            return PauseRefused("the agent is stopping", "", ())
        refused = self.lifecycle.pause(duration)
        if refused is None:
            self.paused_until = asyncio.get_running_loop().time() + duration
            self.pause_record.write(self.paused_until)
        return refused

    def _in_pause(self, now: float) -> bool:
        """Stopping in place: paused, the pause not over, no failure."""
        return self.paused_until is not None and now < self.paused_until and not self.exit_code

    def _arbiter(self) -> Arbiter:
        if self.arbiter is None:
            if self.config.etcd is None:
                raise RuntimeError("no [etcd] is configured")
            self.arbiter = self.make_arbiter(self.config.etcd)
        return self.arbiter

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
        self.bus.emit(AgentEventKind.AGENT_FAILED, "", f"{reason}; leaving and exiting")
        self.stop()

    def _part_event(self, kind: str, part: Part, reason: str) -> None:
        self.bus.emit(AgentEventKind(kind), part.group, f"{part.name}: {reason}")

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
        old, self.config = self.config, reloaded(self.config, new)
        self.probes.reconfigure(new.tests, new.loads)
        await self.lifecycle.change(old.groups, new.groups, self.epoch)
        log.info("reloaded: groups %s", ",".join(self.groups) or "-")
        return True

    def status(self) -> AgentStatus:
        """The status ``GET /v1/status`` renders (``rais.admin.status_view.status_json``)."""
        now = asyncio.get_running_loop().time()
        return agent_status(
            now,
            host=str(self.config.host.control[0]),
            epoch=self.epoch,
            parts=self.supervisor.status() if self.supervisor is not None else [],
            runners=self.groups.values(),
            dns=self.dns.groups,
            test_states=self.probes.test_states,
        )
