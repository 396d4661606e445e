"""rais dev: four real agents over 127.0.0.X with a simulated interface."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from rais.dev import DevCluster


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
