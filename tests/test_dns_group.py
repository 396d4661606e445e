"""One group's DNS thread over real cores: who is advertised, hysteresis on
load samples, per-host names, publishers only where they belong; and the
agent's embedded server answering from it."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rdatatype
import dns.zone
import pytest
from clusterkit import Cluster, make_config, service
from test_agent import Cluster as AgentCluster

from rais.core.core import Core
from rais.dns.config import DnsServerConfig, GroupDnsConfig, ZoneFileConfig
from rais.dns.group import GroupDns, merge_zones
from rais.dns.views import host_label
from rais.dns.zonefile import ZoneFilePublisher

NAME = "www.rais.test."


def cluster() -> Cluster:
    c = Cluster()
    for n in (1, 2, 3):
        c.add(make_config(n, spare=n == 3))
    c.run_until(1.0)
    return c


def addrs(gd: GroupDns) -> list[str]:
    assert gd.answer is not None
    return [str(a) for a in gd.answer.addresses]


def test_advertised_follow_the_group() -> None:
    c = cluster()
    events: list[tuple[str, str]] = []
    gd = GroupDns(
        GroupDnsConfig(NAME, "rais.test."),
        group="www",
        scale=1000,
        on_event=lambda k, r: events.append((k, r)),
        clock=lambda: 1_800_000_000,
    )
    assert gd.refresh(c.view(2))  # the spare's view
    s1, s2 = (str(ipaddress.ip_address(service(n))) for n in (1, 2))
    assert addrs(gd) == [s1, s2]
    assert not gd.refresh(c.view(2))  # nothing changed: no new serial
    assert events == [("dns-published", f"{NAME} {s1}, {s2}; serial 1800000000")]
    c.kill(1)
    c.run_until(2.0)
    assert c.holders(service(2)) == [2]
    assert gd.refresh(c.view(2))
    assert addrs(gd) == [s1]  # the orphan on the spare is not advertised
    assert gd.serial == 1_800_000_001
    zone = gd.zone_data()
    assert zone is not None
    host1 = dns.name.from_text(f"{host_label('192.0.2.1')}.{NAME}")
    assert zone.names[dns.name.from_text(NAME)] == (ipaddress.ip_address(s1),)
    assert zone.names[host1] == (ipaddress.ip_address(s1),)
    assert len(zone.names) == 2  # host 2 is gone, the spare has no name


def test_load_shedding_with_hysteresis_from_load_samples() -> None:
    c = cluster()
    gd = GroupDns(
        GroupDnsConfig(NAME, "rais.test.", high=800, low=600),
        group="www",
        scale=1000,
        on_event=lambda k, r: None,
    )
    s1, s2 = (str(ipaddress.ip_address(service(n))) for n in (1, 2))

    def load(i: int, value: int) -> None:
        def sample(core: Core, now: float) -> None:
            core.load_sample(now, value, 1000)

        c.poke(i, sample)
        c.run_until(c.now + 0.5)  # the next infos carry it
        gd.refresh(c.view(2))

    load(0, 100)
    assert addrs(gd) == [s1, s2]
    load(0, 900)  # above high: out
    assert addrs(gd) == [s2] and gd.answer is not None and gd.answer.shed
    load(0, 700)  # between the marks: stays out
    assert addrs(gd) == [s2]
    load(0, 500)  # below low: back
    assert addrs(gd) == [s1, s2]
    load(0, 700)  # between the marks: stays in
    assert addrs(gd) == [s1, s2]


def test_leader_publisher_only_on_the_leader(tmp_path: Path) -> None:
    c = cluster()
    made = []
    for i in range(3):
        cfg = GroupDnsConfig(
            NAME, "rais.test.", zonefile=ZoneFileConfig(str(tmp_path / f"z{i}" / "www.zone"))
        )
        gd = GroupDns(cfg, group="www", scale=1000, on_event=lambda k, r: None)
        gd.refresh(c.view(i))
        made.append(gd)
    desired = [gd.publishers[0][1].desired for gd in made]
    assert desired[0] is not None and desired[1] is None and desired[2] is None
    # self-publishers publish wherever they are
    cfg = GroupDnsConfig(
        NAME,
        "rais.test.",
        zonefile=ZoneFileConfig(str(tmp_path / "obs" / "www.zone"), publisher="self"),
    )
    gd = GroupDns(cfg, group="www", scale=1000, on_event=lambda k, r: None)
    gd.refresh(c.view(2))
    assert gd.publishers[0][1].desired is not None
    assert [p.active for p in gd.status().publishers if p.kind == "zonefile"] == [True]


def test_merge_zones_shares_an_origin() -> None:
    c = cluster()
    a = GroupDns(GroupDnsConfig(NAME, "rais.test."), group="www", scale=1000, on_event=print)
    b = GroupDns(
        GroupDnsConfig("db.rais.test.", "rais.test.", host_names=False),
        group="db",
        scale=1000,
        on_event=lambda k, r: None,
    )
    a.refresh(c.view(0))
    b.refresh(c.view(0))
    za, zb = a.zone_data(), b.zone_data()
    assert za is not None and zb is not None
    (merged,) = merge_zones([za, zb], ("ns1.rais.test.",))
    assert dns.name.from_text("db.rais.test.") in merged.names
    assert dns.name.from_text(NAME) in merged.names
    assert merged.ns == (dns.name.from_text("ns1.rais.test."),)


async def test_agent_serves_the_group_name(tmp_path: Path) -> None:
    c = AgentCluster(tmp_path, 3, dns=GroupDnsConfig(NAME, "rais.test."))
    h1 = c.hosts[0]
    h1.config = replace(
        h1.config, dns=DnsServerConfig(listen=((ipaddress.ip_address("127.0.0.1"), 0),))
    )
    for h in c.hosts:
        await c.start(h)
    try:
        assert h1.agent is not None
        port = h1.agent.dns_servers[0].port

        async def answer() -> set[str] | None:
            q = dns.message.make_query(NAME, dns.rdatatype.A)
            try:
                r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=0.2)
            except dns.exception.Timeout:
                return None  # no answer while the host is warming up
            return {rd.address for rrset in r.answer for rd in rrset}

        async def until(want: set[str]) -> None:
            for _ in range(200):
                if await answer() == want:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"{await answer()} != {want}")

        await until({"198.51.100.1", "198.51.100.2"})
        await c.kill(c.hosts[1])
        await until({"198.51.100.1"})
        status = h1.agent.api.status()["groups"][0]["dns"]
        assert status["addresses"] == ["198.51.100.1"] and status["name"] == NAME
        kinds = [e.kind.value for e in h1.agent.events]
        assert "dns-published" in kinds
    finally:
        for h in c.hosts:
            if h.task is not None and not h.task.done():
                await c.stop(h)


def test_the_zone_file_holds_the_zone_the_embedded_server_answers(tmp_path: Path) -> None:
    """One renderer: the zone file written from the DNS thread carries the
    records of the embedded server's zone (SOA timers, NS, TTLs, the name
    and its per-host names), the serial apart, and BIND's checker loads it."""
    c = cluster()
    zf = ZoneFileConfig(str(tmp_path / "www.zone"), publisher="self")
    cfg = GroupDnsConfig(NAME, "rais.test.", ttl=7, negative_ttl=3, zonefile=zf)
    gd = GroupDns(cfg, group="www", scale=1000, on_event=lambda k, r: None)
    gd.refresh(c.view(2))
    pub = gd.publishers[0][1]
    assert isinstance(pub, ZoneFilePublisher) and pub.desired is not None
    served = merge_zones([gd.zone_data()], zf.ns)[0]
    text = pub.render(pub.desired, served.serial)
    assert text.startswith("; zone rais.test.: written by rais")
    parsed = dns.zone.from_text(text, relativize=False, check_origin=True)
    written = {(n, rds.rdtype): rds for n, node in parsed.nodes.items() for rds in node.rdatasets}
    expected = {(r.name, r.rdtype): r for r in served.records()}
    assert written.keys() == expected.keys()
    for key, rrset in expected.items():
        assert written[key] == rrset and written[key].ttl == rrset.ttl, key
    for n in (1, 2):  # the per-host names are written too (the spare has none)
        host = dns.name.from_text(f"{host_label(f'192.0.2.{n}')}.{NAME}")
        a = written[(host, dns.rdatatype.A)]
        assert [r.to_text() for r in a] == [str(ipaddress.ip_address(service(n)))]
    assert len([n for n, _ in written if n.labels[0].startswith(b"host-")]) == 2
    checkzone = shutil.which("named-checkzone")
    if checkzone is None:
        pytest.skip("named-checkzone (bind9-utils) is not installed")
    path = tmp_path / "check.zone"
    path.write_text(text)
    done = subprocess.run(
        [checkzone, "rais.test", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
