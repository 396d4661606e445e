"""The agent on real hosts: three network namespaces on a bridge, each running
``rais agent`` as its own process with multicast control traffic, netlink and
gratuitous ARP; a client namespace watches the service addresses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netlab import Lab, LabFactory, lab_fixture, wait_for  # noqa: F401
from traffic import AddrMonitor, UdpProbe

pytestmark = pytest.mark.e2e

VIP1, VIP2 = "198.51.100.1", "198.51.100.2"


class Rais:
    """``rais agent`` processes, one per host namespace."""

    def __init__(
        self,
        net: Lab,
        tmp: Path,
        *,
        unicast: bool = False,
        prefs: dict[str, str] | None = None,
        second_net: bool = False,
    ) -> None:
        prefs = {"h1": f"{VIP1}/24", "h2": f"{VIP2}/24"} if prefs is None else prefs
        self.net = net
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        (tmp / "key").write_text("e2e-secret-key\n")
        for host in hosts(net):
            pref = f'preferred = "{prefs[host]}"\n' if host in prefs else ""
            if unicast:
                others = [f'"{net.ipv4(h)}"' for h in hosts(net) if h != host]
                pref += f"peers = [{', '.join(others)}]\n"
            (tmp / f"{host}.toml").write_text(
                f"[host]\ncontrol = {control(net, host, second_net)}\n"
                f'state_dir = "{tmp / host}"\n'
                f'[auth]\nkey_file = "{tmp / "key"}"\n'
                f'[[group]]\nname = "www"\naddress = "239.192.0.1:7401"\n'
                f'interface = "eth0"\n{pref}heartbeat = "100ms"\ntimeout = "300ms"\n'
                f'orphan_timeout = "60s"\n'
            )

    def start(self, host: str) -> None:
        argv = [
            *("ip", "netns", "exec", self.net.ns(host), sys.executable, "-m", "rais"),
            *("agent", "--config", str(self.tmp / f"{host}.toml")),
        ]
        with open(self.tmp / f"{host}.log", "ab") as log:
            self.procs[host] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def signal(self, host: str, sig: int) -> None:
        self.procs[host].send_signal(sig)

    def wait(self, host: str, timeout: float = 10.0) -> int:
        return self.procs[host].wait(timeout)

    def cli(self, host: str, *argv: str) -> str:
        return self.net.run(host, sys.executable, "-m", "rais", *argv).stdout

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)

    def log(self, host: str) -> str:
        return (self.tmp / f"{host}.log").read_text(errors="replace")


@pytest.fixture
def cluster(
    make_lab: LabFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Lab, Rais]]:
    net = make_lab(3, client=True)
    net.ip("c", "route", "add", "198.51.100.0/24", "dev", "eth0")
    rais = Rais(net, tmp_path, unicast=getattr(request, "param", "multicast") == "unicast")
    try:
        for host in hosts(net):
            rais.start(host)
        yield net, rais
    finally:
        rais.stop_all()


def control(net: Lab, host: str, second_net: bool) -> str:
    addresses = [f'"{net.ipv4(host)}"']
    if second_net:
        addresses.append(f'"198.51.100.{128 + int(host[1:])}"')
    return f"[{', '.join(addresses)}]"


def add_second_network(net: Lab) -> None:
    """A second control network: br1 in the bridge namespace, eth1 in every host
    with 198.51.100.(128+N)/25 (service addresses stay in 198.51.100.0/25)."""
    br = net.ns("br")
    net.run("br", "ip", "link", "add", "br1", "type", "bridge", "stp_state", "0")
    net.run("br", "ip", "link", "set", "br1", "up")
    for host in hosts(net):
        port = f"{host}n1"
        net.run(
            host, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", port, "netns", br
        )
        net.run(host, "ip", "link", "set", "eth1", "multicast", "on", "up")
        net.run(host, "ip", "addr", "add", f"198.51.100.{128 + int(host[1:])}/25", "dev", "eth1")
        net.run("br", "ip", "link", "set", port, "master", "br1", "up")


def hosts(net: Lab) -> list[str]:
    return [m for m in net.members() if m.startswith("h")]


def holders(net: Lab, vip: str) -> list[str]:
    import ipaddress

    ip = ipaddress.ip_address(vip)
    return [h for h in hosts(net) if ip in net.addresses(h)]


def all_heard(net: Lab, rais: Rais) -> bool:
    """Every running agent has logged every other running host joining: the
    addresses alone can settle before a slow agent (the spare) is up, and a
    test that then stops a holder sees its address go to the wrong host."""
    running = [h for h in hosts(net) if h in rais.procs and rais.procs[h].poll() is None]
    logs = {host: rais.log(host) for host in running}
    return all(
        f"host-joined: host {net.ipv4(other)}" in logs[host]
        for host in running
        for other in running
        if other != host
    )


async def settle(net: Lab, rais: Rais) -> None:
    ok, took = await wait_for(
        lambda: (
            holders(net, VIP1) == ["h1"] and holders(net, VIP2) == ["h2"] and all_heard(net, rais)
        ),
        10.0,
    )
    assert ok, f"not settled after {took:.1f}s:\n{rais.log('h1')}\n{rais.log('h2')}"


@pytest.mark.parametrize("cluster", ["multicast", "unicast"], indirect=True)
async def test_failover_on_host_death_and_failback(cluster: tuple[Lab, Rais]) -> None:
    net, rais = cluster
    await settle(net, rais)
    assert net.neigh("c", VIP2) is None or net.neigh("c", VIP2) == net.mac("h2")
    # A client sends a UDP datagram to VIP2 every 5 ms; each host echoes it
    # with its name. The kernels' address changes are watched as they happen.
    probe = UdpProbe(net, hosts(net), VIP2, rais.tmp)
    monitor = AddrMonitor(net, hosts(net))
    monitor.start()
    try:
        await asyncio.sleep(0.5)  # steady answers from h2 first
        # h2 dies: its link goes and its agent is killed (its address stays configured).
        net.ip("h2", "link", "set", "eth0", "down")
        rais.signal("h2", signal.SIGKILL)
        moved, _ = await wait_for(lambda: net.neigh("c", VIP2) == net.mac("h3"), 3.0)
        assert moved, f"client at {net.neigh('c', VIP2)}:\n{rais.log('h3')}"
        await asyncio.sleep(0.3)
        answers = probe.stop()
        gap, by = answers.outage("h2")
        print(f"failover: {gap * 1000:.0f} ms from h2's last answer to {by}'s first")
        assert by == "h3", answers.got[-3:]
        assert gap <= 0.3 + 0.1, gap  # timeout + 100 ms
        # h2 returns: its agent removes the leftover, and the address fails back.
        rais.wait("h2")
        gone, _ = await wait_for(lambda: holders(net, VIP2) == ["h3"], 3.0)
        assert gone, holders(net, VIP2)  # the dead agent's copy has expired
        net.ip("h2", "link", "set", "eth0", "up")
        restarted = time.monotonic()
        rais.start("h2")
        back, _ = await wait_for(lambda: holders(net, VIP2) == ["h2"], 10.0, interval=0.005)
        assert back, holders(net, VIP2)
        ok, _ = await wait_for(lambda: net.neigh("c", VIP2) == net.mac("h2"), 2.0)
        assert ok, "no announcement after failback"
    finally:
        probe.kill()
        monitor.stop()
    changes = monitor.seen(VIP2)
    assert changes >= 3  # h3 added, h3 deleted, h2 added (refreshes add more)
    # every change of every kernel, not samples: never two holders at once
    overlaps = monitor.overlaps(VIP2, since=restarted)
    assert overlaps == [], overlaps[:3]
    print(f"failback: {changes} address changes seen, never two holders")


async def test_sigterm_releases_and_hands_over_quickly(cluster: tuple[Lab, Rais]) -> None:
    net, rais = cluster
    await settle(net, rais)
    rais.signal("h1", signal.SIGTERM)
    moved, took = await wait_for(lambda: holders(net, VIP1) == ["h3"], 3.0)
    assert moved, holders(net, VIP1)
    print(f"graceful handover: {took:.3f}s")
    assert rais.wait("h1") == 0
    assert took < 1.0


async def test_status_and_quiesce_commands(cluster: tuple[Lab, Rais]) -> None:
    net, rais = cluster
    await settle(net, rais)

    def group() -> dict[str, Any]:
        g: dict[str, Any] = json.loads(rais.cli("h2", "status", "--json"))["groups"][0]
        return g

    ok, _ = await wait_for(lambda: group()["leader"] == "192.0.2.11", 3.0)
    assert ok, group()
    assert group()["name"] == "www"
    assert {h["id"] for h in group()["hosts"] if h["live"]} == {
        "192.0.2.11",
        "192.0.2.12",
        "192.0.2.13",
    }
    table = rais.cli("h2", "status")
    assert "leader 192.0.2.11" in table and VIP2 in table
    assert "quiesced: www" in rais.cli("h2", "quiesce")
    ok, _ = await wait_for(
        lambda: any(
            h["id"] == "192.0.2.12" and h["quiesced"]
            for h in json.loads(rais.cli("h1", "status", "--json"))["groups"][0]["hosts"]
        ),
        2.0,
    )
    assert ok
    assert holders(net, VIP2) == ["h2"]  # quiesced hosts keep their addresses


async def test_bad_datagrams_are_dropped_and_counted(cluster: tuple[Lab, Rais]) -> None:
    net, rais = cluster
    await settle(net, rais)
    junk = [b"", b"RAIS", os.urandom(64), os.urandom(1400), b"\x00" * 3000]
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton('192.0.2.200'))\n"
        f"for d in {junk!r}:\n"
        "    s.sendto(d, ('239.192.0.1', 7401))\n"
    )
    net.run("c", sys.executable, "-c", code)

    def dropped() -> int:
        g = json.loads(rais.cli("h1", "status", "--json"))["groups"][0]
        return int(sum(g["dropped"].values())) + int(
            g["counters"].get("transport_oversized_dropped", 0)
        )

    ok, _ = await wait_for(lambda: dropped() >= 4, 2.0)
    assert ok, dropped()
    assert holders(net, VIP1) == ["h1"] and holders(net, VIP2) == ["h2"]
    assert rais.procs["h1"].poll() is None


def test_check_config_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[host]\ncontrol = ["192.0.2.999"]\n[auth]\nkey_file = "/nonexistent"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "rais", "check-config", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "control" in proc.stderr


async def test_sighup_joins_a_group_without_a_restart(cluster: tuple[Lab, Rais]) -> None:
    net, rais = cluster
    await settle(net, rais)
    conf = rais.tmp / "h3.toml"
    conf.write_text(
        conf.read_text()
        + '[[group]]\nname = "db"\naddress = "239.192.0.2:7402"\ninterface = "eth0"\n'
        'preferred = "198.51.100.30/24"\nheartbeat = "100ms"\ntimeout = "300ms"\n'
    )
    pid = rais.procs["h3"].pid
    rais.signal("h3", signal.SIGHUP)
    ok, _ = await wait_for(lambda: holders(net, "198.51.100.30") == ["h3"], 5.0)
    assert ok, rais.log("h3")
    groups = json.loads(rais.cli("h3", "status", "--json"))["groups"]
    assert {g["name"] for g in groups} == {"www", "db"}
    assert rais.procs["h3"].pid == pid and rais.procs["h3"].poll() is None
    assert holders(net, VIP1) == ["h1"] and holders(net, VIP2) == ["h2"]


async def test_sigkill_of_the_agent_alone_leaves_no_address_behind(
    cluster: tuple[Lab, Rais],
) -> None:
    """The host stays up, only its agent is killed: the kernel would keep the
    address forever (keepalived's VIP left behind); the lifetime the living
    agent kept refreshing removes it soon after the spare took over."""
    net, rais = cluster
    await settle(net, rais)
    rais.signal("h2", signal.SIGKILL)
    rais.wait("h2")
    killed = time.monotonic()
    taken, took = await wait_for(lambda: "h3" in holders(net, VIP2), 3.0)
    assert taken, holders(net, VIP2)
    gone, _ = await wait_for(lambda: "h2" not in holders(net, VIP2), 4.0)
    left_for = time.monotonic() - killed
    print(f"takeover {took:.3f}s; dead agent's copy gone {left_for:.3f}s after the kill")
    assert gone, holders(net, VIP2)
    assert left_for - took < 2.5, (left_for, took)
    # both sample points in time: never two live holders once the copy expired
    rais.start("h2")
    back, _ = await wait_for(lambda: holders(net, VIP2) == ["h2"], 10.0)
    assert back, holders(net, VIP2)
    assert holders(net, VIP1) == ["h1"]


async def test_spares_first_quiesced_hosts_get_nothing(cluster: tuple[Lab, Rais]) -> None:
    net, rais = cluster
    await settle(net, rais)
    for host in ("h1", "h3"):
        assert "quiesced: www" in rais.cli(host, "quiesce")
    await asyncio.sleep(0.3)
    net.ip("h2", "link", "set", "eth0", "down")
    rais.signal("h2", signal.SIGKILL)
    # nobody eligible: the address stays unassigned (sampled for 1 s) ...
    for _ in range(50):
        assert holders(net, VIP2) in ([], ["h2"]), holders(net, VIP2)
        await asyncio.sleep(0.02)
    assert "cannot-assign" in rais.log("h1")
    # ... until the spare is unquiesced: it takes it, not the quiesced h1
    rais.cli("h3", "unquiesce")
    ok, _ = await wait_for(lambda: holders(net, VIP2) in (["h3"], ["h2", "h3"]), 2.0)
    assert ok, holders(net, VIP2)
    assert holders(net, VIP1) == ["h1"]


async def test_a_fourth_host_joins_without_config_changes(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    net = make_lab(4, client=True)
    prefs = {"h1": f"{VIP1}/24", "h2": f"{VIP2}/24", "h4": "198.51.100.4/24"}
    rais = Rais(net, tmp_path, prefs=prefs)
    try:
        for host in ("h1", "h2", "h3"):
            rais.start(host)
        await settle(net, rais)
        before = {h: (tmp_path / f"{h}.toml").read_text() for h in ("h1", "h2", "h3")}
        rais.start("h4")
        ok, _ = await wait_for(lambda: holders(net, "198.51.100.4") == ["h4"], 5.0)
        assert ok, rais.log("h4")
        assert holders(net, VIP1) == ["h1"] and holders(net, VIP2) == ["h2"]
        assert before == {h: (tmp_path / f"{h}.toml").read_text() for h in before}
        group = json.loads(rais.cli("h1", "status", "--json"))["groups"][0]
        assert "192.0.2.14" in {h["id"] for h in group["hosts"] if h["live"]}
    finally:
        rais.stop_all()


async def test_an_ipv6_service_address_fails_over(make_lab: LabFactory, tmp_path: Path) -> None:
    net = make_lab(3, client=True)
    vip6 = "2001:db8::100"
    rais = Rais(net, tmp_path, prefs={"h1": f"{VIP1}/24", "h2": f"{vip6}/64"})
    try:
        for host in hosts(net):
            rais.start(host)
        ok, _ = await wait_for(lambda: holders(net, vip6) == ["h2"], 10.0)
        assert ok, rais.log("h2")

        def spare_settled() -> bool:
            return bool(json.loads(rais.cli("h3", "status", "--json"))["groups"][0]["settled"])

        # The spare must be eligible before h2 dies (on a loaded machine the
        # last agent can start after h2 already holds its address).
        ok, _ = await wait_for(spare_settled, 10.0)
        assert ok, rais.log("h3")
        assert net.reaches("c", vip6)
        assert net.neigh("c", vip6) == net.mac("h2")
        net.ip("h2", "link", "set", "eth0", "down")
        rais.signal("h2", signal.SIGKILL)
        moved, took = await wait_for(lambda: net.neigh("c", vip6) == net.mac("h3"), 3.0)
        assert moved, (net.neigh("c", vip6), holders(net, vip6))
        print(f"IPv6 failover: client re-pointed after {took:.3f}s")
        assert net.reaches("c", vip6)
    finally:
        rais.stop_all()


async def test_cutting_one_of_two_control_networks_causes_no_failover(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    net = make_lab(3, client=True)
    add_second_network(net)
    net.ip("c", "route", "add", "198.51.100.0/25", "dev", "eth0")
    prefs = {"h1": f"{VIP1}/25", "h2": f"{VIP2}/25"}
    rais = Rais(net, tmp_path, prefs=prefs, second_net=True)
    try:
        for host in hosts(net):
            rais.start(host)
        await settle(net, rais)
        await asyncio.sleep(0.5)
        for cut in ("br1", "br0"):
            # cut one control network at the bridge for 2 s (br0 carries the
            # service traffic too, which is not what this test is about: the
            # control traffic must go on over the other network)
            net.run("br", "ip", "link", "set", cut, "down")
            for _ in range(100):
                assert holders(net, VIP1) == ["h1"] and holders(net, VIP2) == ["h2"]
                await asyncio.sleep(0.02)
            net.run("br", "ip", "link", "set", cut, "up")
            await asyncio.sleep(0.5)
        for host in hosts(net):
            assert "host-lost" not in rais.log(host), rais.log(host)
    finally:
        rais.stop_all()


FLOOD = """
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.0.2.200"))
dests = [("239.192.0.1", 7401)] + [(f"192.0.2.1{n}", 7401) for n in (1, 2, 3)]
junk = [os.urandom(144) for _ in range(64)]
end, n = time.monotonic() + float(sys.argv[1]), 0
while time.monotonic() < end:
    for d in dests:
        try:
            s.sendto(junk[n % 64], d)
        except OSError:
            pass
        n += 1
print(n)
"""


@pytest.mark.parametrize("cluster", ["multicast", "unicast"], indirect=True)
async def test_a_junk_flood_moves_nothing_and_is_read_at_a_bounded_rate(
    cluster: tuple[Lab, Rais],
) -> None:
    """A host without the key (c) floods the control port, at the group and at
    every host's own address, as fast as one process can: no address moves,
    and each agent reads at most the stranger budget of it (multicast: 32 per
    50 ms from the second socket; unicast: none, c is not a peer)."""
    from rais.drivers.receive import STRANGER_BATCH, STRANGER_PAUSE

    net, rais = cluster
    await settle(net, rais)
    unicast = "peers" in (rais.tmp / "h1.toml").read_text()

    def counters(host: str) -> dict[str, int]:
        g = json.loads(rais.cli(host, "status", "--json"))["groups"][0]
        return {k: v for k, v in g["counters"].items() if k.startswith("transport_")} | {
            "dropped": int(sum(g["dropped"].values()))
        }

    def received(host: str) -> int:
        return counters(host)["transport_received"]

    monitor = AddrMonitor(net, hosts(net))
    monitor.start()
    try:
        before = {h: received(h) for h in hosts(net)}
        seconds = 4.0
        started = time.monotonic()
        flood = await asyncio.to_thread(
            net.run, "c", sys.executable, "-c", FLOOD, str(seconds), timeout=seconds + 20
        )
        took = time.monotonic() - started + 1.0  # the status calls around it
        after = {h: received(h) for h in hosts(net)}
    finally:
        monitor.stop()
    assert int(flood.stdout.strip()) > 20_000, flood.stdout  # a flood, not a trickle
    steady = {(VIP1, "h1"), (VIP2, "h2")}
    moved = [
        c
        for c in monitor.changes
        if c.added and c.address in (VIP1, VIP2) and (c.address, c.host) not in steady
    ]
    assert moved == [], moved
    assert holders(net, VIP1) == ["h1"] and holders(net, VIP2) == ["h2"]
    members = 2 * 10 * took  # two peers' heartbeats at 100 ms
    junk = 0 if unicast else STRANGER_BATCH * (took / STRANGER_PAUSE + 2)
    for h in hosts(net):
        got = after[h] - before[h]
        assert got <= members + junk + 20, (h, got, members, junk, counters(h))
        assert "host-lost" not in rais.log(h), rais.log(h)
