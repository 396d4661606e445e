"""UpdatePublisher: RFC 2136 UPDATE with TSIG, against a real BIND (tests/bind.py)
and against a fake server that counts requests in flight and scripts answers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import struct
from collections.abc import AsyncIterator
from typing import cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update
import pytest
from bind import (  # noqa: F401
    IP,
    BindServer,
    bind_fixture,
    eventually,
    free_port,
    lookup,
    running,
    wait_addresses,
)

from rais.dns.update import UpdatePublisher

V4 = [ipaddress.IPv4Address(f"192.0.2.{i}") for i in range(1, 60)]
V6 = [ipaddress.IPv6Address(f"2001:db8::{i:x}") for i in range(1, 60)]
SECRET = base64.b64encode(b"k" * 32).decode()


def publisher(bind: BindServer, name: str, **kw: object) -> UpdatePublisher:
    args: dict[str, object] = {"secret_b64": bind.tsig_secret, "backoff": (0.01, 0.04)}
    return fake_publisher(bind.server, name=name, **(args | kw))


class Recorder:
    """on_result hook and injectable sleep that remember what they saw."""

    def __init__(self) -> None:
        self.results: list[tuple[bool, str]] = []
        self.delays: list[float] = []

    def __call__(self, ok: bool, detail: str) -> None:
        self.results.append((ok, detail))

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)


# -- against BIND ---------------------------------------------------------------


async def test_publish_change_and_empty(bind: BindServer) -> None:
    rec = Recorder()
    p = publisher(bind, "www", on_result=rec)
    name = "www.rais.test."
    async with running(p):
        p.publish([V4[0], V4[1], V6[0]])
        assert await wait_addresses(bind.server, name, {V4[0], V4[1], V6[0]}) == dns.rcode.NOERROR
        p.publish([V4[1], V4[2], V6[0], V6[1]])  # 192.0.2.1 removed, .3 and ::2 added
        await wait_addresses(bind.server, name, {V4[1], V4[2], V6[0], V6[1]})
        p.publish([])
        assert await wait_addresses(bind.server, name, set()) == dns.rcode.NXDOMAIN
        assert await eventually(lambda: p.settled)
    assert (p.stats.sent, p.stats.ok, p.stats.failed_total) == (3, 3, 0)
    assert [ok for ok, _ in rec.results] == [True, True, True]


async def test_wrong_secret_backs_off_then_correct_key_fixes(
    bind: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rais.dns.update")
    rec = Recorder()
    wrong = publisher(bind, "badsig", secret_b64=SECRET, on_result=rec, sleep=rec.sleep)
    async with running(wrong):
        wrong.publish([V4[5]])
        assert await eventually(lambda: wrong.stats.failed["badsig"] >= 4)
        assert wrong.in_flight <= 1 and wrong.max_in_flight == 1
    assert wrong.stats.ok == 0 and wrong.accepted is None
    assert rec.delays[:4] == [0.01, 0.02, 0.04, 0.04]  # doubling, capped
    assert rec.results and not any(ok for ok, _ in rec.results)
    assert "badsig" in caplog.text
    assert (await lookup(bind.server, "badsig.rais.test."))[1] == set()

    good = publisher(bind, "badsig")
    async with running(good):
        good.publish([V4[5]])
        await wait_addresses(bind.server, "badsig.rais.test.", {V4[5]})


async def test_unknown_key_is_badkey(bind: BindServer) -> None:
    p = publisher(bind, "badkey", key_name="no-such-key")
    async with running(p):
        p.publish([V4[0]])
        assert await eventually(lambda: p.stats.failed["badkey"] >= 2)


async def test_coalescing_sends_few_updates_and_ends_with_the_last_set(bind: BindServer) -> None:
    p = publisher(bind, "burst")
    async with running(p):
        for i in range(50):  # no await in between: one update
            p.publish([V4[i], V6[i]])
        await wait_addresses(bind.server, "burst.rais.test.", {V4[49], V6[49]})
        assert p.stats.sent == 1 and p.stats.coalesced == 49
        for i in range(50):  # the loop runs between publishes: still few updates
            p.publish([V4[i]])
            await asyncio.sleep(0)
        await wait_addresses(bind.server, "burst.rais.test.", {V4[49]})
        assert await eventually(lambda: p.settled)
    assert 2 <= p.stats.sent <= 1 + 10, p.stats
    assert p.stats.failed_total == 0 and p.max_in_flight == 1


async def test_server_down_counts_failures_never_raises() -> None:
    rec = Recorder()
    p = UpdatePublisher(
        ("127.0.0.1", free_port()),  # nothing listens there
        "rais.test",
        "down",
        30,
        "rais-key",
        SECRET,
        timeout=0.05,
        backoff=(0.01, 0.02),
        on_result=rec,
    )
    async with running(p) as task:
        for i in range(20):
            p.publish([V4[i]])
            await asyncio.sleep(0.005)
        assert await eventually(lambda: p.stats.failed_total >= 3)
        assert not task.done()
    assert set(p.stats.failed) <= {"timeout", "network"}
    assert p.max_in_flight == 1 and p.stats.ok == 0
    assert rec.results and not any(ok for ok, _ in rec.results)
    assert p.stats.last_error is not None


# -- against a fake server ----------------------------------------------------------


class FakeServer:
    """Answers UPDATEs signed with ``key`` on UDP and TCP, after ``delay``.

    ``script`` holds the answers for the next requests ("NOERROR", "REFUSED",
    ..., or "TC": truncated over UDP); then every answer is ``default``.
    ``pending``/``max_pending`` count requests received and not yet answered."""

    def __init__(self, key: dns.tsig.Key, delay: float = 0.0) -> None:
        self.key = key
        self.delay = delay
        self.script: list[str] = []
        self.default = "NOERROR"
        self.requests: list[tuple[str, frozenset[IP]]] = []
        self.state: frozenset[IP] = frozenset()
        self.pending = 0
        self.max_pending = 0
        self.errors: list[Exception] = []

    async def answer(self, wire: bytes, transport: str) -> bytes:
        self.pending += 1
        self.max_pending = max(self.max_pending, self.pending)
        try:
            query = dns.message.from_wire(wire, keyring=self.key)
            assert isinstance(query, dns.update.UpdateMessage)
            added = frozenset(
                ipaddress.ip_address(rd.address)
                for rrset in query.update
                if rrset.deleting is None
                for rd in rrset
            )
            self.requests.append((transport, added))
            await asyncio.sleep(self.delay)
            what = self.script.pop(0) if self.script else self.default
            response = dns.message.make_response(query)
            if what == "TC" and transport == "udp":
                response.flags |= dns.flags.TC
            else:
                response.set_rcode(dns.rcode.from_text("NOERROR" if what == "TC" else what))
                if response.rcode() == dns.rcode.NOERROR:
                    self.state = added
            return response.to_wire()
        finally:
            self.pending -= 1


@contextlib.asynccontextmanager
async def fake_server(fake: FakeServer) -> AsyncIterator[tuple[str, int]]:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.DatagramTransport, transport)

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            async def reply() -> None:
                try:
                    self.transport.sendto(await fake.answer(data, "udp"), addr)
                except Exception as e:
                    fake.errors.append(e)

            task = loop.create_task(reply())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                out = await fake.answer(await reader.readexactly(size), "tcp")
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as e:
            fake.errors.append(e)
        writer.close()

    port = free_port()
    udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", port))
    server = await asyncio.start_server(tcp, "127.0.0.1", port)
    try:
        yield ("127.0.0.1", port)
    finally:
        udp.close()
        server.close()
        for task in list(tasks):
            task.cancel()
        await server.wait_closed()
    assert not fake.errors, fake.errors


def fake_publisher(addr: tuple[str, int], **kw: object) -> UpdatePublisher:
    args: dict[str, object] = {
        "server": addr,
        "zone": "rais.test",
        "name": "www",
        "ttl": 30,
        "key_name": "rais-key",
        "secret_b64": SECRET,
        "timeout": 1.0,
        "backoff": (0.01, 0.02),
    }
    args.update(kw)
    return UpdatePublisher(**args)  # type: ignore[arg-type]


KEY = dns.tsig.Key("rais-key", SECRET)


async def test_one_update_in_flight_rcode_failures_retried() -> None:
    fake = FakeServer(KEY, delay=0.02)
    fake.script = ["REFUSED", "SERVFAIL", "NOTAUTH"]
    async with fake_server(fake) as addr:
        p = fake_publisher(addr)
        async with running(p):
            for i in range(30):
                p.publish([V4[i], V6[i]])
                await asyncio.sleep(0.005)
            assert await eventually(lambda: p.settled and fake.state == {V4[29], V6[29]})
    assert fake.max_pending == 1 and p.max_in_flight == 1
    assert dict(p.stats.failed) == {"refused": 1, "servfail": 1, "notauth": 1}
    assert p.stats.sent == len(fake.requests) < 30
    assert p.stats.coalesced > 0


async def test_unchanged_set_is_not_resent_unless_a_failure_intervened() -> None:
    fake = FakeServer(KEY)
    async with fake_server(fake) as addr:
        p = fake_publisher(addr)
        async with running(p):
            p.publish([V4[0]])
            assert await eventually(lambda: p.settled)
            p.publish([V4[0]])
            assert await eventually(lambda: p.stats.skipped == 1)
            assert len(fake.requests) == 1
            fake.default = "REFUSED"
            p.publish([V4[1]])
            assert await eventually(lambda: p.stats.failed["refused"] >= 1)
            fake.default = "NOERROR"
            p.publish([V4[0]])  # the server may hold anything now: sent again
            assert await eventually(lambda: p.settled and fake.state == {V4[0]})
            p.resend()
            assert await eventually(lambda: p.stats.ok == 3)
    assert [added for _, added in fake.requests].count(frozenset({V4[0]})) == 3


async def test_truncated_udp_answer_falls_back_to_tcp() -> None:
    fake = FakeServer(KEY)
    fake.script = ["TC"]
    rec = Recorder()
    async with fake_server(fake) as addr:
        p = fake_publisher(addr, on_result=rec)
        async with running(p):
            p.publish([V6[0]])
            assert await eventually(lambda: p.settled)
    assert [t for t, _ in fake.requests] == ["udp", "tcp"]
    assert rec.results == [(True, "NOERROR over TCP")]


async def test_hook_errors_do_not_stop_run(caplog: pytest.LogCaptureFixture) -> None:
    def hook(ok: bool, detail: str) -> None:
        raise RuntimeError("hook broke")

    fake = FakeServer(KEY)
    async with fake_server(fake) as addr:
        p = fake_publisher(addr, on_result=hook)
        async with running(p):
            p.publish([V4[0]])
            assert await eventually(lambda: p.settled)
            p.publish([V4[1]])
            assert await eventually(lambda: p.settled and fake.state == {V4[1]})
    assert "on_result hook failed" in caplog.text


async def test_broken_injected_sleep_does_not_stop_run(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []

    async def sleep(delay: float) -> None:
        calls.append(delay)
        raise RuntimeError("sleep broke")

    fake = FakeServer(KEY)
    fake.script = ["REFUSED", "REFUSED"]
    async with fake_server(fake) as addr:
        p = fake_publisher(addr, sleep=sleep)
        async with running(p):
            p.publish([V4[0]])
            assert await eventually(lambda: p.settled)
    assert len(calls) == 2 and "internal error" in caplog.text


# -- pure parts -------------------------------------------------------------------------


def test_message_replaces_both_rrsets_atomically() -> None:
    p = fake_publisher(("127.0.0.1", 53))
    msg = p.message([V6[0], V4[1], V4[0]])
    wire = msg.to_wire()
    parsed = dns.message.from_wire(wire, keyring=KEY)
    assert isinstance(parsed, dns.update.UpdateMessage)
    assert parsed.had_tsig and parsed.keyalgorithm == dns.tsig.HMAC_SHA256
    assert str(parsed.zone[0].name) == "rais.test."
    ops = [(r.deleting, r.rdtype, [rd.to_text() for rd in r] or None) for r in parsed.update]
    ops = [(d, t, x) for d, t, rds in ops for x in (rds or [None])]
    assert ops == [
        (dns.rdataclass.ANY, dns.rdatatype.A, None),  # delete the RRset
        (dns.rdataclass.ANY, dns.rdatatype.AAAA, None),
        (None, dns.rdatatype.A, "192.0.2.1"),  # add
        (None, dns.rdatatype.A, "192.0.2.2"),
        (None, dns.rdatatype.AAAA, "2001:db8::1"),
    ]
    assert all(r.ttl == 30 for r in parsed.update if r.deleting is None)
    empty = p.message([])
    assert len(empty.update) == 2


@pytest.mark.parametrize(
    "kw",
    [
        *[{"server": s} for s in (("ns.example", 53), ("127.0.0.1", 0))],
        *[{"secret_b64": s} for s in ("not base64!", "")],
        *[{"backoff": b} for b in ((0.0, 1.0), (2.0, 1.0))],
        {"algorithm": "hmac-md4"},
        {"name": "www.other.test."},
        {"ttl": -1},
        {"timeout": 0},
    ],
)
def test_bad_arguments_are_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        fake_publisher(("127.0.0.1", 53), **kw)


def test_names_absolute_relative_and_apex() -> None:
    assert str(fake_publisher(("127.0.0.1", 53), name="@").name) == "rais.test."
    assert str(fake_publisher(("127.0.0.1", 53), name="a.b").name) == "a.b.rais.test."
    assert str(fake_publisher(("127.0.0.1", 53), name="c.rais.test.").name) == "c.rais.test."
    p = fake_publisher(("127.0.0.1", 53), algorithm="HMAC-SHA512")
    assert p.message([]).keyalgorithm == dns.tsig.HMAC_SHA512
