"""The dashboard in a real headless Chromium (Playwright), against an aiohttp server
on 127.0.0.1 running rais.admin.web's routes with a fake agent and stub POST routes.

Skipped when Playwright or Chromium is missing, except under CI=true (then it fails).
(tests/test_dev_browser.py takes docs/dashboard.png from a real ``rais dev`` cluster.)
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from rais.admin.web import Source, add_routes, is_public, same_origin_middleware

try:
    from playwright.async_api import Browser, Page, async_playwright

    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - the CI image has it
    HAVE_PLAYWRIGHT = False

CHROMIUM = "/usr/bin/chromium"
SOURCE: web.AppKey[Source] = web.AppKey("source")
TOKEN = "correct horse battery staple"


def _host(
    id_: str, preferred: str | None, *, load: int, heard: float, spare: bool = False
) -> dict[str, Any]:
    return {
        "id": id_,
        "control": [id_],
        "live": True,
        "ok": True,
        "quiesced": False,
        "spare": spare,
        "observer": False,
        "leaving": False,
        "load": load,
        "capacity": 1000,
        "utilization": load,
        "preferred": preferred,
        "served": [],
        "last_heard_s": heard,
    }


def _address(address: str, holder: str | None, preferred: str) -> dict[str, Any]:
    return {
        "address": address,
        "preferred": preferred,
        "holders": [holder] if holder else [],
        "state": "online" if holder else "unassigned",
        "orphan_s": None,
    }


def _guard(mode: str, **fields: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "quorate": True,
        "votes": 0,
        "needed": 0,
        "voters": [],
        "vote": "192.0.2.1",
        "key_held": False,
        "token": 0,
        "arbiter": "",
        "holding": False,
        "lease_left_s": 1.93,
        "quorate_for_s": 3605.0,
        "on_arbiter_loss": "hold",
    } | fields


def initial_status() -> dict[str, Any]:
    www_hosts = [
        _host("192.0.2.1", "198.51.100.1/24", load=412, heard=0.0),
        _host("192.0.2.2", "198.51.100.2/24", load=655, heard=0.04),
        _host("192.0.2.3", "198.51.100.3/24", load=871, heard=0.07),
        _host("192.0.2.4", None, load=23, heard=0.05, spare=True),
    ]
    db_hosts = [
        _host("192.0.2.1", "2001:db8:5ea:1000:8a2e:370:7334:10/64", load=120, heard=0.0),
        _host("192.0.2.5", None, load=0, heard=0.09, spare=True),
    ]
    return {
        "version": "0.1.0",
        "host": "192.0.2.1",
        "epoch": 7,
        "groups": [
            {
                "name": "www",
                "host": "192.0.2.1",
                "leader": "192.0.2.1",
                "is_leader": True,
                "settled": True,
                "ok": True,
                "quiesced": False,
                "load_scale": 1000,
                "tests": [
                    {"name": "http", "ok": True, "reason": "", "since_s": 3605.2},
                    {"name": "maintenance", "ok": True, "reason": "", "since_s": 3605.2},
                ],
                "hosts": www_hosts,
                "addresses": [
                    _address("198.51.100.1/24", "192.0.2.1", "192.0.2.1"),
                    _address("198.51.100.2/24", "192.0.2.2", "192.0.2.2"),
                    _address("198.51.100.3/24", "192.0.2.3", "192.0.2.3"),
                ],
                "expired": [],
                "dropped": {"bad_mac": 0, "replayed": 0},
                "counters": {},
                "dns": {
                    "name": "www.rais.test",
                    "serial": 41,
                    "addresses": ["198.51.100.1", "198.51.100.2"],
                    "shed": ["198.51.100.3"],
                    "publishers": {
                        "update": {
                            "publisher": "leader",
                            "active": True,
                            "ok": True,
                            "failed": 0,
                            "last_error": None,
                        }
                    },
                },
                "guard": _guard(
                    "majority", votes=3, needed=2, voters=["192.0.2.1", "192.0.2.2", "192.0.2.3"]
                ),
            },
            {
                "name": "db",
                "host": "192.0.2.1",
                "leader": "192.0.2.1",
                "is_leader": True,
                "settled": True,
                "ok": True,
                "quiesced": False,
                "load_scale": 1000,
                "tests": [],
                "hosts": db_hosts,
                "addresses": [
                    _address("2001:db8:5ea:1000:8a2e:370:7334:10/64", "192.0.2.1", "192.0.2.1")
                ],
                "expired": [],
                "dropped": {},
                "counters": {},
                "guard": _guard("etcd", key_held=True, token=42, arbiter="reachable"),
            },
        ],
    }


class FakeAgent:
    """The Source, plus what the stub POST routes record."""

    def __init__(self) -> None:
        self.state = initial_status()
        self.history: list[dict[str, Any]] = []
        self.queues: list[asyncio.Queue[dict[str, Any]]] = []
        self.posts: list[tuple[str, dict[str, str], str | None]] = []
        for kind, host, address, reason in [
            ("host-joined", "192.0.2.4", None, ""),
            ("leader-changed", "192.0.2.1", None, "lowest live id"),
            ("acquired", "192.0.2.1", "198.51.100.1", "preferred host"),
            ("acquired", "192.0.2.2", "198.51.100.2", "preferred host"),
            ("acquired", "192.0.2.3", "198.51.100.3", "preferred host"),
            ("dns-published", "192.0.2.1", None, "www.rais.test serial 41"),
        ]:
            self.emit(kind, host, address, reason)

    def status(self) -> dict[str, Any]:
        return copy.deepcopy(self.state)

    def events_since(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self.history if e["seq"] > seq]

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self.queues.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.queues.remove(q)

    def emit(self, kind: str, host: str, address: str | None, reason: str) -> None:
        seq = len(self.history) + 1
        ev = {
            "seq": seq,
            "time": round(time.time(), 3),
            "group": "www",
            "host": host,
            "kind": kind,
            "address": address,
            "reason": reason,
        }
        self.history.append(ev)
        for q in self.queues:
            q.put_nowait(ev)

    def group(self, name: str = "www") -> dict[str, Any]:
        return next(g for g in self.state["groups"] if g["name"] == name)


async def _stub(request: web.Request) -> web.Response:
    agent = request.app[SOURCE]
    assert isinstance(agent, FakeAgent)
    verb = request.path.rsplit("/", 1)[-1]
    agent.posts.append((verb, dict(request.query), request.headers.get("Authorization")))
    if verb in ("quiesce", "unquiesce"):
        agent.group(request.query["group"])["quiesced"] = verb == "quiesce"
        return web.json_response({"groups": [request.query["group"]]})
    if request.query.get("host") == "192.0.2.2":
        return web.json_response({"error": "192.0.2.2 already holds an address"}, status=409)
    return web.json_response({"group": "www", "address": request.query["address"]})


def _token_auth(token: str) -> Any:
    """What the agent's token middleware does, letting the page and its files through."""
    expected = f"Bearer {token}"

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if not is_public(request) and request.headers.get("Authorization") != expected:
            return web.json_response({"error": "unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    return check


class Served:
    def __init__(self, agent: FakeAgent, token: str | None = None, port: int = 0) -> None:
        auth = [_token_auth(token)] if token else []
        self.app = web.Application(middlewares=[same_origin_middleware(), *auth])
        self.app[SOURCE] = agent
        add_routes(self.app, SOURCE)
        for verb in ("quiesce", "unquiesce", "failback", "move"):
            self.app.router.add_post(f"/v1/{verb}", _stub)
        self.runner = web.AppRunner(self.app, shutdown_timeout=2)
        self.port = port

    async def __aenter__(self) -> str:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.port = self.runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}/"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    missing = None
    if not HAVE_PLAYWRIGHT:
        missing = "playwright is not installed"
    elif not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} is missing"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests need it under CI: {missing}")
        pytest.skip(missing)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def agent() -> FakeAgent:
    return FakeAgent()


async def open_page(browser: Browser, url: str, width: int = 1280, height: int = 860) -> Page:
    page = await browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    setattr(page, "js_errors", errors)  # noqa: B010
    await page.goto(url)
    return page


def js_errors(page: Page) -> list[str]:
    errors: list[str] = getattr(page, "js_errors")  # noqa: B009
    # Chromium logs every 4xx answer (a refused token, a refused move): not a script error
    return [e for e in errors if not e.startswith("Failed to load resource")]


ROW = "section[data-group=www] table.{table} tbody tr[data-key='{key}']"


async def test_page_shows_groups_and_follows_changes(browser: Browser, agent: FakeAgent) -> None:
    async with Served(agent) as url:
        page = await open_page(browser, url)
        www = page.locator("section[data-group=www]")
        await www.wait_for()
        assert "leader 192.0.2.1 (this host)" in await www.locator(".leader").inner_text()
        assert await www.locator("table.hosts tbody tr").count() == 4
        assert await www.locator("table.addresses tbody tr").count() == 3
        text = await www.inner_text()
        for needle in ("192.0.2.4", "spare", "198.51.100.3/24", "www.rais.test", "871 (871/1000)"):
            assert needle in text
        assert "guard majority 3/3 quorate, 2 needed" in text
        db = page.locator("section[data-group=db]")
        assert await db.count() == 1
        assert "guard etcd key held, token 42" in await db.inner_text()
        await page.locator("#feed li").nth(5).wait_for()  # the recent history

        # host .3 dies and the spare takes its address: shown within a second, no reload
        loop = asyncio.get_running_loop()
        www_status = agent.group()
        www_status["hosts"][2] |= {"live": False, "ok": False, "last_heard_s": 0.31}
        www_status["addresses"][2] |= {"holders": ["192.0.2.4"], "orphan_s": 42.0}
        dead = ROW.format(table="hosts", key="192.0.2.3")
        moved = ROW.format(table="addresses", key="198.51.100.3/24")
        started = loop.time()
        await page.wait_for_function(
            """([dead, moved]) => {
                const host = document.querySelector(dead);
                const address = document.querySelector(moved);
                return host && host.children[1].textContent === "no"
                    && address && address.children[2].textContent === "192.0.2.4";
            }""",
            arg=[dead, moved],
            timeout=3000,
        )
        shown = loop.time() - started
        assert shown < 1.0, f"the change took {shown:.3f} s to show"

        # an event appears at the top of the feed
        started = loop.time()
        agent.emit("acquired", "192.0.2.4", "198.51.100.3", "host 192.0.2.3 lost")
        first = page.locator("#feed li").first
        await page.wait_for_function(
            "() => document.querySelector('#feed li').textContent.includes('192.0.2.3 lost')",
            timeout=3000,
        )
        assert loop.time() - started < 1.0
        assert "198.51.100.3" in await first.inner_text()
        assert await page.locator("#feed li").count() == 7
        assert "expires in" in await page.locator(moved).inner_text()

        # the quorum is lost: the guard line says so
        agent.group()["guard"] |= {"votes": 1, "quorate": False, "quorate_for_s": None}
        await page.wait_for_function(
            "() => document.querySelector('section[data-group=www] li.guard.failing')"
            " && document.querySelector('section[data-group=www] li.guard')"
            ".textContent === 'guard majority 1/3 NOT QUORATE, 2 needed'",
            timeout=3000,
        )
        assert not js_errors(page)
        await page.close()


async def test_buttons_post_and_show_errors(browser: Browser, agent: FakeAgent) -> None:
    async with Served(agent) as url:
        page = await open_page(browser, url)
        www = page.locator("section[data-group=www]")
        await www.locator("button.quiesce", has_text="Quiesce").click()
        await www.locator("button.quiesce", has_text="Unquiesce").wait_for(timeout=2000)
        assert agent.posts[-1] == ("quiesce", {"group": "www"}, None)
        assert "quiesced" in await www.locator(".badges").inner_text()

        row = page.locator(ROW.format(table="addresses", key="198.51.100.2/24"))
        await row.locator("button.failback").click()
        await page.locator("#notice", has_text="failback 198.51.100.2: done").wait_for()
        assert agent.posts[-1] == ("failback", {"address": "198.51.100.2"}, None)

        row = page.locator(ROW.format(table="addresses", key="198.51.100.1/24"))
        options = await row.locator("select option").all_inner_texts()
        assert options == ["move to…", "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]
        await row.locator("select").select_option("192.0.2.4")
        await row.locator("button.move").click()
        await page.locator("#notice", has_text="done").wait_for()
        assert agent.posts[-1] == ("move", {"address": "198.51.100.1", "host": "192.0.2.4"}, None)

        await row.locator("select").select_option("192.0.2.2")
        await row.locator("button.move").click()
        notice = page.locator("#notice.error")
        await notice.wait_for()
        assert "192.0.2.2 already holds an address" in await notice.inner_text()
        assert not js_errors(page)
        await page.close()


async def test_token_is_asked_once_and_sent(browser: Browser, agent: FakeAgent) -> None:
    async with Served(agent, token=TOKEN) as url:
        page = await open_page(browser, url)
        form = page.locator("form#login")
        await form.wait_for()
        assert await page.locator("section.group").count() == 0
        await page.fill("#token", "wrong")
        await page.click("form#login button[type=submit]")
        await page.locator("#login-error", has_text="refused").wait_for()
        await page.fill("#token", TOKEN)
        await page.click("form#login button[type=submit]")
        www = page.locator("section[data-group=www]")
        await www.wait_for()
        assert await form.is_hidden()
        await www.locator("button.quiesce").click()
        async with asyncio.timeout(2):
            while not agent.posts:
                await asyncio.sleep(0.02)
        assert agent.posts[-1] == ("quiesce", {"group": "www"}, f"Bearer {TOKEN}")
        await page.reload()  # kept in sessionStorage: not asked again
        await www.wait_for()
        assert await form.is_hidden()
        assert not js_errors(page)
        await page.close()


async def test_reconnects_when_the_agent_restarts(browser: Browser, agent: FakeAgent) -> None:
    served = Served(agent)
    url = await served.__aenter__()
    try:
        page = await open_page(browser, url)
        await page.locator("#conn[data-state=live]").wait_for()
    finally:
        await served.__aexit__()
    await page.locator("#conn[data-state=offline]").wait_for(timeout=3000)
    agent.group()["leader"] = "192.0.2.2"
    agent.group()["is_leader"] = False
    async with Served(agent, port=served.port):
        await page.locator("#conn[data-state=live]").wait_for(timeout=5000)
        leader = page.locator("section[data-group=www] .leader")
        assert await leader.inner_text() == "leader 192.0.2.2"
    await page.close()


async def test_phone_width_has_no_horizontal_scrolling(browser: Browser, agent: FakeAgent) -> None:
    async with Served(agent) as url:
        page = await open_page(browser, url, width=390, height=844)
        await page.locator("section[data-group=db] tbody tr").first.wait_for()
        await page.locator("#feed li").first.wait_for()
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        assert await page.locator("section[data-group=www] thead").first.is_hidden()  # cards
        assert not js_errors(page)
        await page.close()


async def test_one_page_per_group(browser: Browser, agent: FakeAgent) -> None:
    async with Served(agent) as url:
        page = await open_page(browser, url)
        await page.locator("section[data-group=db]").wait_for()
        await page.locator("section[data-group=db] h2 a").click()  # the group's own page
        await page.wait_for_url("**/?group=db")
        await page.locator("section[data-group=db] tbody tr").first.wait_for()
        assert await page.locator("section.group").count() == 1
        await page.goto(url + "?group=nope")
        await page.locator("#groups", has_text="No group nope on this host.").wait_for()
        assert not js_errors(page)
        await page.close()
