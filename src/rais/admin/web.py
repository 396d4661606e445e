"""The agent's web dashboard and live streams, added to the admin API app.

GET /                       the dashboard page (static: it holds no data and needs no token)
GET /ui/{file}              its script and style sheet (app.js, style.css)
GET /v1/events[?since=N]    recent events with seq > N, oldest first (JSON list)
GET /v1/stream[?since=N]    server-sent events: ``event: status`` (the full status JSON) at
                            connect and whenever it changes, ``event: event`` (one event,
                            ``id:`` its seq) for every new one, ``: keepalive`` every 15 s.
                            With ``since`` (or Last-Event-ID) the stream first replays the
                            newest 200 recent events above it.

``same_origin_middleware()`` refuses cross-site mutations (a page elsewhere POSTing a
form to a loopback API without a token). The token middleware must let ``is_public``
requests (the page and its files) through.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL


class Source(Protocol):
    """What the agent provides."""

    def status(self) -> dict[str, Any]:
        """Exactly ``GET /v1/status``'s JSON."""
        ...

    def events_since(self, seq: int) -> list[dict[str, Any]]:
        """Recent events with a seq above ``seq``, oldest first."""
        ...

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue that gets every new event."""
        ...

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None: ...


STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
PAGE_ROUTE = "rais-web-page"
UI_ROUTE = "rais-web-ui"
BACKLOG = 200  # events replayed at connect or after a resync (the page shows 200)
SAFE_METHODS = frozenset({"GET", "HEAD"})
_DUMPS = json.JSONEncoder(separators=(",", ":")).encode
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(eq=False)
class Stream:
    """One connected ``/v1/stream`` client: new events wait in ``pending`` (at most
    ``limit``); on overflow they are dropped and the client is resynced."""

    limit: int
    pending: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    overflows: int = 0
    resync: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, ev: dict[str, Any]) -> None:
        if len(self.pending) >= self.limit:
            self.pending.clear()
            self.overflows += 1
            self.resync = True
        self.pending.append(ev)
        self.wake.set()


@dataclass(eq=False)
class _State:
    source_key: web.AppKey[Source]
    poll: float
    keepalive: float
    buffer: int
    write_timeout: float
    streams: set[Stream] = field(default_factory=set)
    closing: bool = False


_STATE: web.AppKey[_State] = web.AppKey("rais.admin.web.state", _State)


def add_routes(
    app: web.Application,
    source_key: web.AppKey[Source],
    *,
    poll: float = 0.2,
    keepalive: float = 15.0,
    buffer: int = 256,
    write_timeout: float = 30.0,
) -> None:
    """Add the page, its files, ``/v1/events`` and ``/v1/stream``; ``app[source_key]``
    must be set before the first request."""
    app[_STATE] = _State(source_key, poll, keepalive, buffer, write_timeout)
    app.router.add_get("/", _page, name=PAGE_ROUTE)
    app.router.add_get("/ui/{file}", _ui, name=UI_ROUTE)
    app.router.add_get("/v1/events", _events)
    app.router.add_get("/v1/stream", _stream, allow_head=False)
    app.on_shutdown.append(_close_streams)


def streams(app: web.Application) -> list[Stream]:
    """The connected stream clients (for diagnostics and tests)."""
    return list(app[_STATE].streams)


def is_public(request: web.Request) -> bool:
    """The page and its files: served without a token (they hold no data)."""
    return request.match_info.route.name in (PAGE_ROUTE, UI_ROUTE)


# ------------------------------------------------------------------ security


def same_origin_middleware() -> Middleware:
    """403 for a non-GET/HEAD request from another site: an ``Origin`` other than the
    request's own scheme://host[:port], or ``Sec-Fetch-Site`` cross-site or same-site.
    Requests without those headers (curl, the rais CLI) pass."""

    @web.middleware
    async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in SAFE_METHODS and _cross_site(request):
            return web.json_response({"error": "cross-site request refused"}, status=403)
        return await handler(request)

    return same_origin


def _cross_site(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site", "").strip().lower() in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    mine = _origin_key(f"{request.scheme}://{request.host}")
    return mine is None or _origin_key(origin) != mine


def _origin_key(text: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port with the scheme's default) of an origin; None: not one
    (``Origin: null`` from a sandboxed frame or a file)."""
    try:
        url = URL(text.strip())
    except ValueError:
        return None
    if not url.absolute or not url.host or url.path not in ("", "/") or url.query_string:
        return None
    return url.scheme.lower(), url.host.lower().rstrip("."), url.port


# ------------------------------------------------------------- page and files


def _file(name: str) -> bytes:
    return (resources.files("rais.admin") / "webui" / name).read_bytes()


async def _page(request: web.Request) -> web.Response:
    return web.Response(
        body=_file("index.html"),
        headers={"Content-Type": "text/html; charset=utf-8", **_PAGE_HEADERS},
    )


async def _ui(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    kind = STATIC.get(name)  # only the listed files: no paths, no traversal
    if kind is None:
        return web.json_response({"error": "not found"}, status=404)
    headers = {
        "Content-Type": kind,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }
    return web.Response(body=_file(name), headers=headers)


# -------------------------------------------------------------------- events


def _since(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


async def _events(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        since = _since(request.query.get("since")) or 0
    except ValueError:
        return web.json_response({"error": "since must be a sequence number"}, status=400)
    return web.json_response(request.app[state.source_key].events_since(since))


async def _close_streams(app: web.Application) -> None:
    state = app[_STATE]
    state.closing = True
    for stream in state.streams:
        stream.wake.set()


async def _pump(queue: asyncio.Queue[dict[str, Any]], stream: Stream) -> None:
    """Move events off the source's queue at once, so a slow client cannot grow it."""
    while True:
        stream.put(await queue.get())


async def _stream(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    source = request.app[state.source_key]
    try:
        since = _since(request.query.get("since") or request.headers.get("Last-Event-ID"))
    except ValueError:
        return web.json_response({"error": "since must be a sequence number"}, status=400)
    if state.closing:
        return web.json_response({"error": "shutting down"}, status=503)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    stream = Stream(state.buffer)
    queue = source.subscribe()
    history = source.events_since(0)  # read right after subscribing: nothing falls between
    state.streams.add(stream)
    pump = asyncio.get_running_loop().create_task(_pump(queue, stream), name="rais-web-pump")
    try:
        await resp.prepare(request)
        await _Session(request, resp, source, stream, state).run(since, history)
    except (ConnectionError, TimeoutError):  # the client went away, or stopped reading
        if request.transport is not None:
            request.transport.abort()
    finally:
        state.streams.discard(stream)
        source.unsubscribe(queue)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
    return resp


class _Session:
    def __init__(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        source: Source,
        stream: Stream,
        state: _State,
    ) -> None:
        self.request = request
        self.resp = resp
        self.source = source
        self.stream = stream
        self.state = state
        self.loop = asyncio.get_running_loop()
        self.last_status = ""
        self.last_seq = 0
        self.last_write = self.loop.time()

    def gone(self) -> bool:
        transport = self.request.transport
        return self.state.closing or transport is None or transport.is_closing()

    async def run(self, since: int | None, history: list[dict[str, Any]]) -> None:
        state, stream = self.state, self.stream
        newest = history[-1]["seq"] if history else 0
        await self.send_status(force=True)
        if since is None:
            self.last_seq = newest  # no replay asked: only new events
        else:
            # since > newest: the agent restarted after the client's last event
            self.last_seq = since if since <= newest else 0
            await self.send_events(history)
        next_poll = self.loop.time() + state.poll
        while not self.gone():
            if stream.resync:  # overflowed: what is pending is gone, start afresh
                stream.resync = False
                stream.pending.clear()
                await self.send_status(force=True)
                await self.send_events(self.source.events_since(self.last_seq))
                continue
            if stream.pending:
                ev = stream.pending.popleft()
                if ev["seq"] > self.last_seq + 1:  # a gap: fill it from the history
                    await self.send_events(self.source.events_since(self.last_seq))
                await self.send_events([ev])
            now = self.loop.time()
            if now >= next_poll:  # checked between events too: a busy feed cannot starve it
                next_poll = now + state.poll
                await self.send_status()
            if self.loop.time() - self.last_write >= state.keepalive:
                await self.send(b": keepalive\n\n")
            if stream.pending or stream.resync:
                continue
            stream.wake.clear()
            wait = min(next_poll, self.last_write + state.keepalive) - self.loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.wake.wait(), max(0.0, wait))

    async def send(self, data: bytes) -> None:
        await asyncio.wait_for(self.resp.write(data), self.state.write_timeout)
        self.last_write = self.loop.time()

    async def send_status(self, *, force: bool = False) -> None:
        text = _DUMPS(self.source.status())
        if force or text != self.last_status:
            self.last_status = text
            await self.send(f"event: status\ndata: {text}\n\n".encode())

    async def send_events(self, events: list[dict[str, Any]]) -> None:
        fresh = [ev for ev in events if ev["seq"] > self.last_seq][-BACKLOG:]
        for ev in fresh:
            self.last_seq = ev["seq"]
            await self.send(f"id: {ev['seq']}\nevent: event\ndata: {_DUMPS(ev)}\n\n".encode())
