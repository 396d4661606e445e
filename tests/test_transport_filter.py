"""The transport's source filters (rais.drivers.sockfilter, rais.drivers.receive):
in unicast mode only the configured peers are heard; in multicast mode the
sources heard authentic are read in full from one socket and every other
source at a bounded rate from another, so a flood from a host without the key
neither crowds out the members' datagrams nor costs unbounded CPU.

On the loopback addresses of this host (no root needed): IPv4 multicast works
on ``lo`` (see tests/test_transport.py)."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from collections.abc import AsyncIterator

import pytest

from rais.base.ip import IP
from rais.drivers import sockfilter
from rais.drivers.receive import STRANGER_BATCH, STRANGER_PAUSE
from rais.drivers.transport import UdpTransport


def ip(text: str) -> IP:
    return ipaddress.ip_address(text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        port: int = s.getsockname()[1]
        return port


class Heard:
    """A receive callback: a datagram starting with b"ok" is authentic."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.changed = asyncio.Event()

    def __call__(self, data: bytes, via: int) -> bool:
        self.items.append(data)
        self.changed.set()
        return data.startswith(b"ok")

    async def until(self, data: bytes) -> None:
        async def wait() -> None:
            while data not in self.items:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), 2.0)


def sender(source: str, multicast: bool = False) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    if multicast:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    return s


@pytest.fixture
async def closing() -> AsyncIterator[list[UdpTransport | socket.socket]]:
    made: list[UdpTransport | socket.socket] = []
    yield made
    for t in made:
        t.close()


def test_programs_match_whole_addresses_of_their_family() -> None:
    v4 = sockfilter.program([ip("192.0.2.1"), ip("2001:db8::1")], socket.AF_INET)
    v6 = sockfilter.program([ip("192.0.2.1"), ip("2001:db8::1")], socket.AF_INET6)
    assert len(v4) == 8 * (2 + 1 + 1)  # load, compare, keep; then drop
    assert len(v6) == 8 * (8 + 1 + 1)  # four words, each loaded and compared
    with pytest.raises(ValueError):
        sockfilter.program([ip(f"10.{i // 256}.{i % 256}.1") for i in range(1500)], socket.AF_INET)


async def test_unicast_hears_only_its_peers(closing: list[UdpTransport | socket.socket]) -> None:
    port = free_port()
    t = UdpTransport((ip("127.0.0.1"),), ip("239.255.0.1"), port, peers=(ip("127.0.0.2"),))
    heard = Heard()
    await t.start(heard)
    peer, stranger = sender("127.0.0.2"), sender("127.0.0.3")
    closing += [t, peer, stranger]
    for n in range(20):
        stranger.sendto(b"junk-%d" % n, ("127.0.0.1", port))
    peer.sendto(b"flush", ("127.0.0.1", port))
    await heard.until(b"flush")
    assert heard.items == [b"flush"]
    assert t.counters["received"] == 1


async def test_ipv6_filters_by_the_whole_source(
    closing: list[UdpTransport | socket.socket],
) -> None:
    port = free_port()
    t = UdpTransport((ip("::1"),), ip("ff05::1"), port, peers=(ip("2001:db8::1"),))
    heard = Heard()
    await t.start(heard)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    closing += [t, s]
    s.sendto(b"from ::1, not a peer", ("::1", port))
    await asyncio.sleep(0.05)  # nothing may arrive: there is nothing to wait for
    assert heard.items == []
    sockfilter.attach(t._sockets[0], sockfilter.program([ip("::1")], socket.AF_INET6))
    s.sendto(b"flush", ("::1", port))
    await heard.until(b"flush")
    assert heard.items == [b"flush"]


async def test_multicast_members_in_full_strangers_bounded(
    closing: list[UdpTransport | socket.socket],
) -> None:
    port = free_port()
    group = ip(f"239.255.{secrets.randbelow(250)}.7")
    t = UdpTransport((ip("127.0.0.1"),), group, port)
    heard = Heard()
    await t.start(heard)
    member, flooder = sender("127.0.0.7", True), sender("127.0.0.9", True)
    closing += [t, member, flooder]
    # A new source is heard (on the stranger socket); authentic, it is trusted.
    member.sendto(b"ok-hello", (str(group), port))
    await heard.until(b"ok-hello")
    assert t.counters["sources_trusted"] == 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(3000):
        flooder.sendto(b"junk-%d" % n, (str(group), port))
        if n % 10 == 0:
            member.sendto(b"ok-%d" % n, (str(group), port))
        if n % 20 == 19:
            # In rounds the reader keeps up with: the budget is per time, not per wake-up.
            await asyncio.sleep(0.005)
    member.sendto(b"ok-flush", (str(group), port))
    await heard.until(b"ok-flush")
    elapsed = loop.time() - started
    members = [d for d in heard.items if d.startswith(b"ok-") and d != b"ok-hello"]
    junk = [d for d in heard.items if d.startswith(b"junk")]
    assert len(members) == 301, "a member's datagram was lost in the flood"
    assert len(members) == len(set(members)), "a member's datagram arrived twice"
    bound = STRANGER_BATCH * (elapsed / STRANGER_PAUSE + 2)
    assert 0 < len(junk) <= bound, (len(junk), bound)
    assert t.counters["sources_trusted"] == 1
