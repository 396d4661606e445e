"""The web dashboard's routes, the live stream and the same-origin middleware,
against a fake Source (aiohttp's test client)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from rais.admin.web import (
    BACKLOG,
    Source,
    add_routes,
    is_public,
    same_origin_middleware,
    streams,
)

SOURCE: web.AppKey[Source] = web.AppKey("source")


class FakeSource:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"host": "192.0.2.1", "groups": [{"name": "www"}]}
        self.history: list[dict[str, Any]] = []
        self.queues: list[asyncio.Queue[dict[str, Any]]] = []
        self.status_calls = 0
        self.seq = 0

    def status(self) -> dict[str, Any]:
        self.status_calls += 1
        return json.loads(json.dumps(self.state))  # type: ignore[no-any-return]

    def events_since(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self.history if e["seq"] > seq]

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # unbounded: the stream must cope
        self.queues.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.queues.remove(q)

    def emit(self, kind: str = "acquired", reason: str = "") -> dict[str, Any]:
        self.seq += 1
        ev = {
            "seq": self.seq,
            "time": 1_800_000_000.0 + self.seq,
            "group": "www",
            "host": "192.0.2.1",
            "kind": kind,
            "address": "198.51.100.1",
            "reason": reason,
        }
        self.history = [*self.history, ev][-1000:]
        for q in self.queues:
            q.put_nowait(ev)
        return ev


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"done": True})


def make_app(source: FakeSource, **kw: Any) -> web.Application:
    app = web.Application(middlewares=[same_origin_middleware()])
    app[SOURCE] = source
    add_routes(app, SOURCE, **kw)
    app.router.add_post("/v1/quiesce", _ok)
    return app


@pytest.fixture
async def fake() -> FakeSource:
    return FakeSource()


@pytest.fixture
async def client(fake: FakeSource) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app(fake, poll=0.02, keepalive=0.3))) as c:
        yield c


Client = TestClient[web.Request, web.Application]


async def eventually(check: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


class Sse:
    """Reads server-sent events off a response: (event, data) pairs, comments as
    ("comment", text)."""

    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 2.0) -> tuple[str, Any]:
        raw = await asyncio.wait_for(self.resp.content.readuntil(b"\n\n"), timeout)
        kind, data, comment = "message", "", None
        for line in raw.decode().strip("\n").split("\n"):
            if line.startswith(":"):
                comment = line[1:].strip()
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if comment is not None and not data:
            return "comment", comment
        return kind, json.loads(data)

    async def next_of(self, kind: str, timeout: float = 2.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                got, data = await self.next()
                if got == kind:
                    return data


# ------------------------------------------------------------- page and files


async def test_page_and_static_files_with_content_types(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "/ui/app.js" in page and "/ui/style.css" in page
    assert "www" not in page and "192.0.2.1" not in page  # no data in the page
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    js = await client.get("/ui/app.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    assert "getReader" in await js.text()  # SSE read with fetch(), not EventSource
    css = await client.get("/ui/style.css")
    assert css.status == 200 and css.content_type == "text/css"
    assert css.headers["X-Content-Type-Options"] == "nosniff"
    head = await client.head("/ui/style.css")
    assert head.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/ui/..%2Fweb.py",
        "/ui/..%2F..%2Fpyproject.toml",
        "/ui/%2e%2e%2f__init__.py",
        "/ui/../web.py",
        "/ui/..%5Cweb.py",
        "/ui/index.html%00.js",
        "/ui/%2Fetc%2Fpasswd",
        "/ui/app.js/",
        "/ui/nope.js",
        "/ui/",
    ],
)
async def test_traversal_and_unknown_files_refused(client: Client, path: str) -> None:
    resp = await client.get(URL(path, encoded=True))
    assert resp.status == 404
    body = await resp.read()
    assert b"import" not in body and b"root:" not in body


# -------------------------------------------------------------------- events


async def test_events_since(client: Client, fake: FakeSource) -> None:
    for _ in range(3):
        fake.emit()
    all_ = await (await client.get("/v1/events")).json()
    assert [e["seq"] for e in all_] == [1, 2, 3]
    later = await (await client.get("/v1/events?since=1")).json()
    assert [e["seq"] for e in later] == [2, 3]
    assert await (await client.get("/v1/events?since=3")).json() == []
    for bad in ("x", "-1", "1.5"):
        resp = await client.get(f"/v1/events?since={bad}")
        assert resp.status == 400 and "error" in await resp.json()


# -------------------------------------------------------------------- stream


async def test_stream_sends_status_then_events(client: Client, fake: FakeSource) -> None:
    async with client.get("/v1/stream") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        sse = Sse(resp)
        kind, data = await sse.next()
        assert kind == "status" and data == fake.state
        fake.emit("acquired", "first")
        assert (await sse.next_of("event"))["reason"] == "first"
        fake.emit("released", "second")
        ev = await sse.next_of("event")
        assert ev["kind"] == "released" and ev["seq"] == 2


async def test_stream_replays_since(client: Client, fake: FakeSource) -> None:
    for i in range(5):
        fake.emit(reason=str(i))
    async with client.get("/v1/stream?since=3") as resp:
        sse = Sse(resp)
        assert (await sse.next())[0] == "status"
        assert [(await sse.next_of("event"))["seq"] for _ in range(2)] == [4, 5]
        fake.emit()
        assert (await sse.next_of("event"))["seq"] == 6
    # a client whose last event is newer than any (the agent restarted) gets all again
    async with client.get("/v1/stream", headers={"Last-Event-ID": "99"}) as resp:
        sse = Sse(resp)
        await sse.next_of("status")
        assert (await sse.next_of("event"))["seq"] == 1


async def test_changed_status_is_resent_unchanged_is_not(client: Client, fake: FakeSource) -> None:
    async with client.get("/v1/stream") as resp:
        sse = Sse(resp)
        assert (await sse.next())[0] == "status"
        calls = fake.status_calls
        await eventually(lambda: fake.status_calls >= calls + 5)  # polled 5 times, same JSON
        fake.state["groups"][0]["leader"] = "192.0.2.2"
        kind, data = await sse.next()  # the next message is the change, nothing before it
        assert kind == "status" and data["groups"][0]["leader"] == "192.0.2.2"
        calls = fake.status_calls
        await eventually(lambda: fake.status_calls >= calls + 5)
        fake.emit(reason="after")
        kind, data = await sse.next()
        assert (kind, data["reason"]) == ("event", "after")


async def test_keepalive_comment(client: Client) -> None:
    async with client.get("/v1/stream") as resp:
        sse = Sse(resp)
        assert (await sse.next())[0] == "status"
        assert await sse.next() == ("comment", "keepalive")  # keepalive=0.3 s here


async def test_client_gone_unsubscribes(client: Client, fake: FakeSource) -> None:
    resp = await client.get("/v1/stream")
    await Sse(resp).next()
    assert len(fake.queues) == 1 and len(streams(client.app)) == 1
    resp.close()
    await eventually(lambda: not fake.queues and not streams(client.app))


async def test_app_stop_ends_streams_promptly(fake: FakeSource) -> None:
    app = make_app(fake, poll=0.05)
    runner = web.AppRunner(app, shutdown_timeout=30)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"event: status")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await runner.cleanup()
    assert loop.time() - started < 1.0
    assert not fake.queues
    rest = await asyncio.wait_for(reader.read(), 1.0)  # the server ended the response
    assert rest.endswith(b"0\r\n\r\n")
    writer.close()


async def test_slow_client_is_bounded_and_resynced(fake: FakeSource) -> None:
    """A client that stops reading: the server keeps at most `buffer` events for it, drops
    the rest, and when it reads again it gets a fresh status and the newest events."""
    app = make_app(fake, poll=0.05, buffer=50)
    async with TestServer(app) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", server.port or 0))
        await loop.sock_sendall(sock, b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await eventually(lambda: len(streams(app)) == 1)
        stream = streams(app)[0]
        reason = "x" * 4000
        most = 0
        for _ in range(100):  # 100 x 50 events of 4 kB: far more than the socket buffers
            for _ in range(50):
                fake.emit(reason=reason)
            await asyncio.sleep(0)
            most = max(most, len(stream.pending), *(q.qsize() for q in fake.queues))
        assert most <= 50
        assert stream.overflows > 0
        fake.state["groups"][0]["leader"] = "192.0.2.9"
        last = fake.emit(reason="last")
        data, fresh_status = b"", False
        async with asyncio.timeout(10):  # the client reads again: it catches up
            while b'"reason":"last"' not in data:
                chunk = await loop.sock_recv(sock, 1 << 20)
                assert chunk
                data = data[-8192:] + chunk
                fresh_status = fresh_status or b'"leader":"192.0.2.9"' in data
        assert fresh_status and last["seq"] == 5001
        sock.close()
        await eventually(lambda: not fake.queues)


async def test_resync_sends_fresh_status_and_newest_backlog(fake: FakeSource) -> None:
    app = make_app(fake, poll=10.0, buffer=5)
    async with TestClient(TestServer(app)) as client, client.get("/v1/stream") as resp:
        sse = Sse(resp)
        assert (await sse.next())[0] == "status"
        stream = streams(app)[0]
        # fill the buffer past its bound before the session runs again
        for _ in range(BACKLOG + 100):
            stream.put(fake.emit())
        assert stream.resync and len(stream.pending) <= 5
        assert (await sse.next())[0] == "status"  # the fresh status first, though unchanged
        seqs = [(await sse.next_of("event"))["seq"] for _ in range(BACKLOG)]
        assert seqs == list(range(101, BACKLOG + 101))  # the newest, in order, once


# ---------------------------------------------------------------- middleware


async def test_cross_site_form_post_refused(client: Client) -> None:
    resp = await client.post(
        "/v1/quiesce?group=www",
        data="group=www",
        headers={
            "Origin": "http://evil.example",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert resp.status == 403
    assert await resp.json() == {"error": "cross-site request refused"}


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site"])
async def test_sec_fetch_site_refused(client: Client, site: str) -> None:
    resp = await client.post("/v1/quiesce", headers={"Sec-Fetch-Site": site})
    assert resp.status == 403
    assert (await resp.json())["error"] == "cross-site request refused"


@pytest.mark.parametrize(
    "origin", ["null", "http://127.0.0.1", "https://{host}", "http://{host}.evil.example", "x"]
)
async def test_other_origins_refused(client: Client, origin: str) -> None:
    host = f"127.0.0.1:{client.port}"
    resp = await client.post("/v1/quiesce", headers={"Origin": origin.format(host=host)})
    assert resp.status == 403


async def test_same_origin_and_headerless_posts_pass(client: Client) -> None:
    host = f"127.0.0.1:{client.port}"
    send: Callable[..., Awaitable[ClientResponse]] = client.post
    assert (await send("/v1/quiesce")).status == 200  # curl, the rais CLI
    same = {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
    assert (await send("/v1/quiesce", headers=same)).status == 200
    assert (await send("/v1/quiesce", headers={"Origin": f"HTTP://{host}/"})).status == 200
    assert (await send("/v1/quiesce", headers={"Sec-Fetch-Site": "none"})).status == 200
    # reading is not refused: GET and HEAD pass whatever the origin
    evil = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert (await client.get("/v1/events", headers=evil)).status == 200


async def test_is_public_marks_only_the_page_and_its_files(fake: FakeSource) -> None:
    seen: dict[str, bool] = {}

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen[request.path] = is_public(request)
        response: web.StreamResponse = await handler(request)
        return response

    app = make_app(fake)
    app.middlewares.append(record)
    async with TestClient(TestServer(app)) as client:
        for path in ("/", "/ui/app.js", "/ui/nope", "/v1/events", "/v1/quiesce", "/missing"):
            await client.get(path)
    assert seen == {
        "/": True,
        "/ui/app.js": True,
        "/ui/nope": True,
        "/v1/events": False,
        "/v1/quiesce": False,
        "/missing": False,
    }
