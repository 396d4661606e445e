"""The UDP transport (rais.drivers.transport) and the in-memory fake network.

Where each part runs:

* Unicast mode, IPv4: on the loopback addresses 127.0.0.X of this host (no
  root needed), on a free port.
* IPv4 multicast on ``lo``: works without root (``lo`` has no MULTICAST flag,
  but with ``IP_MULTICAST_IF`` set to it the join and the send both work). On
  ``lo`` every datagram is looped back whatever ``IP_MULTICAST_LOOP`` says, so
  ``loop_back=False`` can only be checked in a namespace.
* IPv6 multicast does not work on ``lo`` (no ff00::/8 route there: sendto fails
  with ENETUNREACH), so it runs only in the namespace lab below, as do two
  control networks, ``loop_back`` and IPv6 unicast with link-local addresses.

The namespace lab (tests marked ``e2e``, root only; a skip becomes a failure
when CI=true and root): a switch namespace with bridges br0 (net0:
198.51.100.0/24, 2001:db8:100::/64) and br1 (net1: 192.0.2.0/24,
2001:db8:192::/64, plus link-local fe80::1:N), host namespaces a and b on both
networks and c on net1 only. The transports are created in the test's own
thread and event loop with the thread switched into a host's namespace while
``start()`` opens its sockets; a socket stays in the namespace it was made in.
Everything is deleted in the fixture's teardown, also after a failure.

No sleeps: every wait is an ``asyncio.wait_for`` with a 1 s timeout. "Exactly
once" is checked by sending a flush round after the expected datagrams have
arrived: a late duplicate on the same path would arrive before the flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from rais.base.ip import IP
from rais.drivers.base import Transport
from rais.drivers.fake_transport import FakeNetwork, FakeTransport
from rais.drivers.transport import (
    IP_MULTICAST_ALL,
    IPV6_MULTICAST_ALL,
    MAX_DATAGRAM,
    UdpTransport,
    interface_indexes,
)

TIMEOUT = 1.0

Item = tuple[bytes, int]


def ip(text: str) -> IP:
    return ipaddress.ip_address(text)


class Inbox:
    """A receive callback that records (data, via) and can be awaited."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self._changed = asyncio.Event()

    def __call__(self, data: bytes, via: int) -> None:
        self.items.append((data, via))
        self._changed.set()

    def counts(self) -> Counter[Item]:
        return Counter(self.items)

    async def wait_for(self, expected: Counter[Item]) -> None:
        """Until each expected (data, via) has arrived at least that often."""

        async def until() -> None:
            while not self.counts() >= expected:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(until(), TIMEOUT)
        except TimeoutError:
            pytest.fail(f"timed out: received {self.items}, expected at least {dict(expected)}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def closing() -> AsyncIterator[list[UdpTransport]]:
    """Transports appended here are closed at the end of the test."""
    made: list[UdpTransport] = []
    yield made
    for t in made:
        t.close()


# ---------------------------------------------------------------- unicast


async def test_unicast_three_hosts_on_loopback(closing: list[UdpTransport]) -> None:
    port = free_port()
    hosts = [ip(f"127.0.0.{n}") for n in (1, 2, 3)]
    inboxes = [Inbox() for _ in hosts]
    ts = [UdpTransport((h,), ip("239.255.0.1"), port, peers=tuple(set(hosts) - {h})) for h in hosts]
    closing.extend(ts)
    for t, inbox in zip(ts, inboxes, strict=True):
        await t.start(inbox)

    for n, t in enumerate(ts):
        t.send(f"from-{n}".encode(), (0,))
    expected = [
        Counter({(f"from-{m}".encode(), 0): 1 for m in range(3) if m != n}) for n in range(3)
    ]
    for inbox, exp in zip(inboxes, expected, strict=True):
        await inbox.wait_for(exp)
    for n, t in enumerate(ts):
        t.send(f"flush-{n}".encode(), (0,))
    for n, (inbox, exp) in enumerate(zip(inboxes, expected, strict=True)):
        exp.update({(f"flush-{m}".encode(), 0): 1 for m in range(3) if m != n})
        await inbox.wait_for(exp)
        assert inbox.counts() == exp, f"host {n}: not exactly once, or its own datagram"
    for t in ts:
        assert t.counters == Counter({"sent": 4, "received": 4})


async def test_a_socket_lost_under_the_transport_is_reported_once(
    closing: list[UdpTransport],
) -> None:
    """A socket lost other than by ``UdpTransport.close()`` (here: ``lost``, what
    a read that fails with EBADF calls) is reported through ``on_lost`` once;
    ``close()`` itself reports nothing."""
    port = free_port()
    t = UdpTransport((ip("127.0.0.1"),), ip("239.255.0.1"), port, peers=(ip("127.0.0.2"),))
    quiet = UdpTransport((ip("127.0.0.3"),), ip("239.255.0.1"), port, peers=(ip("127.0.0.2"),))
    closing += [t, quiet]
    lost: list[str] = []
    unexpected: list[str] = []
    await t.start(Inbox(), lost.append)
    await quiet.start(Inbox(), unexpected.append)
    t.lost(0, OSError(9, "Bad file descriptor"))
    t.lost(0, OSError(9, "Bad file descriptor"))
    for _ in range(100):
        if lost:
            break
        await asyncio.sleep(0.01)
    assert len(lost) == 1 and "closed" in lost[0], lost
    assert t.counters["sockets_lost"] >= 1
    quiet.close()
    await asyncio.sleep(0.05)
    assert unexpected == []


async def test_unicast_via_is_the_index_of_the_receiving_socket(
    closing: list[UdpTransport],
) -> None:
    port = free_port()
    a_ctrl = (ip("127.0.0.1"), ip("127.0.0.11"))
    b_ctrl = (ip("127.0.0.2"), ip("127.0.0.12"))
    a = UdpTransport(a_ctrl, ip("239.255.0.1"), port, peers=b_ctrl)
    b = UdpTransport(b_ctrl, ip("239.255.0.1"), port, peers=a_ctrl)
    closing += [a, b]
    ia, ib = Inbox(), Inbox()
    await a.start(ia)
    await b.start(ib)

    # Through the socket of via 1 only: to every peer, arriving on both of b's sockets.
    a.send(b"x", (1,))
    await ib.wait_for(Counter({(b"x", 0): 1, (b"x", 1): 1}))
    # Through both sockets: two copies per peer address.
    b.send(b"y", (0, 1))
    await ia.wait_for(Counter({(b"y", 0): 2, (b"y", 1): 2}))
    a.send(b"flush", (0,))
    await ib.wait_for(Counter({(b"flush", 0): 1, (b"flush", 1): 1}))
    assert ib.counts() == Counter({(b"x", 0): 1, (b"x", 1): 1, (b"flush", 0): 1, (b"flush", 1): 1})
    assert ia.counts() == Counter({(b"y", 0): 2, (b"y", 1): 2})
    assert a.counters["sent"] == 4 and b.counters["sent"] == 4


async def test_oversized_datagrams_are_dropped_and_counted(closing: list[UdpTransport]) -> None:
    port = free_port()
    t = UdpTransport((ip("127.0.0.1"),), ip("239.255.0.1"), port, peers=(ip("127.0.0.2"),))
    closing.append(t)
    inbox = Inbox()
    await t.start(inbox)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind(("127.0.0.2", 0))
        raw.sendto(b"b" * (MAX_DATAGRAM + 1), ("127.0.0.1", port))
        raw.sendto(b"a" * MAX_DATAGRAM, ("127.0.0.1", port))
        await inbox.wait_for(Counter({(b"a" * MAX_DATAGRAM, 0): 1}))
    assert inbox.items == [(b"a" * MAX_DATAGRAM, 0)]
    assert t.counters["oversized_dropped"] == 1
    assert t.counters["received"] == 1

    t.send(b"c" * (MAX_DATAGRAM + 1), (0,))
    assert t.counters["send_oversized"] == 1
    assert t.counters["sent"] == 0


async def test_send_errors_are_counted_never_raised(closing: list[UdpTransport]) -> None:
    port = free_port()
    # 127.0.0.9: nobody listens (port unreachable, silently); 255.255.255.255:
    # refused at once (EACCES without SO_BROADCAST), nothing leaves the host.
    peers = (ip("127.0.0.9"), ip("255.255.255.255"))
    t = UdpTransport((ip("127.0.0.1"),), ip("239.255.0.1"), port, peers=peers)
    closing.append(t)
    t.send(b"early", (0,))
    assert t.counters["send_not_open"] == 1
    await t.start(Inbox())
    for _ in range(3):
        t.send(b"hello", (0,))
    t.send(b"hello", (5,))  # no such control address
    assert t.counters["sent"] == 3
    assert t.counters["send_errors"] == 3 + 1
    t.close()
    t.send(b"late", (0,))
    assert t.counters["send_not_open"] == 2


async def test_close_is_idempotent_and_releases_the_port(closing: list[UdpTransport]) -> None:
    port = free_port()
    ctrl, peers = (ip("127.0.0.1"),), (ip("127.0.0.2"),)
    t = UdpTransport(ctrl, ip("239.255.0.1"), port, peers=peers)
    t.close()  # before start: nothing to close
    t = UdpTransport(ctrl, ip("239.255.0.1"), port, peers=peers)
    await t.start(Inbox())
    t.close()
    t.close()
    again = UdpTransport(ctrl, ip("239.255.0.1"), port, peers=peers)
    closing.append(again)
    await again.start(Inbox())  # the port is free again
    with pytest.raises(RuntimeError):
        await t.start(Inbox())


async def test_bind_conflict_raises_oserror_naming_the_address(
    closing: list[UdpTransport],
) -> None:
    port = free_port()
    ctrl = (ip("127.0.0.1"), ip("127.0.0.21"))
    first = UdpTransport(ctrl[1:], ip("239.255.0.1"), port, peers=(ip("127.0.0.2"),))
    closing.append(first)
    await first.start(Inbox())
    second = UdpTransport(ctrl, ip("239.255.0.1"), port, peers=(ip("127.0.0.2"),))
    closing.append(second)
    with pytest.raises(OSError, match=rf"127\.0\.0\.21:{port}") as info:
        await second.start(Inbox())
    assert info.value.errno == 98  # EADDRINUSE
    # What the failed start had opened (127.0.0.1:port) is closed again.
    third = UdpTransport(ctrl[:1], ip("239.255.0.1"), port, peers=(ip("127.0.0.2"),))
    closing.append(third)
    await third.start(Inbox())


async def test_unknown_control_address_in_multicast_mode_is_named() -> None:
    # 198.51.100.77 is on no interface here; the lookup fails before any socket.
    t = UdpTransport((ip("198.51.100.77"),), ip("239.255.0.1"), free_port())
    with pytest.raises(OSError, match=r"198\.51\.100\.77 is not on any interface"):
        await t.start(Inbox())
    t.close()


async def test_loopback_addresses_map_to_lo() -> None:
    lo = socket.if_nametoindex("lo")
    found = await interface_indexes([ip("127.0.0.1"), ip("127.0.0.2"), ip("::1")])
    assert found == {ip("127.0.0.1"): lo, ip("127.0.0.2"): lo, ip("::1"): lo}


# ----------------------------------------------------- IPv4 multicast on lo


async def test_ipv4_multicast_on_loopback(closing: list[UdpTransport]) -> None:
    port = free_port()
    x = secrets.randbelow(250)
    group, other = ip(f"239.255.{x}.1"), ip(f"239.255.{x}.2")
    lo = (ip("127.0.0.1"),)
    a = UdpTransport(lo, group, port, loop_back=True, ttl=1)
    b = UdpTransport((ip("127.0.0.2"),), group, port, loop_back=True)
    c = UdpTransport(lo, other, port, loop_back=True)  # another group, same port
    closing += [a, b, c]
    ia, ib, ic = Inbox(), Inbox(), Inbox()
    for t, inbox in ((a, ia), (b, ib), (c, ic)):
        await t.start(inbox)

    # The sockets are set up as documented.
    recv, send = a._sockets[0], a._send_socks[0]
    assert recv.getsockname() == (str(group), port)
    assert recv.getsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL) == 0
    assert send.getsockname()[0] == "127.0.0.1"
    assert send.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
    assert send.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 1

    a.send(b"hello", (0,))
    b.send(b"world", (0,))
    expected = Counter({(b"hello", 0): 1, (b"world", 0): 1})  # loop_back: own ones too
    await ia.wait_for(expected)
    await ib.wait_for(expected)
    c.send(b"flush-c", (0,))
    a.send(b"flush-a", (0,))
    await ic.wait_for(Counter({(b"flush-c", 0): 1}))
    await ia.wait_for(Counter({(b"flush-a", 0): 1}))
    assert ic.items == [(b"flush-c", 0)], "the other group's socket saw this group"
    await ib.wait_for(Counter({(b"flush-a", 0): 1}))
    assert ia.counts() == expected + Counter({(b"flush-a", 0): 1})
    assert ib.counts() == expected + Counter({(b"flush-a", 0): 1})
    assert a.counters["sent"] == 2 and a.counters["send_errors"] == 0


# ------------------------------------------------------ the namespace lab


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

NETS = {0: ("198.51.100.", "2001:db8:100::"), 1: ("192.0.2.", "2001:db8:192::")}
HOSTS = {"a": (1, (0, 1)), "b": (2, (0, 1)), "c": (3, (1,))}
"""Host namespace: (host number, control networks)."""


def require_netns() -> None:
    """Skip unless root with iproute2; with CI=true as root, fail instead."""
    problem = None
    if os.geteuid() != 0:
        problem = "needs root to create network namespaces"
    elif shutil.which("ip") is None:
        problem = "needs iproute2's ip command"
    if problem is None:
        return
    if os.environ.get("CI") == "true" and os.geteuid() == 0:
        pytest.fail(f"e2e test may not be skipped in CI as root: {problem}")
    pytest.skip(problem)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _ip(*argv: str) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


class Lab:
    def __init__(self) -> None:
        tag = f"rais-t-{os.getpid()}-{secrets.token_hex(2)}"
        self.ns = {name: f"{tag}-{name}" for name in ("sw", *HOSTS)}
        self.made: list[str] = []

    def addr(self, host: str, net: int, version: int) -> IP:
        n = HOSTS[host][0]
        return ip(NETS[net][0] + str(n) if version == 4 else NETS[net][1] + str(n))

    def link_local(self, host: str) -> IP:
        """fe80::1:N on the host's net1."""
        return ip(f"fe80::1:{HOSTS[host][0]}")

    def control(self, host: str, version: int) -> tuple[IP, ...]:
        return tuple(self.addr(host, net, version) for net in HOSTS[host][1])

    def build(self) -> None:
        for ns in self.ns.values():
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        sw = self.ns["sw"]
        for net in NETS:
            _ip("-n", sw, "link", "add", f"br{net}", "type", "bridge", "mcast_snooping", "0")
            _ip("-n", sw, "link", "set", f"br{net}", "up")
        for host, (_, nets) in HOSTS.items():
            ns = self.ns[host]
            for net in nets:
                dev, port = f"net{net}", f"{host}{net}"
                _ip("link", "add", dev, "netns", ns, "type", "veth", "peer", port, "netns", sw)
                _ip("-n", sw, "link", "set", port, "master", f"br{net}", "up")
                _ip("-n", ns, "addr", "add", f"{self.addr(host, net, 4)}/24", "dev", dev)
                _ip("-n", ns, "addr", "add", f"{self.addr(host, net, 6)}/64", "dev", dev, "nodad")
                if net == 1:
                    _ip("-n", ns, "addr", "add", f"{self.link_local(host)}/64", "dev", dev, "nodad")
                _ip("-n", ns, "link", "set", dev, "up")

    def close(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.made.clear()

    @contextlib.contextmanager
    def inside(self, host: str) -> Iterator[None]:
        """The calling thread in the host's namespace for the body; sockets
        made meanwhile stay in that namespace."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/run/netns/{self.ns[host]}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    async def start(self, host: str, transport: UdpTransport, inbox: Inbox) -> None:
        with self.inside(host):
            await transport.start(inbox)


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_netns()
    net = Lab()
    try:
        net.build()
        yield net
    finally:
        net.close()


def _in(*pairs: tuple[bytes, int], times: int = 1) -> Counter[Item]:
    return Counter({p: times for p in pairs})


@pytest.mark.e2e
@pytest.mark.parametrize("group", ["239.255.74.1", "ff15::74:1", "ff02::74:1"])
async def test_multicast_on_two_networks_in_netns(
    lab: Lab, group: str, closing: list[UdpTransport]
) -> None:
    """a and b are on net0 and net1, c only on net1; b also runs another group
    on the same port. Each via goes out of its own interface only, each host
    joined on every control interface, and loop_back=False: no own datagrams."""
    g = ip(group)
    v = g.version
    other = ip(group[:-1] + "2")
    port = 7401
    a = UdpTransport(lab.control("a", v), g, port)
    b = UdpTransport(lab.control("b", v), g, port)
    c = UdpTransport(lab.control("c", v), g, port)
    b_other = UdpTransport(lab.control("b", v), other, port)
    closing += [a, b, c, b_other]
    ia, ib, ic, io = Inbox(), Inbox(), Inbox(), Inbox()
    await lab.start("a", a, ia)
    await lab.start("b", b, ib)
    await lab.start("c", c, ic)
    await lab.start("b", b_other, io)

    a.send(b"v0", (0,))  # net0: b only
    a.send(b"v1", (1,))  # net1: b and c
    a.send(b"v01", (0, 1))  # both: b twice, c once
    b.send(b"end-b", (0, 1))
    c.send(b"end-c", (0,))  # c's via 0 is net1
    want_b = _in((b"v0", 0), (b"v1", 0), (b"end-c", 0)) + _in((b"v01", 0), times=2)
    want_c = _in((b"v1", 0), (b"v01", 0), (b"end-b", 0))
    want_a = _in((b"end-b", 0), times=2) + _in((b"end-c", 0))
    await ib.wait_for(want_b)
    await ic.wait_for(want_c)
    await ia.wait_for(want_a)

    a.send(b"flush", (0, 1))
    b.send(b"flush", (1,))
    want_b += _in((b"flush", 0), times=2)
    want_c += _in((b"flush", 0), times=2)
    want_a += _in((b"flush", 0))
    await ib.wait_for(want_b)
    await ic.wait_for(want_c)
    await ia.wait_for(want_a)
    assert ib.counts() == want_b
    assert ic.counts() == want_c
    assert ia.counts() == want_a, "a heard itself with loop_back=False"
    assert io.items == [], "a socket of another group on the same port saw this group"
    assert a.counters["sent"] == 6 and a.counters["send_errors"] == 0
    assert b.counters["received"] == sum(want_b.values())
    if v == 6:
        assert a._sockets[0].getsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL) == 0
        assert a._send_socks[1].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS) == 1


@pytest.mark.e2e
@pytest.mark.parametrize("group", ["239.255.74.1", "ff15::74:1"])
async def test_multicast_loop_back_in_netns(
    lab: Lab, group: str, closing: list[UdpTransport]
) -> None:
    g = ip(group)
    a = UdpTransport(lab.control("a", g.version), g, 7401, loop_back=True)
    b = UdpTransport(lab.control("b", g.version), g, 7401)
    closing += [a, b]
    ia, ib = Inbox(), Inbox()
    await lab.start("a", a, ia)
    await lab.start("b", b, ib)
    a.send(b"me", (0, 1))
    await ib.wait_for(_in((b"me", 0), times=2))
    await ia.wait_for(_in((b"me", 0), times=2))  # looped back on each interface
    b.send(b"flush", (0,))
    await ia.wait_for(_in((b"me", 0), times=2) + _in((b"flush", 0)))
    assert ia.counts() == _in((b"me", 0), times=2) + _in((b"flush", 0))


@pytest.mark.e2e
async def test_ipv6_unicast_with_link_local_peers_in_netns(
    lab: Lab, closing: list[UdpTransport]
) -> None:
    """Global control addresses reach global peers, link-local ones reach
    link-local peers on their own interface; an unroutable peer is counted."""
    port = 7402
    ctrl = {
        "a": (lab.addr("a", 0, 6), lab.link_local("a")),
        "b": (lab.addr("b", 0, 6), lab.link_local("b")),
        "c": (lab.link_local("c"),),
    }
    unroutable = ip("2001:db8:ffff::9")
    peers: dict[str, tuple[IP, ...]] = {
        h: tuple(p for o in ctrl if o != h for p in ctrl[o]) for h in ctrl
    }
    peers["a"] += (unroutable,)
    ts = {h: UdpTransport(ctrl[h], ip("ff15::1"), port, peers=peers[h]) for h in ctrl}
    closing.extend(ts.values())
    boxes = {h: Inbox() for h in ts}
    for h, t in ts.items():
        await lab.start(h, t, boxes[h])

    ts["a"].send(b"g", (0,))  # to b's global address, and to the unroutable one
    ts["a"].send(b"l", (1,))  # to b's and c's link-local addresses
    ts["b"].send(b"end-b", (0, 1))
    ts["c"].send(b"end-c", (0,))
    want = {
        "a": _in((b"end-b", 0), (b"end-b", 1), (b"end-c", 1)),
        "b": _in((b"g", 0), (b"l", 1), (b"end-c", 1)),
        "c": _in((b"l", 0), (b"end-b", 0)),
    }
    for h in ts:
        await boxes[h].wait_for(want[h])
    ts["a"].send(b"flush", (0, 1))
    ts["b"].send(b"flush", (1,))
    want["a"] += _in((b"flush", 1))
    want["b"] += _in((b"flush", 0), (b"flush", 1))
    want["c"] += _in((b"flush", 0), times=2)
    for h in ts:
        await boxes[h].wait_for(want[h])
        assert boxes[h].counts() == want[h], h
    assert ts["a"].counters["send_errors"] == 2  # the unroutable peer, twice
    assert ts["a"].counters["sent"] == 3 + 3


# ------------------------------------------------------- the fake network


def _attach(net: FakeNetwork, *hosts: str) -> dict[str, tuple[FakeTransport, Inbox]]:
    return {h: (net.transport(h), Inbox()) for h in hosts}


async def test_fake_network_delivers_to_every_other_host_asynchronously() -> None:
    net = FakeNetwork()
    hosts = _attach(net, "h1", "h2", "h3")
    for t, inbox in hosts.values():
        await t.start(inbox)
    t1, i1 = hosts["h1"]
    t1.send(b"hi", (0,))
    assert all(not inbox.items for _, inbox in hosts.values()), "delivered synchronously"
    await hosts["h2"][1].wait_for(_in((b"hi", 0)))
    await hosts["h3"][1].wait_for(_in((b"hi", 0)))
    hosts["h2"][0].send(b"flush", (0,))
    await i1.wait_for(_in((b"flush", 0)))
    assert i1.items == [(b"flush", 0)]
    assert hosts["h3"][1].items == [(b"hi", 0), (b"flush", 0)]
    assert net.sent[0].sender == "h1" and net.sent[0].data == b"hi"
    assert {r for r, _ in net.sent[0].receivers} == {"h2", "h3"}
    assert t1.counters["sent"] == 1 and hosts["h3"][0].counters["received"] == 2
    assert net.errors == []


async def test_fake_network_vias() -> None:
    net = FakeNetwork()
    two, i2 = net.transport("two", vias=2), Inbox()
    one, i1 = net.transport("one"), Inbox()
    await two.start(i2)
    await one.start(i1)
    two.send(b"x", (0, 1))
    one.send(b"y", (0, 1))  # it has no via 1
    await i1.wait_for(_in((b"x", 0)))
    await i2.wait_for(_in((b"y", 0)))
    two.send(b"flush", (0,))
    await i1.wait_for(_in((b"flush", 0)))
    assert i1.items == [(b"x", 0), (b"flush", 0)]
    assert i2.items == [(b"y", 0)]
    assert one.counters["send_errors"] == 1


async def test_fake_network_partition_and_heal() -> None:
    net = FakeNetwork()
    hosts = _attach(net, "h1", "h2", "h3")
    for t, inbox in hosts.values():
        await t.start(inbox)
    (t1, i1), (t2, i2), (t3, i3) = hosts.values()

    net.partition({"h1"})
    t1.send(b"lost-1", (0,))
    t2.send(b"lost-2-for-h1", (0,))
    await i3.wait_for(_in((b"lost-2-for-h1", 0)))  # h2 and h3 still talk
    t3.send(b"flush", (0,))
    await i2.wait_for(_in((b"flush", 0)))
    assert i1.items == []
    assert i2.items == [(b"flush", 0)]
    assert net.sent[0].receivers == ()

    net.heal()
    t1.send(b"back", (0,))
    await i2.wait_for(_in((b"flush", 0), (b"back", 0)))
    await i3.wait_for(_in((b"back", 0)))
    t2.send(b"to-h1", (0,))
    await i1.wait_for(_in((b"to-h1", 0)))

    net.drop_all_from("h2")
    t2.send(b"dropped", (0,))
    t3.send(b"flush-2", (0,))
    await i1.wait_for(_in((b"flush-2", 0)))
    assert (b"dropped", 0) not in i1.items
    net.heal()


async def test_fake_network_partition_of_one_network_and_closed_receivers() -> None:
    net = FakeNetwork()
    a, ia = net.transport("a", vias=2), Inbox()
    b, ib = net.transport("b", vias=2), Inbox()
    await a.start(ia)
    await b.start(ib)
    net.partition({"a"}, via=1)
    a.send(b"x", (0, 1))
    await ib.wait_for(_in((b"x", 0)))
    a.send(b"flush", (0,))
    await ib.wait_for(_in((b"flush", 0)))
    assert ib.items == [(b"x", 0), (b"flush", 0)]

    # A datagram in flight to a receiver closed meanwhile is lost; a restart
    # gets a new transport for the same host.
    a.send(b"in-flight", (0,))
    b.close()
    b2, ib2 = net.transport("b", vias=2), Inbox()
    await b2.start(ib2)
    a.send(b"after", (0,))
    await ib2.wait_for(_in((b"after", 0)))
    assert (b"in-flight", 0) not in ib.items + ib2.items
    with pytest.raises(ValueError):
        net.transport("b")


async def test_fake_transport_callback_errors_are_collected() -> None:
    net = FakeNetwork()
    a, b = net.transport("a"), net.transport("b")
    got = asyncio.get_running_loop().create_future()

    def boom(data: bytes, via: int) -> None:
        got.set_result(data)
        raise ValueError("boom")

    await a.start(Inbox())
    await b.start(boom)
    a.send(b"x", (0,))
    assert await asyncio.wait_for(got, TIMEOUT) == b"x"
    assert [str(e) for e in net.errors] == ["boom"]
    assert b.counters["callback_errors"] == 1


def test_both_satisfy_the_transport_protocol() -> None:
    """Checked by mypy: both classes can be used where a Transport is expected."""
    udp = UdpTransport((ip("127.0.0.1"),), ip("239.255.0.1"), 7401)
    fake = FakeNetwork().transport("h1")
    transports: list[Transport] = [udp, fake]
    for t in transports:
        t.close()
