"""The agent with fake drivers: real cores, real timers and tasks, in-memory
network and interfaces. Times are real (asyncio), kept short."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from rais.admin.api import make_app, serve
from rais.base.ip import IP
from rais.config import AgentConfig, AuthConfig, GroupConfig, HostConfig
from rais.core.effects import EventKind
from rais.dns.config import DnsServerConfig
from rais.drivers.fake_addresses import FakeAddresses, FakeAnnouncer
from rais.drivers.fake_transport import FakeNetwork, FakeTransport
from rais.drivers.scripts import ScriptRunner
from rais.runtime.agent import Agent
from rais.runtime.group import Drivers

HB = 0.05
TIMEOUT = 0.15
KEY = b"k" * 32


@dataclass
class Host:
    n: int
    config: AgentConfig
    addresses: FakeAddresses = field(default_factory=FakeAddresses)
    announcer: FakeAnnouncer = field(default_factory=FakeAnnouncer)
    agent: Agent | None = None
    task: asyncio.Task[int] | None = None

    @property
    def held(self) -> set[str]:
        return {str(ip) for ip, _ in self.addresses.snapshot("eth0")}


class Cluster:
    def __init__(self, tmp: Path, n: int, spares: int = 1, **group: object) -> None:
        self.net = FakeNetwork()
        self.tmp = tmp
        self.hosts: list[Host] = []
        for i in range(1, n + 1):
            pref = ipaddress.ip_interface(f"198.51.100.{i}/24") if i <= n - spares else None
            g = GroupConfig(
                name="www",
                address=ipaddress.ip_address("239.192.0.1"),
                port=7401,
                interface="eth0",
                preferred=pref,
                heartbeat=HB,
                timeout=TIMEOUT,
                orphan_timeout=30.0,
                garp_count=2,
                garp_interval=0.01,
                **group,  # type: ignore[arg-type]
            )
            cfg = AgentConfig(
                file=str(tmp / f"h{i}.toml"),
                host=HostConfig(
                    control=(ipaddress.ip_address(f"192.0.2.{i}"),),
                    api=("127.0.0.1", 0),
                    state_dir=str(tmp / f"state{i}"),
                ),
                auth=AuthConfig(key_file="-", keys=(KEY,)),
                groups=(g,),
            )
            self.hosts.append(Host(i, cfg))

    def drivers(self, host: Host) -> Callable[[GroupConfig, tuple[IP, ...]], Drivers]:
        def make(group: GroupConfig, control: tuple[IP, ...]) -> Drivers:
            return Drivers(
                transport=self.net.transport((control[0], group.name)),
                addresses=host.addresses,
                announcer=host.announcer,
                scripts=ScriptRunner(2.0),
            )

        return make

    async def start(self, host: Host, **parts: Any) -> None:
        """Start ``host``'s agent; ``parts`` go to ``Agent`` (fakes of its parts)."""
        host.agent = Agent(
            host.config, drivers=self.drivers(host), rng=random.Random(host.n), **parts
        )
        host.task = asyncio.create_task(host.agent.run(install_signals=False))
        ready = asyncio.create_task(host.agent.ready.wait())
        await asyncio.wait([host.task, ready], return_when=asyncio.FIRST_COMPLETED)
        if host.task.done():
            host.task.result()

    async def kill(self, host: Host) -> None:
        """A crash: the group hears nothing more, addresses stay configured."""
        assert host.agent is not None and host.task is not None
        for runner in host.agent.groups.values():
            runner.stop()
        host.agent.groups.clear()
        host.agent.stop()
        await host.task

    async def stop(self, host: Host) -> None:
        assert host.agent is not None and host.task is not None
        host.agent.stop()
        await host.task

    async def until(self, cond: Callable[[], bool], limit: float = 2.0) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not cond():
            if loop.time() - start > limit:
                raise AssertionError(f"condition not met within {limit}s")
            await asyncio.sleep(0.005)
        return loop.time() - start

    def settled(self) -> bool:
        live = [h for h in self.hosts if h.task is not None and not h.task.done()]
        return all(
            (h.config.groups[0].preferred is None and not h.held)
            or (
                h.config.groups[0].preferred is not None
                and h.held == {str(h.config.groups[0].preferred.ip)}
            )
            for h in live
        )


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, 3)
    for h in c.hosts:
        await c.start(h)
    yield c
    for h in c.hosts:
        if h.task is not None and not h.task.done():
            await c.stop(h)


async def test_each_host_gets_its_preferred_address(cluster: Cluster) -> None:
    await cluster.until(cluster.settled)
    leader = cluster.hosts[0].agent
    assert leader is not None

    def states() -> dict[str, tuple[str, list[str]]]:
        return {
            a["address"]: (a["state"], a["holders"])
            for a in leader.api.status()["groups"][0]["addresses"]
        }

    # the leader sees them online once the holders' next infos arrive
    await cluster.until(lambda: states()["198.51.100.2/24"][0] == "online")
    status = leader.api.status()["groups"][0]
    assert status["leader"] == "192.0.2.1" and status["is_leader"]
    assert states()["198.51.100.1/24"] == ("online", ["192.0.2.1"])
    assert states()["198.51.100.2/24"] == ("online", ["192.0.2.2"])
    # every acquire was announced, garp_count times
    await cluster.until(lambda: len(cluster.hosts[1].announcer.calls) >= 2)


async def test_crash_fails_over_to_the_spare_within_the_timeout(cluster: Cluster) -> None:
    await cluster.until(cluster.settled)
    h2, spare = cluster.hosts[1], cluster.hosts[2]
    await cluster.kill(h2)
    took = await cluster.until(lambda: spare.held == {"198.51.100.2"})
    assert took < TIMEOUT + 2 * HB + 0.1, took
    assert h2.held == {"198.51.100.2"}  # a crash leaves it configured ...
    await cluster.start(h2)  # ... and the restart removes it, then gets it back
    await cluster.until(lambda: h2.held == {"198.51.100.2"} and not spare.held)
    assert h2.agent is not None
    assert h2.agent.groups["www"].counters["reconciled"] == 1


async def test_graceful_stop_moves_the_address_before_the_timeout(cluster: Cluster) -> None:
    await cluster.until(cluster.settled)
    h2, spare = cluster.hosts[1], cluster.hosts[2]
    loop = asyncio.get_running_loop()
    start = loop.time()
    await cluster.stop(h2)
    assert not h2.held
    await cluster.until(lambda: spare.held == {"198.51.100.2"})
    assert loop.time() - start < TIMEOUT, loop.time() - start


async def test_quiesce_keeps_the_address_and_failed_test_releases_it(cluster: Cluster) -> None:
    await cluster.until(cluster.settled)
    h1, h2, spare = cluster.hosts
    assert h2.agent is not None and h1.agent is not None
    assert h2.agent.api.quiesce(None) == ["www"]
    await asyncio.sleep(3 * HB)
    assert h2.held == {"198.51.100.2"}
    host2 = next(h for h in h1.agent.api.status()["groups"][0]["hosts"] if h["id"] == "192.0.2.2")
    assert host2["quiesced"]
    h2.agent.api.unquiesce(None)
    h2.agent.groups["www"].test_result(False, "unit test")
    await cluster.until(lambda: spare.held == {"198.51.100.2"} and not h2.held)
    kinds = [e.kind for e in h2.agent.events]
    assert EventKind.TEST_FAILED in kinds and EventKind.RELEASED in kinds


async def test_bad_datagrams_are_dropped_and_counted(cluster: Cluster) -> None:
    await cluster.until(cluster.settled)
    h1 = cluster.hosts[0]
    assert h1.agent is not None
    runner = h1.agent.groups["www"]
    before = runner.core.entry()
    for junk in (b"", b"\x00" * 3, b"RA" + bytes(range(200)), b"x" * 1400):
        runner._on_datagram(junk, 0)
    dropped = h1.agent.api.status()["groups"][0]["dropped"]
    assert sum(dropped.values()) >= 4
    assert runner.core.entry() == before
    assert cluster.settled()


async def test_acquire_script_failure_undoes_the_address(tmp_path: Path) -> None:
    script = tmp_path / "acquire.sh"
    log = tmp_path / "env.log"
    script.write_text(
        f'#!/bin/sh\necho "$RAIS_EVENT $RAIS_GROUP $RAIS_ADDRESS $RAIS_INTERFACE" >> {log}\n'
        'test "$RAIS_ADDRESS" != 198.51.100.1\n'
    )
    script.chmod(0o755)
    c = Cluster(tmp_path, 2, spares=1, acquire_script=str(script))
    for h in c.hosts:
        await c.start(h)
    try:
        h1, _spare = c.hosts
        await c.until(lambda: log.exists() and "198.51.100.1" in log.read_text())
        assert "acquire www 198.51.100.1 eth0" in log.read_text()
        agent = h1.agent
        assert agent is not None
        await c.until(lambda: EventKind.ACQUIRE_FAILED in [e.kind for e in agent.events])
        # the failed acquire is undone: never left configured on h1
        assert "198.51.100.1" not in h1.held
    finally:
        for h in c.hosts:
            await c.stop(h)


async def test_replayed_datagrams_change_nothing(cluster: Cluster) -> None:
    await cluster.until(cluster.settled)
    h1 = cluster.hosts[0]
    assert h1.agent is not None
    runner = h1.agent.groups["www"]
    sender = (cluster.hosts[1].config.host.control[0], "www")

    def sent() -> list[bytes]:
        return [s.data for s in cluster.net.sent if s.sender == sender]

    await cluster.until(lambda: len(sent()) >= 8)
    # Leave out the newest two: they may still be in flight, and a replay
    # that arrives before the original is the first copy, not a replay.
    old = sent()[:-2]

    def replays() -> int:
        drops = runner.core.drops()
        return int(drops.get("replay", 0)) + int(drops.get("duplicate", 0))

    before = replays()
    for data in old[:3] + old[len(old) // 2 : len(old) // 2 + 2]:
        runner._on_datagram(data, 0)
    assert replays() == before + 5, runner.core.drops()
    assert cluster.settled()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(path: Path, key: Path, state: Path, groups: list[str], port: int) -> None:
    text = f'[host]\ncontrol = ["192.0.2.1"]\napi = "127.0.0.1:{port}"\nstate_dir = "{state}"\n'
    text += f'[auth]\nkey_file = "{key}"\n'
    for name in groups:
        i = ["www", "db"].index(name)
        text += (
            f'[[group]]\nname = "{name}"\naddress = "239.192.0.{i + 1}:7401"\n'
            f'interface = "eth0"\npreferred = "198.51.100.{i + 1}/24"\n'
            f'heartbeat = "50ms"\ntimeout = "150ms"\n'
        )
    path.write_text(text)


async def test_reload_joins_and_leaves_groups_without_a_restart(tmp_path: Path) -> None:
    from rais.config import load

    key, path = tmp_path / "key", tmp_path / "rais.toml"
    key.write_text("secret\n")
    port = _free_port()
    _write_config(path, key, tmp_path / "state", ["www"], port)
    c = Cluster(tmp_path, 1, spares=0)
    host = c.hosts[0]
    listen = DnsServerConfig(listen=((ipaddress.ip_address("127.0.0.1"), 0),))
    host.config = replace(load(str(path)), dns=listen)
    await c.start(host)
    try:
        agent = host.agent
        assert agent is not None
        await c.until(lambda: host.held == {"198.51.100.1"})
        _write_config(path, key, tmp_path / "state", ["www", "db"], port)
        assert await agent.reload()
        assert set(agent.groups) == {"www", "db"}
        await c.until(lambda: host.held == {"198.51.100.1", "198.51.100.2"})
        path.write_text(path.read_text().replace('timeout = "150ms"', 'timeout = "10ms"', 1))
        assert not await agent.reload()  # refused: the running config stays
        assert set(agent.groups) == {"www", "db"}
        _write_config(path, key, tmp_path / "state", ["db"], port)
        assert await agent.reload()
        assert set(agent.groups) == {"db"}
        await c.until(lambda: host.held == {"198.51.100.2"})
        # [dns] (and [snmp]) need a restart: a reload keeps the running ones
        assert agent.config.dns == host.config.dns and agent.dns_servers
    finally:
        await c.stop(host)


async def test_slow_scripts_never_delay_heartbeats(tmp_path: Path) -> None:
    """An acquire script that takes 4 timeouts: nobody loses the host meanwhile."""
    script = tmp_path / "slow.sh"
    script.write_text(f"#!/bin/sh\nsleep {4 * TIMEOUT}\n")
    script.chmod(0o755)
    c = Cluster(tmp_path, 3, spares=1, acquire_script=str(script))
    for h in c.hosts:
        await c.start(h)
    try:
        await c.until(c.settled, limit=3.0)
        await c.until(
            lambda: all(
                h.agent is not None and h.agent.groups["www"].core.served.online()
                for h in c.hosts[:2]
            ),
            limit=3.0,
        )
        lost = [
            e
            for h in c.hosts
            if h.agent is not None
            for e in h.agent.events
            if e.kind == EventKind.HOST_LOST
        ]
        assert not lost, lost
    finally:
        for h in c.hosts:
            await c.stop(h)


async def test_move_and_failback_through_the_api(cluster: Cluster) -> None:
    await cluster.until(cluster.settled)
    h1, h2, spare = cluster.hosts
    assert h2.agent is not None
    app = make_app(h2.agent.api)  # asked on host 2, the leader is host 1
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/v1/move?address=198.51.100.1&host=192.0.2.3")
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {
            "group": "www",
            "address": "198.51.100.1",
            "host": "192.0.2.3",
        }
        await cluster.until(lambda: spare.held == {"198.51.100.1"} and not h1.held)
        await asyncio.sleep(4 * TIMEOUT)
        assert spare.held == {"198.51.100.1"}  # pinned: no automatic failback
        resp = await client.post("/v1/failback?address=198.51.100.1")
        assert resp.status == 200
        await cluster.until(lambda: h1.held == {"198.51.100.1"} and not spare.held)
        # refused requests say why
        resp = await client.post("/v1/move?address=198.51.100.9&host=192.0.2.3")
        assert resp.status == 404 and "not a service address" in (await resp.json())["error"]
        resp = await client.post("/v1/move?address=198.51.100.1&host=192.0.2.9")
        assert resp.status == 409 and "not a live member" in (await resp.json())["error"]
        resp = await client.post("/v1/move?address=bogus&host=192.0.2.3")
        assert resp.status == 400
        resp = await client.post("/v1/failback?address=198.51.100.1&group=nope")
        assert resp.status == 404
    kinds = [e.kind for e in h2.agent.events]
    assert EventKind.MOVE_REQUESTED in kinds and EventKind.FAILBACK_REQUESTED in kinds


async def test_releasing_one_address_keeps_the_others_of_its_subnet(tmp_path: Path) -> None:
    """Two groups on one host with addresses in one IPv4 subnet: the kernel
    removes secondaries with the primary unless promote_secondaries is set, and
    the fake does the same; the agent prepares the interface."""
    c = Cluster(tmp_path, 2, spares=1)
    h1 = c.hosts[0]
    db = GroupConfig(
        name="db",
        address=ipaddress.ip_address("239.192.0.2"),
        port=7402,
        interface="eth0",
        preferred=ipaddress.ip_interface("198.51.100.11/24"),
        heartbeat=HB,
        timeout=TIMEOUT,
    )
    h1.config = AgentConfig(h1.config.file, h1.config.host, h1.config.auth, (*h1.config.groups, db))
    for h in c.hosts:
        await c.start(h)
    try:
        await c.until(lambda: h1.held == {"198.51.100.1", "198.51.100.11"})
        assert h1.addresses.promote == {"eth0"}
        assert h1.agent is not None
        h1.agent.groups["www"].test_result(False, "unit test")  # releases .1, the primary
        await c.until(lambda: "198.51.100.1" not in h1.held)
        for _ in range(20):
            assert "198.51.100.11" in h1.held
            await asyncio.sleep(0.01)
    finally:
        for h in c.hosts:
            await c.stop(h)


async def test_fake_addresses_drop_secondaries_without_prepare() -> None:
    fake = FakeAddresses()
    for last in (1, 11, 12):
        await fake.add("eth0", ipaddress.ip_address(f"198.51.100.{last}"), 24)
    await fake.add("eth0", ipaddress.ip_address("192.0.2.1"), 24)
    await fake.remove("eth0", ipaddress.ip_address("198.51.100.11"), 24)  # a secondary
    assert fake.holds("eth0", ipaddress.ip_address("198.51.100.12"))
    await fake.remove("eth0", ipaddress.ip_address("198.51.100.1"), 24)  # the primary
    assert {str(ip) for ip, _ in fake.snapshot("eth0")} == {"192.0.2.1"}


async def test_metrics_of_a_running_agent(cluster: Cluster) -> None:
    await cluster.until(cluster.settled)
    h1 = cluster.hosts[0]
    assert h1.agent is not None
    app = make_app(h1.agent.api)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200 and resp.content_type == "text/plain"
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    leader = families["rais_leader"].samples[0]
    assert leader.labels == {"group": "www"} and leader.value == 1.0
    held = families["rais_addresses_held"].samples[0]
    assert held.value == 1.0
    events = {
        s.labels["kind"]: s.value
        for s in families["rais_events"].samples
        if s.name == "rais_events_total"
    }
    assert events["acquired"] >= 1
    sent = [s for s in families["rais_control_datagrams_sent"].samples if s.name.endswith("_total")]
    assert sent[0].value >= 2
    lateness = families["rais_heartbeat_lateness_seconds"].samples
    count = next(s.value for s in lateness if s.name.endswith("_count"))
    assert count >= 2


async def test_rais_events_and_follow(cluster: Cluster) -> None:
    await cluster.until(cluster.settled)
    h1 = cluster.hosts[0]
    assert h1.agent is not None
    runner = await serve(make_app(h1.agent.api, source=h1.agent.api), "127.0.0.1", 0)
    port = runner.addresses[0][1]
    try:
        argv = [sys.executable, "-m", "rais", "events", "--api", f"127.0.0.1:{port}"]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        lines = out.decode().splitlines()
        assert any(" www 192.0.2.1 acquired 198.51.100.1" in ln for ln in lines), lines
        follow = await asyncio.create_subprocess_exec(
            *argv, "--follow", stdout=asyncio.subprocess.PIPE
        )
        try:
            assert follow.stdout is not None
            first = await asyncio.wait_for(follow.stdout.readline(), 5)
            assert first.decode().rstrip("\n") == lines[0]  # the history first
            h1.agent.api.quiesce(None)
            seen: list[str] = []
            while not any(" www 192.0.2.1 quiesced" in ln for ln in seen):
                seen.append((await asyncio.wait_for(follow.stdout.readline(), 5)).decode())
        finally:
            follow.kill()
            await follow.wait()
    finally:
        await runner.cleanup()


async def test_placement_ranks_on_the_groups_load_scale(tmp_path: Path) -> None:
    # the leader's placement uses the same scale as the group's DNS and status
    c = Cluster(tmp_path, 1, spares=0, load_scale=100)
    host = c.hosts[0]
    await c.start(host)
    assert host.agent is not None
    core = host.agent.groups["www"].core
    assert core.config.load_scale == 100 and core.control.load_scale == 100
    await c.stop(host)


class LateCluster(Cluster):
    """Every datagram waits until its receiver wakes for its own timer, then
    arrives with its arrival time: the worst case of rais.drivers.quiet, as
    if every datagram changed nothing."""

    def drivers(self, host: Host) -> Callable[[GroupConfig, tuple[IP, ...]], Drivers]:
        make = super().drivers(host)

        def late(group: GroupConfig, control: tuple[IP, ...]) -> Drivers:
            drivers = make(group, control)
            assert isinstance(drivers.transport, FakeTransport)
            drivers.transport.hold = True
            return drivers

        return late


async def test_datagrams_read_late_keep_the_group_and_its_failover(tmp_path: Path) -> None:
    c = LateCluster(tmp_path, 3)
    for h in c.hosts:
        await c.start(h)
    try:
        await c.until(c.settled)
        h1, h2, spare = c.hosts
        # Steady for a while: nobody is taken for lost, nothing moves.
        for _ in range(10):
            await asyncio.sleep(HB)
            assert c.settled()
        late = [h.agent.groups["www"].drivers.transport.counters for h in c.hosts if h.agent]
        assert all(t["received_late"] > 10 for t in late)
        await c.kill(h2)
        took = await c.until(lambda: spare.held == {"198.51.100.2"})
        # At most one heartbeat later than with every datagram read at once.
        assert took < TIMEOUT + 3 * HB + 0.1, took
        assert h1.held == {"198.51.100.1"}
    finally:
        for h in c.hosts:
            if h.task is not None and not h.task.done():
                await c.stop(h)
