"""Datagrams that change nothing wait on a quiet socket (rais.drivers.quiet):
the kernel programs that sort them (rais.drivers.sockfilter.steady_program),
what wire.steady calls steady, and the transport reading them late with their
arrival times, before anything that woke it, without losing one when the
patterns change.

On the loopback addresses of this host (no root needed): IPv4 multicast works
on ``lo`` (see tests/test_transport.py)."""

from __future__ import annotations

import asyncio
import secrets
import socket

import pytest
from test_core_memo import recorded_run
from test_transport_filter import closing as closing
from test_transport_filter import free_port, ip

from rais.core import wire
from rais.core.inbox import without_peers
from rais.core.wire import Steady
from rais.drivers import sockfilter
from rais.drivers.quiet import CHANGES_BURST, CHANGES_PER_SECOND, Patterns
from rais.drivers.transport import UdpTransport


def test_steady_is_all_but_the_sequence_number_peers_and_hmac() -> None:
    _, got = recorded_run()
    last: dict[bytes, tuple[bytes, Steady]] = {}
    same = changed = 0
    for _, data, _ in got:
        st = wire.steady(data)
        if st is None:
            continue
        assert st.length == len(data)
        # What is left out: exactly 4 bytes of header (the seq), the PEERS
        # records and the 32-byte HMAC.
        kept = sum(len(piece) for _, piece in st.ranges)
        chunk = data[9 + len(st.sender) + 12 : -32]
        peers_records = len(chunk) - len(without_peers(chunk)) - 5
        assert kept == len(data) - 4 - peers_records - 32
        before = last.get(st.sender)
        if before is not None:
            old, old_st = before
            equal = without_peers(old[9 + 4 + 12 : -32]) == without_peers(chunk) and (
                old[: 9 + 4 + 4] == data[: 9 + 4 + 4]
            )
            assert (old_st == st) == (equal and len(old) == len(data))
            same += old_st == st
            changed += old_st != st
        last[st.sender] = (data, st)
    assert same > 5 * changed > 0  # steady state is mostly steady


def test_steady_is_none_but_for_one_version_2_datagram() -> None:
    _, got = recorded_run()
    data = got[-1][1]
    assert wire.steady(data) is not None
    assert wire.steady(data[:-1]) is None  # the chunk length no longer fits
    assert wire.steady(b"RS\x01" + data[3:]) is None  # version 1
    parts = data[: 9 + 4 + 9] + b"\x02" + data[9 + 4 + 10 :]  # part 0 of 2
    assert wire.steady(parts) is None
    assert wire.steady(b"") is None


def _receiver(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.setblocking(False)
    return s


def _got(s: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(s.recv(2000))
        except BlockingIOError:
            return out


@pytest.mark.parametrize("size", [3, 7, 64, 513, 1400])
def test_steady_programs_in_the_kernel(
    size: int, closing: list[UdpTransport | socket.socket]
) -> None:
    port = free_port()
    quiet, loud = _receiver(port), _receiver(free_port())
    member = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    member.bind(("127.0.0.7", 0))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.8", 0))
    closing += [quiet, loud, member, other]
    data = bytes(secrets.randbits(8) for _ in range(size))
    # The pattern leaves out a middle piece (it may be anything) when it can.
    cut = (size // 3, size // 3 + min(4, size // 3))
    pattern = (size, ((0, data[: cut[0]]), (cut[1], data[cut[1] :])))
    decoy = (size, ((0, bytes(size)),))
    keep = [sockfilter.pattern_block(p) for p in (decoy, pattern)]
    prog = sockfilter.steady_program([ip("127.0.0.7")], socket.AF_INET, keep)
    sockfilter.attach(quiet, prog)
    drop = [sockfilter.pattern_block(p, match=0) for p in (decoy, pattern)]
    sockfilter.attach(
        loud, sockfilter.steady_program([ip("127.0.0.7")], socket.AF_INET, drop, other=0xFFFF)
    )
    wild = bytearray(data)
    for i in range(*cut):
        wild[i] ^= 0xFF
    sent = [data, bytes(wild)]
    wrong = [data + b"x", data[:-1]]
    for pos in (0, size // 2, size - 1):
        if not cut[0] <= pos < cut[1]:
            flipped = bytearray(data)
            flipped[pos] ^= 0x01
            wrong.append(bytes(flipped))
    for d in sent + wrong:
        member.sendto(d, ("127.0.0.1", port))
        member.sendto(d, loud.getsockname())
        other.sendto(d, ("127.0.0.1", port))
        other.sendto(d, loud.getsockname())
    assert _got(quiet) == sent
    assert _got(loud) == [d for d in wrong if d]  # the member's others, not the stranger's


def test_patterns_beyond_one_program_are_left_out() -> None:
    big = sockfilter.pattern_block((1400, ((0, bytes(1400)),)))
    small = sockfilter.pattern_block((8, ((0, bytes(8)),)))
    prog = sockfilter.steady_program([ip("127.0.0.7")], socket.AF_INET, [small, *[big] * 6])
    assert len(prog) <= 8 * sockfilter.BPF_MAXINSNS
    assert prog.count(big) == 5 and small in prog  # the first ones, up to the limit


def _steady(data: bytes) -> Steady | None:
    """Test datagrams: b"ok" and a sender letter, a body, a 4-digit sequence number."""
    if not data.startswith(b"ok"):
        return None
    return Steady(data[2:3], len(data), ((0, data[:-4]),))


class Heard:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: list[tuple[str, bytes, float]] = []
        self.changed = asyncio.Event()

    def now(self, data: bytes, via: int) -> bool:
        self.items.append(("now", data, self.loop.time()))
        self.changed.set()
        return data.startswith(b"ok")

    def late(self, data: bytes, via: int, at: float) -> bool:
        self.items.append(("late", data, at))
        return data.startswith(b"ok")

    def seqs(self, how: str | None = None) -> list[bytes]:
        return [d[-4:] for h, d, _ in self.items if how is None or h == how]

    async def until(self, data: bytes) -> None:
        async def wait() -> None:
            while data not in (d for _, d, _ in self.items):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), 2.0)


async def _group(
    closing: list[UdpTransport | socket.socket],
) -> tuple[UdpTransport, Heard, socket.socket, tuple[str, int]]:
    port = free_port()
    group = ip(f"239.255.{secrets.randbelow(250)}.9")
    t = UdpTransport((ip("127.0.0.1"),), group, port, steady=_steady)
    heard = Heard(asyncio.get_running_loop())
    await t.start(heard.now, None, heard.late)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.7", 0))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    closing += [t, s]
    return t, heard, s, (str(group), port)


async def test_steady_datagrams_wait_with_their_arrival_times(
    closing: list[UdpTransport | socket.socket],
) -> None:
    t, heard, s, to = await _group(closing)
    loop = asyncio.get_running_loop()
    body = b"okA" + b"x" * 300
    sent_at = []
    for n in range(6):
        sent_at.append(loop.time())
        s.sendto(body + b"%04d" % n, to)
        await asyncio.sleep(0.02)
    # The first is a new source's, the second sets the pattern: both at once.
    assert heard.seqs() == [b"0000", b"0001"]
    assert t.counters["steady_patterns"] == 1
    t.catch_up()
    assert heard.seqs("late") == [b"0002", b"0003", b"0004", b"0005"]
    for (_, _, at), sent in zip(heard.items[2:], sent_at[2:], strict=True):
        assert sent <= at < sent + 0.015  # the kernel's arrival time, not the reading's
    # A steady one is read before a datagram that changes something, at once.
    s.sendto(body + b"0006", to)
    s.sendto(b"okA" + b"y" * 300 + b"0007", to)
    await heard.until(b"okA" + b"y" * 300 + b"0007")
    assert heard.seqs()[-2:] == [b"0006", b"0007"]
    assert heard.items[-2][0] == "late" and heard.items[-1][0] == "now"
    # A datagram that fails authentication never sets a pattern.
    for n in range(3):
        s.sendto(b"no" + b"z" * 300 + b"%04d" % (10 + n), to)
    await heard.until(b"no" + b"z" * 300 + b"0012")
    assert t.counters["steady_patterns"] == 1


async def test_changing_patterns_lose_nothing(
    closing: list[UdpTransport | socket.socket],
) -> None:
    t, heard, s, to = await _group(closing)
    s.sendto(b"okA-first-0000", to)
    await heard.until(b"okA-first-0000")
    seq = 0
    for round_ in range(40):
        # Each body twice or more (a pattern is set), then the next one.
        for _ in range(2 + round_ % 3):
            seq += 1
            s.sendto(b"okA-%03d-" % round_ + b"w" * (round_ * 7) + b"%04d" % seq, to)
            if seq % 4 == 0:
                await asyncio.sleep(0.002)
                if seq % 8 == 0:
                    t.catch_up()
    s.sendto(b"okA-last-9999", to)
    await heard.until(b"okA-last-9999")
    t.catch_up()
    got = {int(x) for x in heard.seqs()}
    assert set(range(seq + 1)) | {9999} <= got
    # 40 changes asked for at once: the burst, and a few more as time passes.
    assert CHANGES_BURST <= t.counters["steady_patterns"] < 40
    assert len(heard.seqs("late")) >= 3  # repeats waited


async def test_a_stranger_matching_a_pattern_is_not_quiet(
    closing: list[UdpTransport | socket.socket],
) -> None:
    t, heard, s, to = await _group(closing)
    for n in range(2):
        s.sendto(b"okA-body-%04d" % n, to)
    await heard.until(b"okA-body-0001")
    assert t.counters["steady_patterns"] == 1
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.8", 0))
    other.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    other.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    closing.append(other)
    other.sendto(b"okA-body-0002", to)  # a copy, from a source never heard
    await heard.until(b"okA-body-0002")
    assert heard.items[-1][0] == "now"


async def test_unicast_steady_datagrams_wait_too(
    closing: list[UdpTransport | socket.socket],
) -> None:
    port = free_port()
    me, peer = ip("127.0.0.1"), ip("127.0.0.7")
    t = UdpTransport((me,), ip("239.255.0.1"), port, peers=(peer,), steady=_steady)
    heard = Heard(asyncio.get_running_loop())
    await t.start(heard.now, None, heard.late)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.7", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.8", 0))
    closing += [t, s, stranger]
    body = b"okA" + b"u" * 200
    for n in range(5):
        s.sendto(body + b"%04d" % n, ("127.0.0.1", port))
        await asyncio.sleep(0.01)
    assert heard.seqs() == [b"0000", b"0001"]
    stranger.sendto(body + b"0100", ("127.0.0.1", port))  # not a peer: dropped
    s.sendto(b"okA-changed-0005", ("127.0.0.1", port))
    await heard.until(b"okA-changed-0005")
    assert heard.seqs() == [b"0000", b"0001", b"0002", b"0003", b"0004", b"0005"]
    assert [h for h, _, _ in heard.items[2:]] == ["late", "late", "late", "now"]
    # Nobody else can bind the port, although it is shared within the transport.
    other = UdpTransport((me,), ip("239.255.0.1"), port, peers=(peer,), steady=_steady)
    with pytest.raises(OSError, match="cannot bind"):
        await other.start(heard.now, None, heard.late)
    plain = UdpTransport((me,), ip("239.255.0.1"), port, peers=(peer,))
    with pytest.raises(OSError, match="cannot bind"):
        await plain.start(heard.now)


def test_filter_changes_are_rate_limited() -> None:
    patterns = Patterns()

    def changes(now: float, tag: bytes) -> int:
        n = 0
        for i in range(100):
            st = Steady(b"a", 10, ((0, tag + b"%d" % i),))
            assert not patterns.seen(st, now)  # the first of two equal ones: a candidate
            n += patterns.seen(st, now)
        return n

    assert changes(0.0, b"x") == CHANGES_BURST
    assert changes(0.5, b"y") == int(CHANGES_PER_SECOND * 0.5)
    assert changes(10.0, b"z") == CHANGES_BURST
    # A pattern already installed is no change; one left out is tried again.
    st = Steady(b"b", 10, ((0, b"b"),))
    assert not patterns.seen(st, 10.0) and not patterns.seen(st, 10.0)  # no token left
    assert patterns.seen(st, 12.0) and not patterns.seen(st, 12.0)
