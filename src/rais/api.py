"""The local admin HTTP API (aiohttp, run with AppRunner inside the agent's loop).

GET  /v1/status              status of every group as JSON
POST /v1/quiesce[?group=G]   quiesce every group, or one
POST /v1/unquiesce[?group=G]
"""

from __future__ import annotations

import hmac
from typing import Any, Protocol

from aiohttp import web


class Controlled(Protocol):
    def status(self) -> dict[str, Any]: ...

    def quiesce(self, group: str | None) -> list[str]:
        """Quiesce; returns the groups it applied to (KeyError: no such group)."""
        ...

    def unquiesce(self, group: str | None) -> list[str]: ...


AGENT: web.AppKey[Controlled] = web.AppKey("agent")


def make_app(agent: Controlled, token: str | None = None) -> web.Application:
    middlewares = [_auth(token)] if token else []
    app = web.Application(middlewares=middlewares)
    app[AGENT] = agent
    app.router.add_get("/v1/status", _status)
    app.router.add_post("/v1/quiesce", _quiesce)
    app.router.add_post("/v1/unquiesce", _unquiesce)
    return app


def _auth(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    return check


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


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving; the caller keeps the runner and calls ``cleanup()`` at exit."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner
