"""Issue 10: a host that has not yet heard its group for one timeout neither
serves nor publishes an answer built from partial knowledge; a leader that
takes over never shrinks the set below what it computed as a follower."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import replace
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from clusterkit import TIMEOUT, Cluster, make_config, service
from test_agent import Cluster as AgentCluster

from rais.base.ip import IP
from rais.core.core import Core
from rais.dns.config import DnsServerConfig, GroupDnsConfig, ZoneFileConfig
from rais.dns.group import GroupDns, merge_zones
from rais.dns.server import DnsServer, ZoneData
from rais.dns.zonefile import ZoneFilePublisher

N = dns.name.from_text
ORIGIN = N("rais.test.")
WWW = "www.rais.test."
A1, A2, A3 = (ipaddress.ip_address(service(n)) for n in (1, 2, 3))


def server(*zones: ZoneData) -> DnsServer:
    return DnsServer(("127.0.0.1", 0), lambda: zones)


def ask(srv: DnsServer, name: str, rdtype: str = "A") -> dns.message.Message | None:
    reply = srv.handle(dns.message.make_query(name, rdtype).to_wire(), udp=True)
    return None if reply is None else dns.message.from_wire(reply)


def answered(srv: DnsServer, name: str, rdtype: str = "A") -> dns.message.Message:
    reply = ask(srv, name, rdtype)
    assert reply is not None, f"{name} {rdtype} got no answer"
    return reply


def zone(names: dict[str, tuple[IP, ...]], warming: tuple[str, ...] = ()) -> ZoneData:
    return ZoneData(
        ORIGIN,
        7,
        (N("localhost."),),
        {N(k): v for k, v in names.items()},
        warming=tuple(N(w) for w in warming),
    )


# ------------------------------------------------------------ the server


def test_a_warming_name_and_everything_below_it_get_no_answer() -> None:
    srv = server(zone({"db.rais.test.": (A3,)}, warming=("www.rais.test.",)))
    for name, rdtype in (
        (WWW, "A"),
        (WWW, "AAAA"),
        (WWW, "ANY"),
        (WWW, "TXT"),
        ("host-192-0-2-1.www.rais.test.", "A"),
        ("WWW.Rais.Test.", "A"),
    ):
        assert ask(srv, name, rdtype) is None, (name, rdtype)
    assert srv.counters.warming == 6 and not srv.counters.answers
    # the rest of the zone answers normally
    db = answered(srv, "db.rais.test.")
    assert db.rcode() == dns.rcode.NOERROR and db.answer[0][0].address == str(A3)
    assert answered(srv, "nope.rais.test.").rcode() == dns.rcode.NXDOMAIN
    assert answered(srv, "rais.test.", "SOA").answer[0][0].serial == 7
    assert answered(srv, "example.com.").rcode() == dns.rcode.REFUSED


def test_names_above_a_warming_name_still_exist() -> None:
    """An empty non-terminal above a warming group stays NODATA: an NXDOMAIN
    there would deny the group's name too (RFC 8020)."""
    srv = server(zone({}, warming=("www.east.rais.test.",)))
    r = answered(srv, "east.rais.test.")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert ask(srv, "www.east.rais.test.") is None


def test_a_warm_group_nested_below_a_warming_one_answers() -> None:
    srv = server(zone({"api.www.rais.test.": (A2,)}, warming=("www.rais.test.",)))
    assert answered(srv, "api.www.rais.test.").answer[0][0].address == str(A2)
    assert ask(srv, WWW) is None
    assert ask(srv, "x.www.rais.test.") is None


def test_merge_zones_a_zone_whose_every_group_warms_is_silent() -> None:
    www = zone({}, warming=(WWW,))
    db = zone({}, warming=("db.rais.test.",))
    (merged,) = merge_zones([www, db], ("ns1.rais.test.",))
    srv = server(merged)
    for name, rdtype in (("rais.test.", "SOA"), ("rais.test.", "NS"), ("x.rais.test.", "A")):
        assert ask(srv, name, rdtype) is None
    (merged,) = merge_zones([www, zone({"db.rais.test.": (A3,)})], ("ns1.rais.test.",))
    srv = server(merged)
    assert answered(srv, "rais.test.", "SOA").rcode() == dns.rcode.NOERROR
    assert answered(srv, "db.rais.test.").answer
    assert ask(srv, WWW) is None


async def test_over_the_wire_silence_on_udp_and_a_closed_connection_on_tcp() -> None:
    srv = server(zone({"db.rais.test.": (A3,)}, warming=(WWW,)))
    await srv.start()
    try:
        with pytest.raises(dns.exception.Timeout):
            await dns.asyncquery.udp(
                dns.message.make_query(WWW, "A"), "127.0.0.1", port=srv.port, timeout=0.2
            )
        with pytest.raises(EOFError):
            await dns.asyncquery.tcp(
                dns.message.make_query(WWW, "A"), "127.0.0.1", port=srv.port, timeout=2
            )
        r = await dns.asyncquery.udp(
            dns.message.make_query("db.rais.test.", "A"), "127.0.0.1", port=srv.port, timeout=2
        )
        assert r.answer[0][0].address == str(A3)
    finally:
        await srv.close()


# ------------------------------------------------------ the DNS thread


def group_dns(tmp: Path, publisher: str = "self", **kw: int) -> GroupDns:
    zf = ZoneFileConfig(str(tmp / "www.zone"), publisher=publisher)  # type: ignore[arg-type]
    cfg = GroupDnsConfig(WWW, "rais.test.", zonefile=zf, **kw)  # type: ignore[arg-type]
    return GroupDns(cfg, group="www", scale=1000, on_event=lambda k, r: None)


def published(gd: GroupDns) -> set[IP] | None:
    pub = gd.publishers[0][1]
    assert isinstance(pub, ZoneFilePublisher)
    return None if pub.desired is None else set(pub.desired.addresses)


def served(gd: GroupDns) -> tuple[IP, ...] | None:
    """The group name's addresses in the embedded server, None: no answer."""
    srv = server(*merge_zones([gd.zone_data()], ("localhost.",)))
    reply = ask(srv, WWW)
    if reply is None:
        return None
    assert reply.rcode() == dns.rcode.NOERROR
    return tuple(sorted(ipaddress.ip_address(rd.address) for rr in reply.answer for rd in rr))


@pytest.mark.parametrize("phase", [0.0, 0.03, 0.07])
def test_an_observer_that_restarts_answers_nothing_until_it_has_heard_the_group(
    tmp_path: Path, phase: float
) -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3, observer=True)])
    c.run_until(1.0)
    c.restart(2)
    back = c.now
    gd = group_dns(tmp_path)
    c.run_until(back + phase)
    seen: list[tuple[float, tuple[IP, ...] | None]] = []
    while c.now < back + 1.0:
        gd.refresh(c.view(2))
        seen.append((c.now - back, served(gd)))
        if served(gd) is None:
            assert published(gd) is None and gd.status().warming
        c.step(0.1)
    assert {answer for _, answer in seen} == {None, (A1, A2)}, seen
    first = min(t for t, answer in seen if answer is not None)
    assert TIMEOUT <= first < TIMEOUT + 0.1 + 1e-9, seen
    assert published(gd) == {A1, A2}
    assert not gd.status().warming


def test_a_restarted_lowest_host_leads_without_shrinking_the_set(tmp_path: Path) -> None:
    """Loads between the marks: the hysteresis keeps what was advertised. The
    restarted host 1 leads as soon as it settles; its first publish must hold
    every address its predecessor advertised, not the ones a half-heard view
    would let back in only below the low mark."""
    c = Cluster([make_config(1), make_config(2), make_config(3), make_config(4, spare=True)])

    def sample(load: int) -> None:
        for i in (1, 2):
            c.poke(i, lambda core, now: core.load_sample(now, load, 1000))

    sample(700)
    c.run_until(1.0)
    follower = group_dns(tmp_path / "h2", "leader", high=800, low=600)
    for _ in range(10):
        follower.refresh(c.view(1))
        c.step(0.1)
    c.kill(0)
    killed = c.now
    took = c.run_until_true(lambda: c.core(1).is_leader, 1.0) - killed
    follower.refresh(c.view(1))
    assert took <= TIMEOUT + 0.01
    assert published(follower) == {A2, A3}  # the takeover: only the dead host went
    c.step(1.0)
    c.restart(0)
    back = c.now
    restarted = group_dns(tmp_path / "h1", "leader", high=800, low=600)
    history: list[set[IP] | None] = []
    while c.now < back + 2.0:
        restarted.refresh(c.view(0))
        follower.refresh(c.view(1))
        if not history or history[-1] != published(restarted):
            history.append(published(restarted))
        c.step(0.05)
    assert c.core(0).is_leader
    assert history[0] is None
    assert all(h is not None and {A2, A3} <= h for h in history[1:]), history
    assert history[-1] == {A1, A2, A3}


def test_a_follower_that_takes_over_drops_the_dead_leader_at_once(tmp_path: Path) -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3, spare=True)])
    c.run_until(1.0)
    gd = group_dns(tmp_path, "leader")
    gd.refresh(c.view(1))
    assert published(gd) is None  # a follower's leader publisher is idle
    c.kill(0)
    killed = c.now
    while published(gd) is None:
        c.step(0.1)
        gd.refresh(c.view(1))
    assert published(gd) == {A2}
    assert c.now - killed <= TIMEOUT + 0.1 + 1e-9


def test_refresh_never_reads_an_unsettled_core(tmp_path: Path) -> None:
    c = Cluster([make_config(1)])
    core: Core = c.core(0)
    gd = group_dns(tmp_path)
    assert not gd.refresh(core.view(c.now))
    assert gd.answer is None and gd.zone_data().warming == (N(WWW),)
    c.run_until(TIMEOUT + 0.01)
    assert gd.refresh(core.view(c.now)) and published(gd) == {A1}


# ------------------------------------------------------------ the agent


async def test_an_agent_started_into_a_group_answers_nothing_short(tmp_path: Path) -> None:
    """The embedded server of a DNS observer started into a healthy group,
    asked every 10 ms from its first moment: never a short answer."""
    c = AgentCluster(tmp_path, 3, dns=GroupDnsConfig(WWW, "rais.test.", ttl=0))
    obs = c.hosts[2]
    observer = replace(obs.config.groups[0], observer=True)
    obs.config = replace(
        obs.config,
        groups=(observer,),
        dns=DnsServerConfig(listen=((ipaddress.ip_address("127.0.0.1"), 0),)),
    )
    for h in c.hosts[:2]:
        await c.start(h)
    try:
        await c.until(c.settled)
        await c.until(lambda: len(c.hosts[0].agent.dns.groups["www"].status().addresses) == 2)  # type: ignore[union-attr]
        full = {"198.51.100.1", "198.51.100.2"}
        for _ in range(3):
            await c.start(obs)
            assert obs.agent is not None
            port = obs.agent.dns_servers[0].port
            started = asyncio.get_running_loop().time()
            answers: list[str] = []
            while True:
                q = dns.message.make_query(WWW, dns.rdatatype.A)
                try:
                    r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=0.01)
                except dns.exception.Timeout:
                    answers.append("silent")
                    continue
                got = {rd.address for rrset in r.answer for rd in rrset}
                answers.append(dns.rcode.to_text(r.rcode()) if got != full else "full")
                if got == full:
                    break
                assert asyncio.get_running_loop().time() - started < 2.0, answers
            took = asyncio.get_running_loop().time() - started
            assert set(answers) <= {"silent", "full"}, answers
            assert answers[0] == "silent" and took >= 0.15 - 0.02, (took, answers)
            await c.stop(obs)
    finally:
        for h in c.hosts:
            if h.task is not None and not h.task.done():
                await c.stop(h)
