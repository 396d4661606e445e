"""``rais pause`` in the agent, with fake drivers: the pause record, a stop that
leaves the addresses configured, the next process taking them over; the API's
refusals."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from test_agent import TIMEOUT, Cluster, Host

from rais.admin.api import make_app
from rais.core.effects import EventKind
from rais.drivers.fake_addresses import AddressCall

ADDR = ipaddress.ip_address("198.51.100.1")


def _boot(name: str = "boot-1") -> object:
    return lambda: name


def _kinds(host: Host) -> list[str]:
    assert host.agent is not None
    return [e.kind for e in host.agent.events]


async def _started(c: Cluster, host: Host, boot: str = "boot-1") -> None:
    await c.start(host, boot=_boot(boot))
    await c.until(lambda: host.held == {str(ADDR)})


async def test_a_restart_within_the_pause_keeps_the_address(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 1, spares=0)
    (h,) = c.hosts
    await _started(c, h)
    assert h.agent is not None
    assert h.agent.pause(4.0) is None
    record = Path(h.config.host.state_dir) / "pause"
    assert record.exists()
    # the kernel lifetime now covers the pause, ending a second before it
    await c.until(lambda: h.addresses.lifetimes[("eth0", ADDR)] == 2)
    await c.stop(h)
    assert h.held == {str(ADDR)}  # stopped in place: nothing released
    assert EventKind.RELEASED not in _kinds(h)
    assert record.exists()
    h.addresses.calls.clear()
    h.announcer.calls.clear()
    await _started(c, h)
    assert not record.exists()  # consumed
    assert AddressCall("remove", "eth0", ADDR, 24) not in h.addresses.calls
    assert EventKind.RESUMED in _kinds(h)
    assert EventKind.ACQUIRED not in _kinds(h)
    await c.until(lambda: [ip for _, ip, _ in h.announcer.calls] == [ADDR, ADDR])  # GARP again
    await c.until(lambda: h.addresses.lifetimes[("eth0", ADDR)] == 1)  # refreshed as usual
    await c.stop(h)
    assert h.held == set()  # a plain stop hands over as before


async def test_a_record_of_another_boot_is_ignored(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 1, spares=0)
    (h,) = c.hosts
    await _started(c, h)
    assert h.agent is not None and h.agent.pause(3.0) is None
    await c.stop(h)
    h.addresses.calls.clear()
    await _started(c, h, boot="boot-2")
    assert AddressCall("remove", "eth0", ADDR, 24) in h.addresses.calls  # the leftover
    assert EventKind.RESUMED not in _kinds(h)
    await c.stop(h)


async def test_pause_through_the_api(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 1, spares=0)
    (h,) = c.hosts
    await _started(c, h)
    assert h.agent is not None
    async with TestClient(TestServer(make_app(h.agent.api))) as client:
        bad = await client.post("/v1/pause", json={"for": "soon"})
        assert bad.status == 400
        missing = await client.post("/v1/pause", data=b"")
        assert missing.status == 400
        short = await client.post("/v1/pause", json={"for": "1s"})
        assert short.status == 409
        assert await short.json() == {
            "error": "group www: a pause must last from 2s to 300s, not 1s",
            "group": "www",
            "hosts": [],
        }
        ok = await client.post("/v1/pause", json={"for": "30s"})
        assert ok.status == 200
        assert await ok.json() == {"groups": ["www"], "for_s": 30.0}
        status = await (await client.get("/v1/status")).json()
        me = status["groups"][0]["hosts"][0]
        assert 29.0 < me["paused_s"] <= 30.0
    await c.stop(h)
    assert h.held == {str(ADDR)}


async def test_the_group_keeps_a_paused_hosts_address_where_it_is(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, spares=1)
    for h in c.hosts:
        await c.start(h, boot=_boot())
    await c.until(c.settled)
    one, two, spare = c.hosts
    assert two.agent is not None and two.agent.pause(3.0) is None
    await c.until(lambda: EventKind.HOST_PAUSED in _kinds(one))
    await c.stop(two)
    await asyncio.sleep(TIMEOUT * 3)  # silent far past the timeout
    assert spare.held == set() and two.held == {"198.51.100.2"}
    await c.start(two, boot=_boot())
    await c.until(lambda: EventKind.HOST_RESUMED in _kinds(one))
    await asyncio.sleep(TIMEOUT * 2)
    assert spare.held == set() and two.held == {"198.51.100.2"}
    for h in (one, spare):
        assert EventKind.HOST_LOST not in _kinds(h)
    assert _kinds(spare).count(EventKind.ACQUIRED) == 0
    assert _kinds(one).count(EventKind.ACQUIRED) == 1  # its own address, at start
    for h in c.hosts:
        await c.stop(h)
