"""An address set on real hosts: three namespaces running ``rais agent``; h2
prefers an IPv4 and an IPv6 address as one set. Killed, both move to one other
host together; back, both fail back together; ``ip monitor address`` in every
host never shows an address of the set on two hosts at once."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import time
from pathlib import Path

import pytest
from netlab import Lab, LabFactory, lab_fixture, wait_for  # noqa: F401
from test_e2e_agent import VIP1, Rais, hosts
from traffic import AddrMonitor

pytestmark = pytest.mark.e2e

V4, V6 = "198.51.100.2", "2001:db8::102"
SET = (V4, V6)


def _where(net: Lab) -> list[list[str]]:
    """For each address of the set, the hosts that have it on eth0."""
    out = []
    for text in SET:
        ip = ipaddress.ip_address(text)
        out.append([h for h in hosts(net) if ip in net.addresses(h)])
    return out


def _set_status(rais: Rais, host: str) -> dict[str, object]:
    status = json.loads(rais.cli(host, "status", "--json"))
    group = status["groups"][0]
    sets = group.get("sets", [])
    return sets[0] if sets else {}


async def test_an_address_set_moves_as_one_unit_and_fails_back(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    net = make_lab(3, client=True)
    net.ip("c", "route", "add", "198.51.100.0/24", "dev", "eth0")
    rais = Rais(net, tmp_path, prefs={"h1": f"{VIP1}/24", "h2": "SET"})
    conf = tmp_path / "h2.toml"
    conf.write_text(
        conf.read_text().replace('preferred = "SET"', f'preferred = ["{V4}/24", "{V6}/64"]')
    )
    monitor = AddrMonitor(net, hosts(net), stamped=True)
    try:
        for host in hosts(net):
            rais.start(host)
        ok, _ = await wait_for(lambda: _where(net) == [["h2"], ["h2"]], 10.0)
        assert ok, (_where(net), rais.log("h2"))
        up = _set_status(rais, "h2")
        assert up["up"] == [f"{V4}/24", f"{V6}/64"] and up["waiting"] == [], up
        monitor.start()
        await asyncio.sleep(0.3)
        killed = time.monotonic()
        net.ip("h2", "link", "set", "eth0", "down")
        rais.signal("h2", signal.SIGKILL)
        moved, took = await wait_for(
            lambda: all("h3" in w for w in _where(net)) and all("h1" not in w for w in _where(net)),
            3.0,
        )
        assert moved, (_where(net), rais.log("h3"))
        print(f"set failover: both addresses on h3 {took:.3f}s after the kill")
        # The dead agent's copies expire with their kernel lifetime.
        rais.wait("h2")
        gone, _ = await wait_for(lambda: _where(net) == [["h3"], ["h3"]], 5.0)
        assert gone, _where(net)
        net.ip("h2", "link", "set", "eth0", "up")
        restarted = time.monotonic()
        rais.start("h2")
        back, _ = await wait_for(lambda: _where(net) == [["h2"], ["h2"]], 10.0, interval=0.005)
        assert back, (_where(net), rais.log("h2"))
        await asyncio.sleep(0.3)
        assert _where(net) == [["h2"], ["h2"]]
        assert net.reaches("c", V4) and net.reaches("c", V6)
    finally:
        monitor.stop()
        rais.stop_all()
    # Together: on h3, the two addresses came within a few ms of each other
    # (one action), and left the same way at failback.
    adds = {c.address: c.time for c in monitor.changes if c.host == "h3" and c.added}
    dels = {c.address: c.time for c in monitor.changes if c.host == "h3" and not c.added}
    assert set(adds) >= set(SET) and set(dels) >= set(SET), monitor.changes
    print(
        f"h3 added them {abs(adds[V4] - adds[V6]) * 1000:.1f} ms apart, "
        f"removed them {abs(dels[V4] - dels[V6]) * 1000:.1f} ms apart"
    )
    assert abs(adds[V4] - adds[V6]) < 0.1 and abs(dels[V4] - dels[V6]) < 0.1
    assert adds[V4] > killed
    for address in SET:
        # Every change of every kernel after h2 came back: never two holders.
        assert monitor.overlaps(address, since=restarted) == [], address
