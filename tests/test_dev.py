"""rais dev: four real agents over 127.0.0.X with a simulated interface."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message

from rais.cli.dev import DevCluster
from rais.dns.server import DnsServer


async def _until(cond: object, limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():  # type: ignore[operator]
        assert loop.time() < end, "condition not met"
        await asyncio.sleep(0.02)


async def test_dev_cluster_fails_over_and_back(tmp_path: Path) -> None:
    port = random.randrange(20000, 30000)
    cluster = DevCluster(4, 1, port, port + 100, tmp_path, 0.05)
    for h in cluster.hosts:
        await cluster.start(h)
    try:
        await _until(lambda: "198.51.100.2@host2" in cluster.summary())
        await cluster.kill(cluster.hosts[1])
        await _until(lambda: "198.51.100.2@host4" in cluster.summary())
        await _until(lambda: "198.51.100.2@host2" not in cluster.summary())  # expired
        await cluster.start(cluster.hosts[1])
        await _until(lambda: "198.51.100.2@host2" in cluster.summary())
        await _until(lambda: "@host4" not in cluster.summary())
        assert "group www" in cluster.status(cluster.hosts[0])
    finally:
        await asyncio.gather(*(cluster.stop(h) for h in cluster.hosts))


async def test_dev_dns_follows_kills_and_load(tmp_path: Path) -> None:
    port = random.randrange(30000, 40000)
    cluster = DevCluster(4, 1, port, port + 100, tmp_path, 0.05)
    for h in cluster.hosts:
        await cluster.start(h)
    server = DnsServer(("127.0.0.1", 0), cluster.zones)
    await server.start()

    async def answer() -> set[str] | None:
        q = dns.message.make_query("www.rais.test", "A")
        try:
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port, timeout=0.2)
        except dns.exception.Timeout:
            return None  # no answer while the host asked is warming up
        return {rd.address for rrset in r.answer for rd in rrset}

    async def until(want: set[str]) -> None:
        for _ in range(250):
            if await answer() == want:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{await answer()} != {want}")

    all3 = {"198.51.100.1", "198.51.100.2", "198.51.100.3"}
    try:
        await until(all3)
        assert "dns 198.51.100.1 198.51.100.2 198.51.100.3" in cluster.summary()
        await cluster.kill(cluster.hosts[1])
        await until(all3 - {"198.51.100.2"})
        await cluster.start(cluster.hosts[1])
        await until(all3)
        h3 = cluster.hosts[2].agent
        assert h3 is not None
        h3.groups["www"].load_sample(900, 1000)  # what "load 3 900" does
        await until(all3 - {"198.51.100.3"})
        h3.groups["www"].load_sample(500, 1000)
        await until(all3)
    finally:
        await server.close()
        await asyncio.gather(*(cluster.stop(h) for h in cluster.hosts))
