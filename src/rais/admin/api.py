"""The local admin HTTP API (aiohttp, run with AppRunner inside the agent's loop).

GET  /v1/status              status of every group as JSON
POST /v1/quiesce[?group=G]   quiesce every group, or one
POST /v1/unquiesce[?group=G]
POST /v1/move?address=A&host=H[&group=G]   pin service address A to host H
POST /v1/failback?address=A[&group=G]      give A back to its preferred host now
    (A: any address of an address set acts on the whole set; several, all of one
    set, as address=A&address=B or address=A,B)
POST /v1/pause               body {"for": "30s"}: restart in place within that
                             long (409 with "error", "group", "hosts" if refused)
GET  /metrics                Prometheus metrics
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from rais.admin.facade import Refused
from rais.admin.web import Source, add_routes, is_public, same_origin_middleware
from rais.base.durations import parse_duration
from rais.base.ip import IP


class Controlled(Protocol):
    def status(self) -> dict[str, Any]: ...

    def quiesce(self, group: str | None) -> list[str]:
        """Quiesce; returns the groups it applied to (KeyError: no such group)."""
        ...

    def unquiesce(self, group: str | None) -> list[str]: ...

    def move(self, address: IP | Sequence[IP], host: IP, group: str | None) -> str:
        """Pin ``address`` (any address of a set, or several, all of one set) to
        ``host``; returns the group (LookupError, ValueError: refused)."""
        ...

    def failback(self, address: IP | Sequence[IP], group: str | None) -> str: ...

    def pause(self, duration: float) -> dict[str, Any]:
        """Restart in place within ``duration`` s (rais.admin.facade.Refused: refused)."""
        ...

    def metrics_text(self) -> tuple[bytes, str]:
        """Prometheus exposition: body and content type."""
        ...


AGENT: web.AppKey[Controlled] = web.AppKey("agent")


SOURCE: web.AppKey[Source] = web.AppKey("source")


def make_app(
    agent: Controlled, token: str | None = None, source: Source | None = None
) -> web.Application:
    """The API; with ``source`` also the dashboard and the event stream (rais.admin.web).
    Mutations refuse cross-site requests; without a token, requests must name
    the host by an IP address or localhost (no DNS rebinding)."""
    middlewares = [same_origin_middleware(), _auth(token) if token else _literal_host()]
    app = web.Application(middlewares=middlewares)
    app[AGENT] = agent
    if source is not None:
        app[SOURCE] = source
        add_routes(app, SOURCE)
    app.router.add_get("/v1/status", _status)
    app.router.add_post("/v1/quiesce", _quiesce)
    app.router.add_post("/v1/unquiesce", _unquiesce)
    app.router.add_post("/v1/move", _move)
    app.router.add_post("/v1/failback", _failback)
    app.router.add_post("/v1/pause", _pause)
    app.router.add_get("/metrics", _metrics)
    return app


def _auth(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not is_public(request) and not hmac.compare_digest(given, expected):
            return web.json_response({"error": "unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    return check


def _literal_host() -> Any:
    """Without a token, only requests to an IP address or localhost: a web page
    whose name was rebound to 127.0.0.1 sends its own name in Host."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        name = (request.url.host or "").strip("[]")
        if name != "localhost":
            try:
                ipaddress.ip_address(name)
            except ValueError:
                refused = f"host {name!r} refused: use an IP address or localhost"
                return web.json_response({"error": refused}, status=403)
        response: web.StreamResponse = await handler(request)
        return response

    return check


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[AGENT].metrics_text()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[AGENT].status())


async def _change(request: web.Request, quiesce: bool) -> web.Response:
    agent = request.app[AGENT]
    group = request.query.get("group")
    try:
        done = agent.quiesce(group) if quiesce else agent.unquiesce(group)
    except KeyError:
        return web.json_response({"error": f"no group {group!r}"}, status=404)
    return web.json_response({"groups": done, "quiesced": quiesce})


async def _quiesce(request: web.Request) -> web.Response:
    return await _change(request, True)


async def _unquiesce(request: web.Request) -> web.Response:
    return await _change(request, False)


def _ip(request: web.Request, name: str) -> IP:
    text = request.query.get(name)
    if not text:
        raise web.HTTPBadRequest(
            text=f'{{"error": "missing {name}"}}', content_type="application/json"
        )
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error": "{name} is not an IP address"}}', content_type="application/json"
        ) from None


def _ips(request: web.Request, name: str) -> list[IP]:
    """One or more addresses: ``name`` repeated, or comma-separated."""
    texts = [t for v in request.query.getall(name, []) for t in v.split(",") if t]
    if not texts:
        raise web.HTTPBadRequest(
            text=f'{{"error": "missing {name}"}}', content_type="application/json"
        )
    try:
        return [ipaddress.ip_address(t) for t in texts]
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error": "{name} is not an IP address"}}', content_type="application/json"
        ) from None


async def _request(request: web.Request, host: bool) -> web.Response:
    agent = request.app[AGENT]
    addresses = _ips(request, "address")
    address = addresses[0]
    asked: IP | list[IP] = address if len(addresses) == 1 else addresses
    group = request.query.get("group")
    try:
        if host:
            target = _ip(request, "host")
            done = agent.move(asked, target, group)
        else:
            done = agent.failback(asked, group)
    except KeyError:
        return web.json_response({"error": f"no group {group!r}"}, status=404)
    except LookupError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    out: dict[str, Any] = {"group": done, "address": str(address)}
    if len(addresses) > 1:
        out["addresses"] = [str(a) for a in addresses]
    if host:
        out["host"] = str(target)
    return web.json_response(out)


async def _move(request: web.Request) -> web.Response:
    return await _request(request, True)


async def _failback(request: web.Request) -> web.Response:
    return await _request(request, False)


async def _pause(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        body = None
    text = body.get("for") if isinstance(body, dict) else None
    if not isinstance(text, str):
        return web.json_response({"error": 'the body must be {"for": DURATION}'}, status=400)
    try:
        duration = parse_duration(text)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    try:
        done = request.app[AGENT].pause(duration)
    except Refused as exc:
        return web.json_response(exc.body, status=409)
    return web.json_response(done)


def read_token(path: str | None) -> str | None:
    """The bearer token in ``path`` (None: no file, or an empty one)."""
    if path is None:
        return None
    return Path(path).read_text().strip() or None


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving; the caller keeps the runner and calls ``cleanup()`` at exit."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner
