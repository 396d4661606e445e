"""No part of the agent dies silently (rais.runtime.supervise, docs/operations.md
"Supervision"): each part is made to raise inside a running cluster of agents
(real cores and timers, fake network and interfaces), and the test checks what
an operator would see: the event, ``rais status``, the group's health, the
addresses, and for a fatal failure the agent's exit status."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from test_agent import Cluster, Host, _free_port

from rais.base.ip import IP
from rais.config import GroupConfig
from rais.core.effects import EventKind
from rais.dns.config import GroupDnsConfig, ZoneFileConfig
from rais.dns.group import GroupDns
from rais.drivers.fake_addresses import FakeAddresses
from rais.drivers.fake_transport import FakeTransport
from rais.probes.fake import FakeProbeHub
from rais.probes.spec import LoadSpec, TestSpec
from rais.runtime.agent import Agent
from rais.runtime.events import AgentEventKind
from rais.runtime.group import Drivers
from rais.snmp import SnmpConfig, TrapReceiver
from rais.snmp.sender import TrapSender

WWW2 = "198.51.100.2"


def kinds(host: Host) -> list[EventKind | AgentEventKind]:
    assert host.agent is not None
    return [e.kind for e in host.agent.events]


def part(host: Host, name: str) -> dict[str, Any]:
    assert host.agent is not None
    parts = {p["name"]: p for p in host.agent.api.status()["parts"]}
    return dict(parts[name])


async def stop_all(c: Cluster) -> None:
    for h in c.hosts:
        if h.task is not None and not h.task.done():
            await c.stop(h)


class CrashingProbes(FakeProbeHub):
    """A probe hub whose task raises ``crashes`` times, then runs."""

    def __init__(self, crashes: int, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.crashes = crashes
        self.started = 0
        self.go = asyncio.Event()

    async def run(self) -> None:
        self.started += 1
        if self.started <= self.crashes:
            await self.go.wait()
            raise RuntimeError("probe loop broke")
        await super().run()


def probes_factory(
    hub: FakeProbeHub,
) -> Callable[[Mapping[str, TestSpec], Mapping[str, LoadSpec]], FakeProbeHub]:
    def make(tests: Mapping[str, TestSpec], loads: Mapping[str, LoadSpec]) -> FakeProbeHub:
        hub.reconfigure(tests, loads)
        return hub

    return make


async def test_probes_that_raise_are_restarted_and_their_group_is_not_ok_meanwhile(
    tmp_path: Path,
) -> None:
    c = Cluster(tmp_path, 3, spares=1, tests=("web",))
    web = TestSpec("web", "file", path=str(tmp_path / "up"))
    hubs = {h.n: CrashingProbes(1 if h.n == 2 else 0, {"web": web}) for h in c.hosts}
    for h in c.hosts:
        h.config = replace(h.config, tests={"web": web})
        hubs[h.n].set_test("web", True)
        await c.start(h, probes=probes_factory(hubs[h.n]))
    h2, spare = c.hosts[1], c.hosts[2]
    try:
        await c.until(lambda: h2.held == {WWW2})
        hubs[2].go.set()  # the probe loop of host 2 raises
        await c.until(lambda: AgentEventKind.PART_FAILED in kinds(h2))
        assert part(h2, "probes")["state"] == "restarting"
        assert "probe loop broke" in part(h2, "probes")["last_error"]
        # while its probes are down the group counts as not OK: the address moves
        await c.until(lambda: spare.held == {WWW2} and not h2.held)
        assert h2.agent is not None
        assert h2.agent.api.status()["groups"][0]["ok"] is False
        # restarted with backoff (0.5 s); the hub starts over, its next result counts
        await c.until(lambda: AgentEventKind.PART_RESTARTED in kinds(h2), limit=2.0)
        assert part(h2, "probes")["state"] == "running"
        assert part(h2, "probes")["restarts"] == 1
        assert hubs[2].started == 2
        hubs[2].set_test("web", True)
        await c.until(lambda: h2.held == {WWW2} and not spare.held)
        assert h2.task is not None and not h2.task.done()  # the agent never stopped
    finally:
        await stop_all(c)


class FlakyGroupDns(GroupDns):
    """The real GroupDns whose publishers' tasks raise the first time."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.failures = 0

    def runs(self) -> list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
        return [(kind, self._flaky(run)) for kind, run in super().runs()]

    def _flaky(
        self, run: Callable[[], Coroutine[Any, Any, None]]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        async def flaky() -> None:
            if self.failures == 0:
                self.failures += 1
                raise OSError("publisher broke")
            await run()

        return flaky


async def test_a_dns_publisher_that_raises_is_restarted(tmp_path: Path) -> None:
    zone = tmp_path / "zone" / "rais.test.zone"
    dns = GroupDnsConfig(
        "www.rais.test.", "rais.test.", zonefile=ZoneFileConfig(str(zone), publisher="self")
    )
    c = Cluster(tmp_path, 2, spares=0, dns=dns)
    for h in c.hosts:
        await c.start(h, group_dns=FlakyGroupDns)
    h1 = c.hosts[0]
    try:
        await c.until(lambda: AgentEventKind.PART_FAILED in kinds(h1))
        failed = part(h1, "dns zonefile www")
        assert failed["group"] == "www" and not failed["essential"]
        await c.until(lambda: part(h1, "dns zonefile www")["restarts"] == 1, limit=2.0)
        # running again: the zone file gets both addresses
        await c.until(
            lambda: zone.exists() and all(a in zone.read_text() for a in ("198.51.100.1", WWW2)),
            limit=3.0,
        )
        assert h1.agent is not None
        ev = next(e for e in h1.agent.events if e.kind == AgentEventKind.PART_FAILED)
        assert ev.group == "www" and "publisher broke" in ev.reason
    finally:
        await stop_all(c)


class FlakyTraps(TrapSender):
    runs = 0

    async def run(self) -> None:
        FlakyTraps.runs += 1
        if FlakyTraps.runs == 1:
            raise OSError("snmp socket broke")
        await super().run()


async def test_the_snmp_sender_that_raises_is_restarted(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 2, spares=1)
    h1 = c.hosts[0]
    receiver = TrapReceiver("127.0.0.1", 9, community="public")  # discard: nothing listens
    h1.config = replace(h1.config, snmp=SnmpConfig(receivers=(receiver,)))
    FlakyTraps.runs = 0
    for h in c.hosts:
        await c.start(h, trap_sender=FlakyTraps)
    try:
        await c.until(lambda: AgentEventKind.PART_FAILED in kinds(h1))
        assert part(h1, "snmp")["last_error"] == "OSError: snmp socket broke"
        await c.until(lambda: part(h1, "snmp")["state"] == "running", limit=2.0)
        assert FlakyTraps.runs == 2
        assert h1.agent is not None and h1.agent.traps is not None
        # the restarted sender sends again (to a port nobody listens on: a v2c
        # trap is fire-and-forget, so it counts as sent)
        traps = h1.agent.traps
        await c.until(lambda: sum(s.sent for s in traps.stats.values()) > 0)
    finally:
        await stop_all(c)


class BrokenRefreshes(FakeAddresses):
    """Adds of ``address`` fail once ``broken`` is set (the first add works)."""

    def __init__(self, address: IP) -> None:
        super().__init__()
        self.address = address
        self.broken = False

    async def add(
        self, interface: str, address: IP, prefixlen: int, lifetime: int | None = None
    ) -> None:
        if self.broken and address == self.address:
            raise OSError("netlink: no buffer space")
        await super().add(interface, address, prefixlen, lifetime)

    def refresh_now(self, interface: str, address: IP, prefixlen: int, lifetime: int) -> bool:
        if self.broken and address == self.address:
            return False  # the kernel refused: the refresher goes the slow way, to add
        return super().refresh_now(interface, address, prefixlen, lifetime)


async def test_a_refresher_that_cannot_refresh_ends_the_agent_with_a_graceful_leave(
    tmp_path: Path,
) -> None:
    c = Cluster(tmp_path, 3, spares=1)
    h2, spare = c.hosts[1], c.hosts[2]
    broken = BrokenRefreshes(ipaddress.ip_address(WWW2))
    h2.addresses = broken
    for h in c.hosts:
        await c.start(h)
    try:
        await c.until(lambda: h2.held == {WWW2})
        broken.broken = True
        assert h2.task is not None
        code = await asyncio.wait_for(h2.task, 3.0)
        assert code == 1
        assert AgentEventKind.AGENT_FAILED in kinds(h2)
        assert not h2.held  # released on the way out
        assert h2.agent is not None
        assert h2.agent.api.status()["parts"] == []  # every part stopped
        # a graceful leave: the spare takes over at once, not after the timeout
        await c.until(lambda: spare.held == {WWW2}, limit=0.15)
    finally:
        await stop_all(c)


class ExplodingLoads(FakeProbeHub):
    def __init__(self) -> None:
        super().__init__()
        self.explode = False

    def load(self, names: Any, how: Any) -> tuple[int, int] | None:
        if self.explode:
            raise ZeroDivisionError("load combine bug")
        return (10, 100)


async def test_a_core_driver_that_raises_ends_the_agent_and_removes_its_addresses(
    tmp_path: Path,
) -> None:
    c = Cluster(tmp_path, 3, spares=1, loads=("cpu",))
    h2, spare = c.hosts[1], c.hosts[2]
    hub = ExplodingLoads()
    for h in c.hosts:
        extra: dict[str, Any] = {"probes": probes_factory(hub)} if h is h2 else {}
        if h is not h2:
            extra["probes"] = probes_factory(FakeProbeHub())
        await c.start(h, **extra)
    try:
        await c.until(lambda: h2.held == {WWW2})
        hub.explode = True  # the next timer pass of host 2's core driver raises
        assert h2.task is not None
        assert await asyncio.wait_for(h2.task, 2.0) == 1
        assert not h2.held  # its core is broken: it removed its addresses itself
        assert h2.agent is not None
        failed = [e for e in h2.agent.events if e.kind == AgentEventKind.AGENT_FAILED]
        assert failed and "core www" in failed[0].reason and "load combine bug" in failed[0].reason
        # the others hear nothing more: the spare takes over after the timeout
        await c.until(lambda: spare.held == {WWW2}, limit=1.0)
    finally:
        await stop_all(c)


async def test_a_lost_transport_ends_the_agent(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, spares=1)
    h2, spare = c.hosts[1], c.hosts[2]
    transports: list[FakeTransport] = []
    make = c.drivers(h2)

    def drivers(group: GroupConfig, control: tuple[IP, ...]) -> Drivers:
        d = make(group, control)
        assert isinstance(d.transport, FakeTransport)
        transports.append(d.transport)
        return d

    for h in c.hosts:
        if h is h2:
            h.agent = Agent(h.config, drivers=drivers)
            h.task = asyncio.create_task(h.agent.run(install_signals=False))
            await h.agent.ready.wait()
        else:
            await c.start(h)
    try:
        await c.until(lambda: h2.held == {WWW2})
        transports[0].lose("socket closed under us")
        assert h2.task is not None
        assert await asyncio.wait_for(h2.task, 2.0) == 1
        assert not h2.held
        assert h2.agent is not None
        failed = [e for e in h2.agent.events if e.kind == AgentEventKind.AGENT_FAILED]
        assert failed and "transport www" in failed[0].reason
        await c.until(lambda: spare.held == {WWW2}, limit=1.0)
    finally:
        await stop_all(c)


class SlowPrepare(FakeAddresses):
    """``prepare`` takes a while, and records how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.inflight = 0
        self.most = 0

    async def prepare(self, interface: str) -> None:
        self.inflight += 1
        self.most = max(self.most, self.inflight)
        try:
            await asyncio.sleep(0.05)
            await super().prepare(interface)
        finally:
            self.inflight -= 1


def _toml(path: Path, names: list[str]) -> None:
    text = f'[host]\ncontrol = ["192.0.2.1"]\napi = "127.0.0.1:{_free_port()}"\n'
    text += f'state_dir = "{path.parent / "state"}"\n[auth]\nkey_file = "{path.parent / "key"}"\n'
    for i, name in enumerate(names):
        text += (
            f'[[group]]\nname = "{name}"\naddress = "239.192.0.{i + 1}:7401"\n'
            f'interface = "eth0"\npreferred = "198.51.100.{i + 1}/24"\n'
            'heartbeat = "50ms"\ntimeout = "150ms"\n'
        )
    path.write_text(text)


async def test_reloads_run_one_at_a_time(tmp_path: Path) -> None:
    from rais.config import load

    (tmp_path / "key").write_text("secret\n")
    path = tmp_path / "rais.toml"
    _toml(path, ["a"])
    c = Cluster(tmp_path, 1, spares=0)
    host = c.hosts[0]
    slow = SlowPrepare()
    host.addresses = slow
    host.config = load(str(path))
    await c.start(host)
    try:
        agent = host.agent
        assert agent is not None
        _toml(path, ["a", "b"])
        first = asyncio.create_task(agent.reload())
        await asyncio.sleep(0.01)  # the first is starting group b
        _toml(path, ["a", "b", "c"])
        second = asyncio.create_task(agent.reload())
        # SIGHUPs meanwhile: coalesced into one reload by the reloader part
        for _ in range(5):
            agent.request_reload()
        assert await first and await second
        await c.until(lambda: set(agent.groups) == {"a", "b", "c"})
        assert slow.most == 1  # never two group starts at once
        assert part(host, "reload")["state"] == "running"
    finally:
        await stop_all(c)


class BrokenRefresh(GroupDns):
    """The real GroupDns whose ``refresh`` raises while ``broken`` is set."""

    broken = False

    def refresh(self, cv: Any) -> bool:
        if BrokenRefresh.broken:
            BrokenRefresh.broken = False
            raise ArithmeticError("zone computation bug")
        return super().refresh(cv)


async def test_a_dns_thread_that_raises_leaves_the_names_unanswered_until_restarted(
    tmp_path: Path,
) -> None:
    import dns.asyncquery
    import dns.exception
    import dns.message
    import dns.rdatatype

    from rais.dns.config import DnsServerConfig

    c = Cluster(tmp_path, 2, spares=0, dns=GroupDnsConfig("www.rais.test.", "rais.test."))
    h1 = c.hosts[0]
    listen = DnsServerConfig(listen=((ipaddress.ip_address("127.0.0.1"), 0),))
    h1.config = replace(h1.config, dns=listen)
    BrokenRefresh.broken = False
    for h in c.hosts:
        await c.start(h, group_dns=BrokenRefresh)
    assert h1.agent is not None
    port = h1.agent.dns_servers[0].port

    async def answer() -> set[str] | None:
        q = dns.message.make_query("www.rais.test.", dns.rdatatype.A)
        try:
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=0.2)
        except dns.exception.Timeout:
            return None
        return {rd.address for rrset in r.answer for rd in rrset}

    both = {"198.51.100.1", WWW2}
    try:
        for _ in range(100):
            if await answer() == both:
                break
        assert await answer() == both
        BrokenRefresh.broken = True
        # The answer is recomputed when a host changes: this host's load does.
        h1.agent.groups["www"].load_sample(5, 1000)
        await c.until(lambda: part(h1, "dns")["state"] == "restarting")
        assert await answer() is None  # no answer from a thread that stopped following
        await c.until(lambda: part(h1, "dns")["state"] == "running", limit=2.0)
        await c.until(lambda: AgentEventKind.PART_RESTARTED in kinds(h1))
        assert await answer() == both
    finally:
        await stop_all(c)
