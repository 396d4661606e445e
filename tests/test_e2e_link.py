"""Link tracking on real hosts (issue 13): the netlink link watcher in a
namespace, and three ``rais agent`` processes on a bridge where the switch
side of a holder's veth goes down (the host sees NO-CARRIER): its address is
on another host within the timeout plus a heartbeat (plus a margin), never
on two hosts, and back once the carrier has returned and the hold-down has
passed; with ``track_link = false`` nothing moves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from netlab import Lab, LabFactory, lab_fixture, wait_for  # noqa: F401
from test_e2e_agent import VIP1, VIP2, Rais, holders, hosts, settle
from traffic import AddrMonitor

from rais.drivers.links import NetlinkLinks

pytestmark = pytest.mark.e2e

HEARTBEAT, TIMEOUT, HOLD = 0.1, 0.3, 1.0
MARGIN = 0.1
"""Beyond timeout + heartbeat: the leader's acquire and netlink (a few ms),
``ip monitor``'s reading, the scheduling of five processes on two cores."""


async def test_the_watcher_follows_carrier_admin_state_and_deletion(make_lab: LabFactory) -> None:
    net = make_lab(1)
    links = NetlinkLinks(netns=net.ns("h1"))
    seen: list[tuple[float, bool, str]] = []
    task = asyncio.create_task(links.run())
    try:
        assert await links.wait_ready(5.0)
        links.subscribe("eth0", lambda up, why: seen.append((time.monotonic(), up, why)))
        links.subscribe("tst7", lambda up, why: seen.append((time.monotonic(), up, why)))
        assert seen[-2:] == [
            (seen[-2][0], True, "eth0: up"),
            (seen[-1][0], False, "tst7: not found"),
        ]

        async def next_report(want: tuple[bool, str]) -> float:
            ok, took = await wait_for(lambda: seen[-1][1:] == want, 2.0, interval=0.005)
            assert ok, seen[-3:]
            return took

        t0 = time.monotonic()
        net.ip("br", "link", "set", "h1", "down")  # the switch side: h1 sees NO-CARRIER
        await next_report((False, "eth0: no carrier"))
        print(f"carrier loss reported {1000 * (seen[-1][0] - t0):.1f} ms after ip link set")
        net.ip("br", "link", "set", "h1", "up")
        await next_report((True, "eth0: up"))
        net.ip("h1", "link", "set", "eth0", "down")
        await next_report((False, "eth0: admin down"))
        net.ip("h1", "link", "set", "eth0", "up")
        await next_report((True, "eth0: up"))
        net.ip("h1", "link", "add", "tst7", "type", "veth", "peer", "name", "tst8")
        await next_report((False, "tst7: admin down"))  # it exists now, still down
        net.ip("h1", "link", "set", "tst7", "up")
        await next_report((False, "tst7: no carrier"))  # its peer is down
        net.ip("h1", "link", "set", "tst8", "up")
        await next_report((True, "tst7: up"))
        net.ip("h1", "link", "del", "tst7")
        await next_report((False, "tst7: deleted"))
        assert links.events > 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _first(
    monitor: AddrMonitor, address: str, host: str, since: float, added: bool
) -> float | None:
    """When ``ip monitor`` first saw ``address`` added to (or deleted from)
    ``host`` after ``since`` (a lifetime refresh is an "added" line too: only
    meaningful for a host that did not hold the address)."""
    return next(
        (
            c.time
            for c in list(monitor.changes)
            if c.address == address and c.host == host and c.added == added and c.time >= since
        ),
        None,
    )


def _configure(rais: Rais, net: Lab, extra: str) -> None:
    for host in hosts(net):
        conf = rais.tmp / f"{host}.toml"
        conf.write_text(conf.read_text() + extra)  # the [[group]] table is last


async def test_no_carrier_moves_the_address_and_it_comes_back(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    net = make_lab(3)
    rais = Rais(net, tmp_path)
    _configure(rais, net, f'link_hold = "{HOLD:g}s"\n')
    monitor = AddrMonitor(net, hosts(net), stamped=True)
    try:
        for host in hosts(net):
            rais.start(host)
        await settle(net, rais)
        await asyncio.sleep(0.5)
        monitor.start()
        cut = time.monotonic()
        net.ip("br", "link", "set", "h2", "down")
        moved, _ = await wait_for(lambda: holders(net, VIP2) == ["h3"], 3.0, interval=0.005)
        assert moved, (holders(net, VIP2), rais.log("h2"))
        await asyncio.sleep(0.3)
        taken = _first(monitor, VIP2, "h3", cut, True)
        released = _first(monitor, VIP2, "h2", cut, False)
        assert taken is not None and released is not None
        print(
            f"carrier loss -> {VIP2} off h2 {1000 * (released - cut):.0f} ms, "
            f"on h3 {1000 * (taken - cut):.0f} ms"
        )
        assert released < taken  # released at once, by itself, before anyone took it
        assert taken - cut <= TIMEOUT + HEARTBEAT + MARGIN, taken - cut
        status = rais.cli("h2", "status")
        assert "link eth0" in status and "DOWN (eth0: no carrier)" in status
        assert "link-down" in rais.log("h2")
        assert holders(net, VIP1) == ["h1"]

        await asyncio.sleep(1.0)  # cut off for a while: the others count it gone
        mended = time.monotonic()
        net.ip("br", "link", "set", "h2", "up")
        back, _ = await wait_for(lambda: holders(net, VIP2) == ["h2"], 5.0, interval=0.005)
        assert back, (holders(net, VIP2), rais.log("h2"))
        await asyncio.sleep(0.3)
        returned = _first(monitor, VIP2, "h2", mended, True)
        assert returned is not None
        print(f"carrier back -> {VIP2} on h2 again {1000 * (returned - mended):.0f} ms")
        assert returned - mended >= HOLD  # not before the hold-down
        assert returned - mended <= HOLD + TIMEOUT + 3 * HEARTBEAT + MARGIN
        assert "link-up" in rais.log("h2")
    finally:
        monitor.stop()
        rais.stop_all()
    assert monitor.overlaps(VIP2, since=cut) == []  # never on two hosts


async def test_with_track_link_false_nothing_moves(make_lab: LabFactory, tmp_path: Path) -> None:
    """No carrier on h2's service link, but control traffic goes on over a
    second network: without link tracking h2 keeps its address (as before)."""
    from test_e2e_agent import add_second_network

    net = make_lab(3)
    add_second_network(net)
    prefs = {"h1": f"{VIP1}/25", "h2": f"{VIP2}/25"}
    rais = Rais(net, tmp_path, prefs=prefs, second_net=True)
    _configure(rais, net, "track_link = false\n")
    try:
        for host in hosts(net):
            rais.start(host)
        await settle(net, rais)
        net.ip("br", "link", "set", "h2", "down")
        for _ in range(75):  # 1.5 s: far beyond timeout + heartbeat
            assert holders(net, VIP2) == ["h2"], holders(net, VIP2)
            await asyncio.sleep(0.02)
        assert "link-down" not in rais.log("h2")
        net.ip("br", "link", "set", "h2", "up")
    finally:
        rais.stop_all()


async def test_with_a_second_control_network_the_host_stays_and_says_why(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    """Control over another network: h2 stays a live member, advertises OK =
    false, and its address moves within about a heartbeat."""
    import json

    from test_e2e_agent import add_second_network

    net = make_lab(3)
    add_second_network(net)
    prefs = {"h1": f"{VIP1}/25", "h2": f"{VIP2}/25"}
    rais = Rais(net, tmp_path, prefs=prefs, second_net=True)
    _configure(rais, net, f'link_hold = "{HOLD:g}s"\n')
    try:
        for host in hosts(net):
            rais.start(host)
        await settle(net, rais)
        net.ip("br", "link", "set", "h2", "down")
        moved, took = await wait_for(lambda: holders(net, VIP2) == ["h3"], 2.0, interval=0.005)
        assert moved, holders(net, VIP2)
        print(f"second control network: moved in {1000 * took:.0f} ms")
        assert took <= 2 * HEARTBEAT + MARGIN
        group = json.loads(rais.cli("h1", "status", "--json"))["groups"][0]
        (h2,) = [h for h in group["hosts"] if h["id"] == "192.0.2.12"]
        assert h2["live"] and not h2["ok"]
        mine = json.loads(rais.cli("h2", "status", "--json"))["groups"][0]
        assert mine["link"]["state"] == "down" and mine["link"]["reason"] == "eth0: no carrier"
        net.ip("br", "link", "set", "h2", "up")
        ok, _ = await wait_for(
            lambda: (
                json.loads(rais.cli("h2", "status", "--json"))["groups"][0]["link"]["state"]
                == "holding"
            ),
            1.0,
        )
        assert ok
        back, _ = await wait_for(lambda: holders(net, VIP2) == ["h2"], 3.0)
        assert back
    finally:
        rais.stop_all()
