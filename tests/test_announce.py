"""Gratuitous ARP / unsolicited NA: frame builders (no root) and, in a
namespace lab, a client's neighbour entry following a moved address."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from netlab import IP, Lab, LabFactory, lab_fixture, wait_for  # noqa: F401
from pyroute2.netns import create_socket

from rais.drivers.announce import AnnounceError, LinkAnnouncer, garp_frames, unsolicited_na
from rais.drivers.base import Announcer
from rais.drivers.fake_addresses import FakeAnnouncer
from rais.drivers.netlink import NetlinkAddresses

MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
V4 = IPv4Address("192.0.2.100")
V6 = IPv6Address("2001:db8::100")
ETH_P_ALL = 0x0003


# -- frame builders -----------------------------------------------------------


def test_garp_request_and_reply_bytes() -> None:
    request, reply = garp_frames(MAC1, V4)
    # fmt: off
    assert request.hex(" ") == " ".join([
        "ff ff ff ff ff ff", "02 00 00 00 00 01", "08 06",  # Ethernet: broadcast, ARP
        "00 01", "08 00", "06", "04", "00 01",               # Ethernet/IPv4, request
        "02 00 00 00 00 01", "c0 00 02 64",                  # sender MAC, sender IP
        "00 00 00 00 00 00", "c0 00 02 64",                  # target MAC zero, target IP
        *["00"] * 18,                                        # padding to 60 bytes
    ])
    assert reply.hex(" ") == " ".join([
        "ff ff ff ff ff ff", "02 00 00 00 00 01", "08 06",
        "00 01", "08 00", "06", "04", "00 02",               # reply
        "02 00 00 00 00 01", "c0 00 02 64",
        "02 00 00 00 00 01", "c0 00 02 64",                  # target MAC = sender MAC
        *["00"] * 18,
    ])
    # fmt: on
    assert len(request) == len(reply) == 60


def test_unsolicited_na_bytes() -> None:
    message = unsolicited_na(MAC2, V6)
    # fmt: off
    assert message.hex(" ") == " ".join([
        "88", "00", "00 00",                                 # type 136, code 0, checksum (kernel)
        "20 00 00 00",                                       # R=0 S=0 O=1
        "20 01 0d b8 00 00 00 00 00 00 00 00 00 00 01 00",   # target 2001:db8::100
        "02 01 02 00 00 00 00 02",                           # target link-layer address option
    ])
    # fmt: on


def test_builders_reject_bad_mac() -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        garp_frames(b"\x00" * 5, V4)
    with pytest.raises(ValueError, match="6 bytes"):
        unsolicited_na(b"\x00" * 8, V6)


async def test_fake_announcer_records_loop_time() -> None:
    fake = FakeAnnouncer()
    announcer: Announcer = fake
    before = asyncio.get_running_loop().time()
    await announcer.announce("eth0", V4)
    await announcer.announce("eth0", V6)
    assert [(i, a) for i, a, _ in fake.calls] == [("eth0", V4), ("eth0", V6)]
    assert all(before <= t <= asyncio.get_running_loop().time() for _, _, t in fake.calls)
    assert fake.announced(V6) == [fake.calls[1][2]]
    fake.fail_next()
    with pytest.raises(AnnounceError):
        await announcer.announce("eth0", V4)
    assert len(fake.calls) == 2
    announcer.close()
    assert fake.closed


# -- end to end ----------------------------------------------------------------


@pytest.fixture
def net(make_lab: LabFactory) -> Lab:
    return make_lab(2, client=True)


@pytest.fixture
def announcer(net: Lab) -> Iterator[LinkAnnouncer]:
    a = LinkAnnouncer(netns=net.ns("h2"))
    yield a
    a.close()


async def _move(net: Lab, address: IP, prefixlen: int) -> None:
    """``address`` on h1, learnt by the client at h1's MAC, then moved to h2
    (removed on h1, added on h2) without announcing."""
    h1, h2 = NetlinkAddresses(net.ns("h1")), NetlinkAddresses(net.ns("h2"))
    try:
        await h1.add("eth0", address, prefixlen)
        assert net.reaches("c", address), f"client cannot reach {address} on h1"
        assert net.neigh("c", address) == net.mac("h1")
        await h1.remove("eth0", address, prefixlen)
        await h2.add("eth0", address, prefixlen)
    finally:
        h1.close()
        h2.close()


@pytest.mark.e2e
@pytest.mark.parametrize("address", [V4, V6], ids=["garp", "na"])
async def test_announce_moves_client_entry(net: Lab, announcer: LinkAnnouncer, address: IP) -> None:
    await _move(net, address, 24 if address.version == 4 else 64)
    assert net.neigh("c", address) == net.mac("h1")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await announcer.announce("eth0", address)
    sent = loop.time() - start
    h2_mac = net.mac("h2")
    mac, elapsed = await wait_for(
        lambda: net.neigh("c", address) == h2_mac, timeout=1.0, interval=0.005
    )
    assert mac, f"client still has {net.neigh('c', address)} for {address}, not h2 {h2_mac}"
    print(f"\n{address}: announce() {sent * 1e3:.2f} ms, client at h2 after {elapsed * 1e3:.1f} ms")


@pytest.mark.e2e
@pytest.mark.parametrize("address", [V4, V6], ids=["ipv4", "ipv6"])
async def test_without_announcement_client_keeps_old_mac(net: Lab, address: IP) -> None:
    """Negative control: moving the address alone tells the client nothing."""
    await _move(net, address, 24 if address.version == 4 else 64)
    h1_mac = net.mac("h1")
    changed, _ = await wait_for(lambda: net.neigh("c", address) != h1_mac, timeout=0.5)
    assert not changed
    assert net.neigh("c", address) == h1_mac


_IN_NAMESPACE = """
import asyncio, ipaddress, sys
from rais.drivers.announce import LinkAnnouncer
from rais.drivers.netlink import NetlinkAddresses

async def main() -> None:
    addresses, announcer = NetlinkAddresses(), LinkAnnouncer()
    for text in sys.argv[1:]:
        address = ipaddress.ip_address(text)
        await addresses.add("eth0", address, 24 if address.version == 4 else 64)
        await announcer.announce("eth0", address)
    addresses.close()
    announcer.close()

asyncio.run(main())
"""


@pytest.mark.e2e
async def test_drivers_without_netns_under_ip_netns_exec(net: Lab) -> None:
    """As the agent runs them: no ``netns`` argument, the process itself in the
    namespace (``ip netns exec``)."""
    h1, h2 = NetlinkAddresses(net.ns("h1")), NetlinkAddresses(net.ns("h2"))
    try:
        for address in (V4, V6):
            await h1.add("eth0", address, 24 if address.version == 4 else 64)
            assert net.reaches("c", address)
            await h1.remove("eth0", address, 24 if address.version == 4 else 64)
    finally:
        h1.close()
        h2.close()
    net.run("h2", sys.executable, "-c", _IN_NAMESPACE, str(V4), str(V6))
    assert {V4, V6} <= net.addresses("h2")
    assert net.neigh("c", V4) == net.neigh("c", V6) == net.mac("h2")


def _capture(net: Lab, host: str) -> socket.socket:
    sock: socket.socket = create_socket(
        netns=net.ns(host),
        family=socket.AF_PACKET,
        socket_type=socket.SOCK_RAW,
        proto=socket.htons(ETH_P_ALL),
        flags=0,
    )
    sock.bind(("eth0", ETH_P_ALL))
    sock.setblocking(False)
    return sock


async def _frames(sock: socket.socket, want: int, timeout: float = 1.0) -> list[bytes]:
    """Frames that are ARP or ICMPv6 NA, until ``want`` of them or ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found: list[bytes] = []
    while len(found) < want and (left := deadline - loop.time()) > 0:
        try:
            frame = await asyncio.wait_for(loop.sock_recv(sock, 4096), left)
        except TimeoutError:
            break
        ethertype = frame[12:14]
        if ethertype == b"\x08\x06" or (
            ethertype == b"\x86\xdd" and frame[20] == 58 and frame[54] == 136
        ):
            found.append(frame)
    return found


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.e2e
async def test_wire_format_as_received(net: Lab, announcer: LinkAnnouncer) -> None:
    """What the client's interface receives is exactly what the builders made;
    the NA has hop limit 255, goes to ff02::1 and has a valid checksum."""
    h2_mac = net.mac_bytes("h2")
    sock = _capture(net, "c")
    try:
        await announcer.announce("eth0", V4)
        assert await _frames(sock, 2) == garp_frames(h2_mac, V4)

        addresses = NetlinkAddresses(net.ns("h2"))
        await addresses.add("eth0", V6, 64)
        addresses.close()
        await announcer.announce("eth0", V6)
        (frame,) = await _frames(sock, 1)
    finally:
        sock.close()
    assert frame[0:6] == bytes.fromhex("333300000001") and frame[6:12] == h2_mac
    ipv6, icmp = frame[14:54], frame[54:]
    payload_len, next_header, hop_limit = struct.unpack("!HBB", ipv6[4:8])
    source, destination = ip_address(ipv6[8:24]), ip_address(ipv6[24:40])
    assert (next_header, hop_limit, str(destination)) == (58, 255, "ff02::1")
    assert payload_len == len(icmp)
    assert source in net.addresses("h2")
    assert icmp[:2] + b"\x00\x00" + icmp[4:] == unsolicited_na(h2_mac, V6)
    pseudo = ipv6[8:40] + struct.pack("!IxxxB", len(icmp), 58)
    assert _checksum(pseudo + icmp) == 0xFFFF


def _add_x0(net: Lab) -> None:
    """A second link in h2 (x0, its peer x1 also in h2), with an IPv6 source address."""
    net.ip("h2", "link", "add", "x0", "type", "veth", "peer", "name", "x1")
    net.ip("h2", "addr", "add", "2001:db8:5::1/64", "dev", "x0", "nodad")
    net.ip("h2", "link", "set", "x1", "up")
    net.ip("h2", "link", "set", "x0", "up")


@pytest.mark.e2e
async def test_sockets_cached_and_reopened(net: Lab, announcer: LinkAnnouncer) -> None:
    """One socket per (interface, family); a deleted and re-created interface
    gets a new one; close() drops them and a later call opens again."""
    _add_x0(net)
    await announcer.announce("x0", V4)
    await announcer.announce("x0", V6)
    links = dict(announcer._links)
    assert set(links) == {("x0", 4), ("x0", 6)}
    await announcer.announce("x0", V4)
    assert announcer._links[("x0", 4)] is links[("x0", 4)]

    net.ip("h2", "link", "del", "x0")
    with pytest.raises(AnnounceError, match="'x0'"):
        await announcer.announce("x0", V4)
    _add_x0(net)
    await announcer.announce("x0", V4)
    assert announcer._links[("x0", 4)] is not links[("x0", 4)]

    announcer.close()
    assert announcer._links == {}
    await announcer.announce("eth0", V4)


@pytest.mark.e2e
async def test_unknown_interface_and_namespace(net: Lab, announcer: LinkAnnouncer) -> None:
    for address in (V4, V6):
        with pytest.raises(AnnounceError, match=r"'nope0'.*not found"):
            await announcer.announce("nope0", address)
    with pytest.raises(AnnounceError, match="not Ethernet"):
        await announcer.announce("lo", V4)
    missing = LinkAnnouncer(netns=net.ns("missing"))
    with pytest.raises(AnnounceError, match=r"namespace.*not found"):
        await missing.announce("eth0", V4)
    missing.close()
