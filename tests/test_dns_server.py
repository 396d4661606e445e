"""rais.dns.server against dnspython's stub (UDP and TCP) and the real dig."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import shutil
import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

from rais.base.ip import IP
from rais.dns.render import zone_text
from rais.dns.server import DnsServer, ZoneData

N = dns.name.from_text
LOCAL = "127.0.0.1"
BIG = tuple(ipaddress.IPv4Address(f"10.0.0.{i}") for i in range(1, 101))
WWW: tuple[IP, ...] = tuple(map(ipaddress.ip_address, ["192.0.2.1", "192.0.2.2", "2001:db8::1"]))
NS = (N("ns1.rais.test."), N("ns2.rais.test."))


def rais_zone(serial: int = 2024010101) -> ZoneData:
    names: dict[str, tuple[IP, ...]] = {
        "www": WWW, "h1.hosts": WWW[:1], "v6": (ipaddress.ip_address("2001:db8::5"),),
        "empty": (), "big": BIG, "forty": BIG[:40],
    }  # fmt: skip
    origin = N("rais.test.")
    return ZoneData(origin, serial, NS, {N(k, origin): v for k, v in names.items()}, negative_ttl=3)


def inner_zone() -> ZoneData:
    names = {N("www.inner.rais.test."): (ipaddress.IPv4Address("198.51.100.9"),)}
    return ZoneData(N("inner.rais.test."), 1, NS[:1], names, ttl=30)


class Zones:
    def __init__(self) -> None:
        self.zones: list[ZoneData] = [rais_zone(), inner_zone()]
        self.fail = False

    def __call__(self) -> Sequence[ZoneData]:
        if self.fail:
            raise RuntimeError("no zones today")
        return self.zones


@pytest.fixture
def zones() -> Zones:
    return Zones()


@pytest.fixture
async def server(zones: Zones) -> AsyncIterator[DnsServer]:
    srv = DnsServer((LOCAL, 0), zones)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def ask(
    srv: DnsServer, name: str, rdtype: str = "A", *, tcp: bool = False, **kw: int | bool
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    if tcp:
        return await dns.asyncquery.tcp(query, LOCAL, timeout=5, port=srv.port)
    return await dns.asyncquery.udp(query, LOCAL, timeout=5, port=srv.port)


def texts(response: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in response.answer for rd in rrset}


def authority_soa(r: dns.message.Message) -> dns.rrset.RRset:
    assert len(r.authority) == 1 and r.authority[0].rdtype == dns.rdatatype.SOA
    assert r.authority[0].name == N("rais.test.")
    return r.authority[0]


transports = pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])


@transports
async def test_a_and_aaaa(server: DnsServer, tcp: bool) -> None:
    r = await ask(server, "www.rais.test", "A", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert texts(r) == {"192.0.2.1", "192.0.2.2"} and r.answer[0].ttl == 5
    r = await ask(server, "www.rais.test", "AAAA", tcp=tcp)
    assert texts(r) == {"2001:db8::1"} and not r.authority


@transports
@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("v6.rais.test", "A"), ("h1.hosts.rais.test", "AAAA"), ("hosts.rais.test", "A"),
     ("empty.rais.test", "A"), ("www.rais.test", "MX"), ("rais.test", "A")],
)  # fmt: skip
async def test_nodata(server: DnsServer, tcp: bool, name: str, rdtype: str) -> None:
    r = await ask(server, name, rdtype, tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and not r.answer
    soa = authority_soa(r)
    assert soa.ttl == 3 and soa[0].minimum == 3


@transports
@pytest.mark.parametrize("name", ["nope.rais.test", "x.www.rais.test", "a.b.hosts.rais.test"])
async def test_nxdomain(server: DnsServer, tcp: bool, name: str) -> None:
    r = await ask(server, name, "A", tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA and not r.answer
    authority_soa(r)


@transports
@pytest.mark.parametrize("name", ["example.com", "test", ".", "rais.test.example"])
async def test_refused_outside_the_zones(server: DnsServer, tcp: bool, name: str) -> None:
    r = await ask(server, name, "A", tcp=tcp)
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA
    assert not r.answer and not r.authority


@transports
async def test_soa_and_ns_at_the_apex(server: DnsServer, tcp: bool) -> None:
    r = await ask(server, "rais.test", "SOA", tcp=tcp)
    [soa] = r.answer
    assert soa[0].to_text() == "ns1.rais.test. hostmaster.rais.test. 2024010101 300 60 86400 3"
    r = await ask(server, "rais.test", "NS", tcp=tcp)
    assert texts(r) == {"ns1.rais.test.", "ns2.rais.test."} and r.flags & dns.flags.AA


async def test_closest_enclosing_zone_answers(server: DnsServer) -> None:
    r = await ask(server, "www.inner.rais.test")
    assert texts(r) == {"198.51.100.9"} and r.answer[0].ttl == 30
    r = await ask(server, "nope.inner.rais.test")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].name == N("inner.rais.test.")


async def test_owner_name_keeps_the_query_case(server: DnsServer) -> None:
    r = await ask(server, "WwW.RaIs.TeSt")
    assert r.answer[0].name.to_text() == "WwW.RaIs.TeSt."


@transports
async def test_any_is_minimal(server: DnsServer, tcp: bool) -> None:
    r = await ask(server, "www.rais.test", "ANY", tcp=tcp)
    assert {rrset.rdtype for rrset in r.answer} == {dns.rdatatype.A, dns.rdatatype.AAAA}
    assert texts(r) == {str(a) for a in WWW}
    r = await ask(server, "rais.test", "ANY", tcp=tcp)
    assert [rrset.rdtype for rrset in r.answer] == [dns.rdatatype.SOA]
    r = await ask(server, "hosts.rais.test", "ANY", tcp=tcp)
    assert texts(r) == {'"RFC8482" ""'} and r.answer[0].rdtype == dns.rdatatype.HINFO
    r = await ask(server, "nope.rais.test", "ANY", tcp=tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN


async def test_transfers_other_classes_and_meta_types(server: DnsServer) -> None:
    r = await ask(server, "rais.test", "AXFR", tcp=True)
    assert r.rcode() == dns.rcode.REFUSED
    query = dns.message.make_query("www.rais.test", "A", rdclass=dns.rdataclass.CH)
    r = await dns.asyncquery.udp(query, LOCAL, timeout=5, port=server.port)
    assert r.rcode() == dns.rcode.REFUSED
    r = await ask(server, "www.rais.test", "MAILB")
    assert r.rcode() == dns.rcode.NOTIMP


async def test_tc_over_udp_full_answer_over_tcp(server: DnsServer) -> None:
    r = await ask(server, "big.rais.test")
    assert r.flags & dns.flags.TC and not r.answer and r.edns < 0
    r = await ask(server, "big.rais.test", tcp=True)
    assert not r.flags & dns.flags.TC and texts(r) == {str(a) for a in BIG}
    query = dns.message.make_query("big.rais.test", "A")
    r, used_tcp = await dns.asyncquery.udp_with_fallback(query, LOCAL, timeout=5, port=server.port)
    assert used_tcp and len(r.answer[0]) == 100
    assert server.counters.truncated == 2


async def test_edns_payload_is_respected(zones: Zones) -> None:
    srv = DnsServer((LOCAL, 0), zones, max_udp_payload=4096)
    await srv.start()
    try:
        # 40 addresses: ~680 bytes, over 512 but under 1232
        r = await ask(srv, "forty.rais.test")
        assert r.flags & dns.flags.TC and r.edns < 0
        r = await ask(srv, "forty.rais.test", use_edns=0, payload=1232)
        assert not r.flags & dns.flags.TC and len(r.answer[0]) == 40
        assert r.edns == 0 and r.payload == 4096
        # 100 addresses: ~1.7 kB, over the client's 1232, under its 4096
        r = await ask(srv, "big.rais.test", use_edns=0, payload=1232)
        assert r.flags & dns.flags.TC and not r.answer and r.edns == 0
        r = await ask(srv, "big.rais.test", use_edns=0, payload=4096)
        assert not r.flags & dns.flags.TC and len(r.answer[0]) == 100
        # a client offering less than 512 still gets 512
        r = await ask(srv, "forty.rais.test", use_edns=0, payload=100)
        assert r.flags & dns.flags.TC
    finally:
        await srv.close()


async def test_our_payload_caps_the_clients(server: DnsServer) -> None:
    r = await ask(server, "big.rais.test", use_edns=0, payload=4096)
    assert r.flags & dns.flags.TC and r.payload == 1232


async def test_edns_version_above_zero_gets_badvers(server: DnsServer) -> None:
    r = await ask(server, "www.rais.test", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0 and not r.answer


async def test_edns_options_are_tolerated(server: DnsServer) -> None:
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)
    query = dns.message.make_query("www.rais.test", "A", use_edns=0, options=[cookie])
    r = await dns.asyncquery.udp(query, LOCAL, timeout=5, port=server.port)
    assert r.rcode() == dns.rcode.NOERROR and r.edns == 0


class RawUdp(asyncio.DatagramProtocol):
    replies: asyncio.Queue[bytes]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.replies = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(data)


async def raw_udp(srv: DnsServer, payloads: list[bytes], expect: int) -> list[bytes]:
    """Send the payloads in order; the first ``expect`` replies."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(RawUdp, remote_addr=(LOCAL, srv.port))
    try:
        for payload in payloads:
            transport.sendto(payload)
        return [await asyncio.wait_for(proto.replies.get(), 5) for _ in range(expect)]
    finally:
        transport.close()


def header(qid: int, flags: int, qd: int = 1) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, 0, 0, 0)


async def test_formerr_for_a_header_with_garbage(server: DnsServer) -> None:
    [reply] = await raw_udp(server, [header(4242, 0x0100) + b"\x07garbage"], 1)
    r = dns.message.from_wire(reply)
    assert r.id == 4242 and r.rcode() == dns.rcode.FORMERR and r.flags & dns.flags.QR
    assert r.flags & dns.flags.RD
    # two questions is a format error too
    query = dns.message.make_query("www.rais.test", "A")
    query.question.append(dns.message.make_query("v6.rais.test", "A").question[0])
    [reply] = await raw_udp(server, [query.to_wire()], 1)
    assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR


async def test_silence_for_garbage_without_a_header_and_for_responses(
    server: DnsServer,
) -> None:
    valid = dns.message.make_query("www.rais.test", "A")
    response = dns.message.make_response(valid).to_wire()
    # the only reply is to the valid query sent after the garbage
    replies = await raw_udp(server, [b"\x01\x02\x03", b"\x00" * 11, response, valid.to_wire()], 1)
    assert dns.message.from_wire(replies[0]).id == valid.id
    assert server.counters.queries == 4 and server.counters.dropped == 3


async def test_notimp_for_other_opcodes(server: DnsServer) -> None:
    query = dns.message.make_query("www.rais.test", "A")
    query.set_opcode(dns.opcode.STATUS)
    r = await dns.asyncquery.udp(query, LOCAL, timeout=5, port=server.port)
    assert r.rcode() == dns.rcode.NOTIMP and r.opcode() == dns.opcode.STATUS
    notify = dns.message.make_query("rais.test", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    r = await dns.asyncquery.tcp(notify, LOCAL, timeout=5, port=server.port)
    assert r.rcode() == dns.rcode.NOTIMP
    # an opcode we do not implement, with a body that does not parse either
    [reply] = await raw_udp(server, [header(7, 0x7 << 11) + b"\xff"], 1)
    assert dns.message.from_wire(reply).rcode() == dns.rcode.NOTIMP


async def test_zones_are_read_per_query_and_failure_is_servfail(
    server: DnsServer, zones: Zones
) -> None:
    zones.zones = [rais_zone(serial=99)]
    r = await ask(server, "rais.test", "SOA")
    assert r.answer[0][0].serial == 99
    assert (await ask(server, "www.inner.rais.test")).rcode() == dns.rcode.NXDOMAIN
    zones.fail = True
    r = await ask(server, "www.rais.test")
    assert r.rcode() == dns.rcode.SERVFAIL and not r.answer


async def test_tcp_pipelining_and_counters(server: DnsServer) -> None:
    reader, writer = await asyncio.open_connection(LOCAL, server.port)
    try:
        queries = [dns.message.make_query(n, "A") for n in ("www.rais.test", "nope.rais.test")]
        for q in queries:
            wire = q.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        replies = []
        for _ in queries:
            size = int.from_bytes(await reader.readexactly(2), "big")
            replies.append(dns.message.from_wire(await reader.readexactly(size)))
        assert [(r.id, r.rcode()) for r in replies] == [
            (queries[0].id, dns.rcode.NOERROR), (queries[1].id, dns.rcode.NXDOMAIN)
        ]  # fmt: skip
    finally:
        writer.close()
        await writer.wait_closed()
    await ask(server, "example.com")
    assert server.counters.queries == 3
    assert server.counters.answers == {"NOERROR": 1, "NXDOMAIN": 1, "REFUSED": 1}


async def test_close_drops_open_tcp_connections(zones: Zones) -> None:
    srv = DnsServer((LOCAL, 0), zones, tcp_idle_timeout=60)
    await srv.start()
    reader, writer = await asyncio.open_connection(LOCAL, srv.port)
    try:
        await srv.close()
        assert await reader.read() == b""
    finally:
        writer.close()
        await writer.wait_closed()


async def test_port_before_start_and_bad_payload(zones: Zones) -> None:
    with pytest.raises(RuntimeError):
        _ = DnsServer((LOCAL, 0), zones).port
    with pytest.raises(ValueError):
        DnsServer((LOCAL, 0), zones, max_udp_payload=100)


@pytest.mark.parametrize(
    "kw",
    [{"origin": N("rais.test", None)}, {"serial": 2**32}, {"ttl": -1}, {"negative_ttl": 2**31},
     {"ns": ()}, {"ns": (N("ns1", None),)}, {"names": {N("www.example.com."): ()}}],
)  # fmt: skip
def test_zone_data_validation(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(rais_zone(), **kw)


def test_zone_text_round_trips() -> None:
    zone = rais_zone()
    text = zone_text(zone)
    soa = "@ 5 IN SOA ns1 hostmaster 2024010101 300 60 86400 3"
    assert text.startswith(f"$ORIGIN rais.test.\n{soa}\n")
    parsed = dns.zone.from_text(text, relativize=False, check_origin=True)
    records = zone.records()
    assert len(records) == sum(len(node.rdatasets) for node in parsed.nodes.values())
    for rrset in records:
        found = parsed.get_rrset(rrset.name, rrset.rdtype)
        assert found == rrset and found is not None and found.ttl == rrset.ttl
    assert "empty" not in text


async def test_zone_text_passes_named_checkzone(tmp_path: Path) -> None:
    checkzone = shutil.which("named-checkzone")
    if checkzone is None:
        pytest.skip("named-checkzone (bind9-utils) is not installed")
    base = rais_zone()
    glue = {NS[0]: WWW[:1], NS[1]: WWW[1:]}  # in-zone NS targets need addresses
    path = tmp_path / "rais.test.zone"
    path.write_text(zone_text(dataclasses.replace(base, names={**base.names, **glue})))
    proc = await asyncio.create_subprocess_exec(
        checkzone, "rais.test", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert b"loaded serial 2024010101" in out, out.decode()


# --- the real dig -------------------------------------------------------------


def dig_path() -> str:
    path = shutil.which("dig")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dig is required when CI=true (Debian: bind9-dnsutils)")
        pytest.skip("dig is not installed (Debian: bind9-dnsutils)")
    return path


async def dig(srv: DnsServer, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        dig_path(), f"@{LOCAL}", "-p", str(srv.port), "+tries=1", "+time=5", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_dig_short_answers(server: DnsServer) -> None:
    assert (await dig(server, "www.rais.test", "A", "+short")).split() in (
        ["192.0.2.1", "192.0.2.2"],
        ["192.0.2.2", "192.0.2.1"],
    )
    assert (await dig(server, "www.rais.test", "AAAA", "+short")).split() == ["2001:db8::1"]
    out = await dig(server, "rais.test", "SOA", "+short")
    soa = "ns1.rais.test. hostmaster.rais.test. 2024010101 300 60 86400 3"
    assert out.split() == soa.split(" ")


async def test_dig_falls_back_to_tcp_for_100_addresses(server: DnsServer) -> None:
    out = await dig(server, "big.rais.test", "A")
    assert "Truncated, retrying in TCP mode" in out
    assert "ANSWER: 100," in out and "flags: qr aa" in out
    short = await dig(server, "big.rais.test", "A", "+short")
    assert sorted(short.split()) == sorted(str(a) for a in BIG)
    ignored = await dig(server, "big.rais.test", "A", "+ignore", "+noedns")
    assert "flags: qr aa tc" in ignored and "ANSWER: 0," in ignored


async def test_dig_status_lines(server: DnsServer) -> None:
    assert "status: NXDOMAIN" in await dig(server, "nope.rais.test", "A")
    nodata = await dig(server, "v6.rais.test", "A")
    assert "status: NOERROR" in nodata and "ANSWER: 0, AUTHORITY: 1" in nodata
    assert "status: REFUSED" in await dig(server, "example.com", "A")
    edns = await dig(server, "www.rais.test", "A", "+bufsize=4096", "+tcp")
    assert "EDNS: version: 0" in edns and "udp: 1232" in edns


def test_missing_dig_skips_locally_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        dig_path()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        dig_path()
