"""The guard in the agent (issue 13) with fake drivers and real cores: the
kernel lifetimes of held addresses follow the lease, a holder cut off from
its leader lets its addresses run out by the lease (no refresh with under a
second left, no refresh failure), a refresh that waited never sets more than
the lease has left, the majority takes over only once the lease and the
kernel's slack are over; and guard "etcd" with the in-memory etcd: the leader
holds the key, holds on through an etcd outage, resigns when it leaves."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from etcdlab import etcd_cluster
from test_agent import HB, Cluster, Host

from rais.base.ip import IP
from rais.config.etcd import EtcdConfig
from rais.core.config import KERNEL_SLACK
from rais.drivers.etcd import EtcdClient
from rais.drivers.fake_addresses import FakeAddresses
from rais.drivers.fake_etcd import FakeEtcd

WWW2 = ipaddress.ip_address("198.51.100.2")
LEASE = 2.5
IDS = tuple(ipaddress.ip_address(f"192.0.2.{n}") for n in (1, 2, 3))


@dataclass(frozen=True)
class Add:
    at: float
    address: IP
    lifetime: int | None


class Recording(FakeAddresses):
    """Records every add with its loop time; ``gate`` (if set) holds the adds
    after recording them, as a netlink call that hangs after the kernel took it."""

    def __init__(self) -> None:
        super().__init__()
        self.adds: list[Add] = []
        self.gate: asyncio.Event | None = None

    async def add(
        self, interface: str, address: IP, prefixlen: int, lifetime: int | None = None
    ) -> None:
        self.adds.append(Add(asyncio.get_running_loop().time(), address, lifetime))
        if self.gate is not None:
            await self.gate.wait()
        await super().add(interface, address, prefixlen, lifetime)

    def refresh_now(self, interface: str, address: IP, prefixlen: int, lifetime: int) -> bool:
        """A refresh done at once is recorded as an add; with ``gate`` set it is
        not possible (netlink hangs): the refresher queues an ``add``."""
        if self.gate is not None:
            return False
        self.adds.append(Add(asyncio.get_running_loop().time(), address, lifetime))
        return super().refresh_now(interface, address, prefixlen, lifetime)

    def now(self) -> set[IP]:
        """The addresses configured now."""
        return {ip for ip, _ in self.snapshot("eth0")}


def majority(tmp_path: Path) -> Cluster:
    c = Cluster(tmp_path, 3, guard="majority", voters=IDS, lease=LEASE)
    for h in c.hosts:
        h.addresses = Recording()
    return c


def rec(h: Host) -> Recording:
    assert isinstance(h.addresses, Recording)
    return h.addresses


def guard(h: Host) -> dict[str, Any]:
    assert h.agent is not None
    out: dict[str, Any] = h.agent.api.status()["groups"][0]["guard"]
    return out


def kinds(h: Host) -> list[str]:
    assert h.agent is not None
    return [e.kind.value for e in h.agent.events]


def cut(c: Cluster, h: Host) -> float:
    c.net.partition([(h.config.host.control[0], "www")])
    return asyncio.get_running_loop().time()


async def stop_all(c: Cluster) -> None:
    for h in c.hosts:
        if h.task is not None and not h.task.done():
            await c.stop(h)


def refresher_ok(h: Host) -> bool:
    assert h.agent is not None and h.agent.supervisor is not None and h.task is not None
    part = h.agent.supervisor.parts["refresher www"]
    return part.state == "running" and not h.task.done() and h.agent.exit_code == 0


async def test_lifetimes_follow_the_lease_and_a_cut_off_holder_lets_it_run_out(
    tmp_path: Path,
) -> None:
    c = majority(tmp_path)
    h1, h2, spare = c.hosts
    loop = asyncio.get_running_loop()
    try:
        for h in c.hosts:
            await c.start(h)
        await c.until(c.settled, limit=8.0)
        await asyncio.sleep(1.2)  # a few refreshes (every half lifetime)
        mine = [a for a in rec(h2).adds if a.address == WWW2]
        assert len(mine) >= 3
        # floor of the lease left: 2 s of a 2.5 s lease renewed every heartbeat
        assert {a.lifetime for a in mine} == {2}, mine
        g = guard(h1)
        assert g["mode"] == "majority" and g["quorate"] is True
        assert (g["votes"], g["needed"], g["voters"]) == (3, 2, [str(i) for i in IDS])
        assert 1.5 < guard(h2)["lease_left_s"] <= LEASE
        assert h2.agent is not None
        refused = h2.agent.pause(5.0)
        assert refused is not None and "guard" in refused.reason

        t_cut = cut(c, h2)
        await c.until(lambda: not h2.held, limit=LEASE + 0.5)
        gone = loop.time()
        assert t_cut + LEASE - 0.6 <= gone <= t_cut + LEASE + 0.2, gone - t_cut
        after = [a for a in rec(h2).adds if a.at >= t_cut and a.address == WWW2]
        assert after, "refreshed while the lease lasted"
        for a in after:
            assert a.lifetime is not None and a.at + a.lifetime <= t_cut + LEASE, (a, t_cut)
        assert max(a.at for a in after) <= t_cut + LEASE - 1.0 + 0.05  # none with < 1 s left
        assert refresher_ok(h2)  # running out of lease is no refresh failure
        assert "quorum-lost" in kinds(h2)
        assert h2.agent is not None  # the event flows like the others: API, metrics
        (lost,) = [e for e in h2.agent.api.events_since(0) if e["kind"] == "quorum-lost"]
        assert lost["group"] == "www" and lost["host"] == "192.0.2.2"
        metrics = h2.agent.api.metrics_text()[0].decode()
        assert 'rais_events_total{group="www",kind="quorum-lost"} 1.0' in metrics

        # The majority side gives the address away only once every lease on it
        # and the kernel's slack have run out.
        await c.until(lambda: WWW2 in rec(h1).now() | rec(spare).now(), limit=7.0)
        taken = loop.time()
        # counted from the last info of h2 heard, at most a heartbeat before the cut
        assert taken - t_cut >= LEASE + KERNEL_SLACK - HB - 0.02, taken - t_cut
        kernel_end = max(a.at + (a.lifetime or 0) for a in after)
        assert taken >= kernel_end + KERNEL_SLACK - 0.01, (taken, kernel_end)
        assert not h2.held
    finally:
        await stop_all(c)


async def test_a_refresh_that_waited_sets_no_more_than_the_lease_left(tmp_path: Path) -> None:
    c = majority(tmp_path)
    h2 = c.hosts[1]
    loop = asyncio.get_running_loop()
    try:
        for h in c.hosts:
            await c.start(h)
        await c.until(c.settled, limit=8.0)
        await asyncio.sleep(0.3)
        gate = rec(h2).gate = asyncio.Event()  # the next add hangs: the queue stalls
        t_cut = cut(c, h2)
        await asyncio.sleep(0.6)
        assert refresher_ok(h2)
        gate.set()
        await c.until(lambda: not h2.held, limit=LEASE)
        after = [a for a in rec(h2).adds if a.at >= t_cut and a.address == WWW2]
        late = [a for a in after if a.at >= t_cut + 0.6]
        assert late, after  # the refreshes queued behind the stalled one ran ...
        for a in after:  # ... with what the lease had left when they ran
            assert a.lifetime is not None and a.at + a.lifetime <= t_cut + LEASE, (a, t_cut)
        assert all(a.lifetime == 1 for a in late), late
        assert refresher_ok(h2)
        assert loop.time() - t_cut <= LEASE + 0.2
    finally:
        await stop_all(c)


async def test_etcd_the_leader_holds_the_key_holds_on_without_etcd_and_resigns(
    tmp_path: Path,
) -> None:
    etcd = FakeEtcd()
    c = Cluster(tmp_path, 3, guard="etcd", lease=2.0)
    config = EtcdConfig(endpoints=("http://192.0.2.99:2379",), ttl=2.0)
    for h in c.hosts:
        h.config = replace(h.config, etcd=config)
    h1, h2, _ = c.hosts
    loop = asyncio.get_running_loop()

    def holder() -> bytes | None:
        etcd.collect()
        kv = etcd.keys.get("/rais/www")
        return None if kv is None else kv.value

    try:
        for h in c.hosts:
            await c.start(h, arbiter=lambda _: etcd.client())
        await c.until(c.settled, limit=8.0)
        assert holder() == b"192.0.2.1"
        token = etcd.keys["/rais/www"].create_revision
        g = guard(h1)
        assert (g["mode"], g["key_held"], g["token"]) == ("etcd", True, token)
        assert g["arbiter"] == "reachable"
        assert guard(h2)["token"] == token and guard(h2)["quorate"] is True
        assert "arbiter-regained" in kinds(h1)

        etcd.down = True  # every client: unreachable; "hold" keeps everything where it is
        down = loop.time()
        await c.until(lambda: guard(h1)["arbiter"] == "unreachable", limit=1.0)
        assert guard(h1)["key_held"] and not guard(h1)["holding"]  # the key may still be ours
        await c.until(lambda: not guard(h1)["key_held"], limit=3.0)
        assert loop.time() - down <= 2.0 + 0.1  # the lease of the key, at most
        await c.until(lambda: guard(h1)["holding"], limit=0.6)
        assert "arbiter-lost" in kinds(h1)
        await asyncio.sleep(2.2)  # longer than a lease: still everything where it was
        assert c.settled() and guard(h1)["holding"] and guard(h1)["quorate"]
        assert guard(h2)["lease_left_s"] > 1.0

        etcd.down = False
        await c.until(lambda: guard(h1)["key_held"], limit=1.5)
        assert guard(h1)["token"] > token and not guard(h1)["holding"]
        assert c.settled()

        await c.stop(h1)  # leaves: resigns, and the next leader takes the key
        await c.until(lambda: holder() == b"192.0.2.2", limit=2.0)
        await c.until(lambda: guard(h2)["key_held"], limit=1.0)
    finally:
        await stop_all(c)


async def test_etcd_real_the_leader_key_in_a_real_etcd(tmp_path: Path) -> None:
    """The same through the real client (rais.drivers.etcd, made by the agent
    from ``[etcd]``) and a real etcd on loopback: the leader holds the key, its
    value is its host id, and a graceful stop hands it to the next leader."""
    async with etcd_cluster(1) as lab:
        c = Cluster(tmp_path, 3, guard="etcd", lease=2.0)
        config = EtcdConfig(endpoints=tuple(lab.urls), prefix="/test/", ttl=2.0)
        for h in c.hosts:
            h.config = replace(h.config, etcd=config)
        h1, h2, _ = c.hosts
        probe = EtcdClient(lab.urls)
        try:
            for h in c.hosts:
                await c.start(h)
            await c.until(c.settled, limit=8.0)
            held = await probe.holder("/test/www")
            assert held is not None and held.value == b"192.0.2.1"
            assert guard(h1)["key_held"] and guard(h1)["token"] == held.revision
            await c.stop(h1)
            await c.until(lambda: guard(h2)["key_held"], limit=3.0)
            after = await probe.holder("/test/www")
            assert after is not None and after.value == b"192.0.2.2"
            assert after.revision > held.revision
        finally:
            await stop_all(c)
            await probe.close()
