"""The etcd arbiter (rais.drivers.etcd) against a real etcd on loopback
(tests/etcdlab.py), and its fake (rais.drivers.fake_etcd) through the same
test bodies: the ``rig`` fixture runs each against both."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from etcdlab import etcd_cluster, make_certs

from rais.drivers.base import (
    Arbiter,
    ArbiterRefused,
    ArbiterUnreachable,
    Holder,
    Leadership,
)
from rais.drivers.etcd import EtcdClient, ssl_context
from rais.drivers.fake_etcd import FakeEtcd

TTL = 2.0
KEY = "/rais/www"


@dataclass
class Rig:
    """Clients on one store (a real etcd or the fake), and its clock."""

    new: Callable[[], Arbiter]
    now: Callable[[], float]
    elapse: Callable[[float], Awaitable[None]]
    cut: Callable[[], None]
    """Make the store unreachable."""
    opened: list[Arbiter] = field(default_factory=list)

    def client(self) -> Arbiter:
        c = self.new()
        self.opened.append(c)
        return c


@pytest.fixture(params=["fake", "etcd"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    if request.param == "fake":
        clock = [0.0]
        etcd = FakeEtcd(clock=lambda: clock[0])

        async def advance(seconds: float) -> None:
            clock[0] += seconds
            await asyncio.sleep(0)

        def down() -> None:
            etcd.down = True

        r = Rig(etcd.client, lambda: clock[0], advance, down)
        yield r
        return
    loop = asyncio.get_running_loop()
    async with etcd_cluster(1) as lab:
        r = Rig(lambda: EtcdClient(lab.urls), loop.time, asyncio.sleep, lambda: lab.kill(0))
        try:
            yield r
        finally:
            for c in r.opened:
                await c.close()


async def won(arbiter: Arbiter, key: str = KEY, value: bytes = b"a") -> Leadership:
    result = await arbiter.campaign(key, value, TTL)
    assert isinstance(result, Leadership), result
    return result


async def test_one_campaigner_wins_and_the_other_learns_who(rig: Rig) -> None:
    a, b = rig.client(), rig.client()
    before = rig.now()
    leader = await won(a)
    assert (leader.key, leader.value, leader.ttl) == (KEY, b"a", TTL)
    assert before + TTL <= leader.valid_until <= rig.now() + TTL
    assert leader.renew_every == pytest.approx(TTL / 3)
    assert await b.campaign(KEY, b"b", TTL) == Holder(b"a", leader.revision)
    assert await a.campaign(KEY, b"a", TTL) == Holder(b"a", leader.revision)
    assert await b.holder(KEY) == Holder(b"a", leader.revision)
    assert await b.holder("/rais/other") is None
    other = await won(b, "/rais/other", b"b")  # another key is another election
    assert other.revision > leader.revision


async def test_keepalive_keeps_the_key_past_its_ttl(rig: Rig) -> None:
    a, b = rig.client(), rig.client()
    leader = await won(a)
    for _ in range(5):  # 5 * ttl/3 > ttl
        await rig.elapse(leader.renew_every)
        sent = rig.now()
        assert await a.keepalive(leader)
        assert sent + TTL <= leader.valid_until <= rig.now() + TTL
    assert await b.campaign(KEY, b"b", TTL) == Holder(b"a", leader.revision)


async def test_a_silent_holder_loses_the_key_within_its_ttl(rig: Rig) -> None:
    a, b = rig.client(), rig.client()
    leader = await won(a)
    start = rig.now()
    while await b.holder(KEY) is not None:
        assert rig.now() - start < TTL + 1.5, "the key outlived its lease"
        await rig.elapse(0.05)
    gone = rig.now() - start
    assert gone >= TTL - 0.1, f"the key went after {gone:.2f} s, before its lease ran out"
    print(f"silent holder's key gone after {gone:.2f} s (ttl {TTL:g} s)")
    successor = await won(b, value=b"b")
    assert successor.revision > leader.revision  # the fencing token grows
    assert not await a.keepalive(leader)
    assert leader.valid_until <= rig.now()
    assert await a.holder(KEY) == Holder(b"b", successor.revision)


async def test_resign_frees_the_key_at_once(rig: Rig) -> None:
    a, b = rig.client(), rig.client()
    leader = await won(a)
    await a.resign(leader)
    assert leader.valid_until <= rig.now()
    assert await b.holder(KEY) is None
    successor = await won(b, value=b"b")
    assert successor.revision > leader.revision
    assert not await a.keepalive(leader)
    await a.resign(leader)  # twice is fine


async def test_an_unreachable_store_raises_unreachable(rig: Rig) -> None:
    a = rig.client()
    leader = await won(a)
    rig.cut()
    loop = asyncio.get_running_loop()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: a.campaign("/rais/x", b"a", TTL),
        lambda: a.keepalive(leader),
        lambda: a.holder(KEY),
        lambda: a.resign(leader),
    ]
    for call in calls:
        start = loop.time()
        with pytest.raises(ArbiterUnreachable):
            await call()
        assert loop.time() - start < 1.0


# -- the fake only ---------------------------------------------------------------


async def test_the_fake_cuts_one_client_off_and_refuses_on_demand() -> None:
    etcd = FakeEtcd(clock=lambda: 0.0)
    a, b = etcd.client(), etcd.client()
    a.reachable = False
    with pytest.raises(ArbiterUnreachable):
        await a.campaign(KEY, b"a", TTL)
    await won(b, value=b"b")
    etcd.refuse = True
    with pytest.raises(ArbiterRefused):
        await b.holder(KEY)
    await b.close()
    with pytest.raises(RuntimeError):
        await b.holder(KEY)


# -- a real etcd only --------------------------------------------------------------


async def test_latency_of_campaign_and_keepalive() -> None:
    async with etcd_cluster(1) as lab:
        client = EtcdClient(lab.urls)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            leader = await won(client)
            campaign = loop.time() - start
            start = loop.time()
            for _ in range(10):
                assert await client.keepalive(leader)
            keepalive = (loop.time() - start) / 10
            print(f"campaign {campaign * 1000:.1f} ms, keepalive {keepalive * 1000:.1f} ms")
            assert campaign < 1.0 and keepalive < 0.5
        finally:
            await client.close()


@pytest.mark.parametrize("kill", ["raft leader", "follower"])
async def test_three_members_one_killed_keep_working(kill: str) -> None:
    """The member the client talks to is killed: the client goes on through
    the others (after a new raft election if it was the raft leader)."""
    async with etcd_cluster(3) as lab:
        leader_index = await lab.leader()
        first = leader_index if kill == "raft leader" else (leader_index + 1) % 3
        urls = [lab.urls[first], *(u for i, u in enumerate(lab.urls) if i != first)]
        client = EtcdClient(urls, request_timeout=0.5)
        other = EtcdClient(urls[1:])
        try:
            leader = await won(client)
            assert client.current == urls[0]
            lab.kill(first)
            loop = asyncio.get_running_loop()
            start = loop.time()
            while True:  # while the cluster elects a new raft leader: unreachable, briefly
                try:
                    assert await client.keepalive(leader)
                    break
                except ArbiterUnreachable:
                    assert loop.time() < leader.valid_until, "no keepalive through within the ttl"
                    await asyncio.sleep(0.05)
            took = (loop.time() - start) * 1000
            print(f"{kill} killed: keepalive through another member after {took:.0f} ms")
            assert client.current != urls[0]
            assert client.counters["failovers"] >= 1
            assert await other.campaign(KEY, b"b", TTL) == Holder(b"a", leader.revision)
            second = await won(client, "/rais/other")
            assert second.revision > leader.revision
            assert await client.keepalive(second)
        finally:
            await client.close()
            await other.close()


async def test_a_campaign_whose_answer_was_lost_finds_its_own_key() -> None:
    """A stand-in member passes every request on to etcd but loses the answer
    to the transaction (503): the client retries it on the real member, which
    finds the key created under the client's own lease, so it has won."""
    async with etcd_cluster(1) as lab, aiohttp.ClientSession() as upstream:

        async def forward(request: web.Request) -> web.Response:
            async with upstream.post(lab.urls[0] + request.path, data=await request.read()) as r:
                body = await r.read()
            if request.path == "/v3/kv/txn":
                return web.json_response({"error": "lost", "code": 14}, status=503)
            return web.Response(body=body, status=r.status, content_type="application/json")

        app = web.Application()
        app.router.add_post("/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        client = EtcdClient([f"http://127.0.0.1:{runner.addresses[0][1]}", lab.urls[0]])
        rival = EtcdClient(lab.urls)
        try:
            leader = await won(client)
            assert client.counters["failovers"] == 1
            assert await rival.holder(KEY) == Holder(b"a", leader.revision)
            assert await client.keepalive(leader)
            await client.resign(leader)
            assert await rival.holder(KEY) is None
        finally:
            await client.close()
            await rival.close()
            await runner.cleanup()


async def test_all_endpoints_down_is_unreachable_quickly() -> None:
    """Refused connections and endpoints that accept but never answer."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with etcd_cluster(1) as lab:
        url = lab.urls[0]
        lab.kill(0)
    client = EtcdClient([url, f"http://127.0.0.1:{port}", url], request_timeout=0.2)
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        with pytest.raises(ArbiterUnreachable, match="no etcd endpoint answered") as caught:
            await client.campaign(KEY, b"a", TTL)
        took = loop.time() - start
        assert 0.2 <= took < 0.8, took  # one timeout, two refusals
        assert str(port) in str(caught.value)
        assert client.counters["endpoint_errors"] == 3
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_a_5xx_sends_the_request_to_the_next_endpoint() -> None:
    async def unavailable(_request: web.Request) -> web.Response:
        return web.json_response({"error": "etcdserver: no leader", "code": 14}, status=503)

    app = web.Application()
    app.router.add_post("/{tail:.*}", unavailable)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with etcd_cluster(1) as lab:
        client = EtcdClient([f"http://127.0.0.1:{port}", *lab.urls])
        try:
            leader = await won(client)
            assert await client.keepalive(leader)
            assert client.current == lab.urls[0]
            assert client.counters["failovers"] == 1
        finally:
            await client.close()
            await runner.cleanup()


async def test_user_and_password_against_a_real_etcd() -> None:
    async with etcd_cluster(1) as lab:
        await lab.enable_auth("rais", "s3cret")
        good = EtcdClient(lab.urls, user="rais", password="s3cret")
        bad = EtcdClient(lab.urls, user="rais", password="wrong")
        anonymous = EtcdClient(lab.urls)
        try:
            leader = await won(good)
            assert await good.keepalive(leader)
            with pytest.raises(ArbiterRefused, match="permission denied"):
                await good.campaign("/elsewhere", b"a", TTL)
            with pytest.raises(ArbiterRefused, match="authentication failed"):
                await bad.holder(KEY)
            with pytest.raises(ArbiterRefused, match="user name is empty"):
                await anonymous.holder(KEY)
            await good.resign(leader)
            assert await good.holder(KEY) is None
        finally:
            for c in (good, bad, anonymous):
                await c.close()


async def test_the_token_goes_in_authorization_and_is_renewed_on_401() -> None:
    """A stand-in gateway: tokens t1, t2, ...; the first one it gives is
    already expired (401) when used."""
    tokens: list[str] = []
    seen: list[tuple[str, str | None]] = []

    async def authenticate(request: web.Request) -> web.Response:
        body = await request.json()
        assert body == {"name": "rais", "password": "pw"}
        tokens.append(f"t{len(tokens) + 1}")
        return web.json_response({"header": {}, "token": tokens[-1]})

    async def range_(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization")
        seen.append((request.path, token))
        if token != "t2":
            return web.json_response({"error": "invalid auth token", "code": 16}, status=401)
        return web.json_response({"header": {"revision": "7"}})

    app = web.Application()
    app.router.add_post("/v3/auth/authenticate", authenticate)
    app.router.add_post("/v3/kv/range", range_)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = EtcdClient([f"http://127.0.0.1:{runner.addresses[0][1]}"], user="rais", password="pw")
    try:
        assert await client.holder(KEY) is None
        assert await client.holder(KEY) is None
        assert seen == [("/v3/kv/range", "t1"), ("/v3/kv/range", "t2"), ("/v3/kv/range", "t2")]
    finally:
        await client.close()
        await runner.cleanup()


def test_the_tls_context_checks_the_server_and_carries_the_client_cert(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    context = ssl_context(str(certs.ca), str(certs.client_cert), str(certs.client_key))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "rais test CA"),),)]
    with pytest.raises(ssl.SSLError):
        ssl_context(str(certs.ca), str(certs.client_cert), str(certs.server_key))  # not its key
    assert ssl_context(None).get_ca_certs() is not None  # the system's CAs


async def test_tls_with_a_client_certificate_against_a_real_etcd(tmp_path: Path) -> None:
    async with etcd_cluster(1, tls=True) as lab:
        assert lab.certs is not None and lab.urls[0].startswith("https://")
        client = EtcdClient(lab.urls, ssl=lab.client_ssl())
        without_cert = EtcdClient(lab.urls, ssl=ssl_context(str(lab.certs.ca)))
        wrong_ca = EtcdClient(lab.urls, ssl=ssl_context(str(make_certs(tmp_path).ca)))
        try:
            leader = await won(client)
            assert await client.keepalive(leader)
            with pytest.raises(ArbiterUnreachable):
                await without_cert.holder(KEY)
            with pytest.raises(ArbiterUnreachable, match="certificate"):
                await wrong_ca.holder(KEY)
        finally:
            for c in (client, without_cert, wrong_ca):
                await c.close()
