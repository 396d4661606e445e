"""The admin API and the status table, against a stub agent."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from rais.admin.api import make_app
from rais.admin.status import group_status, render
from rais.admin.status_view import AgentStatus, GroupStatus, TestStatus, status_json
from rais.base.ip import IP
from rais.core.addr import pack
from rais.core.config import CoreConfig
from rais.core.core import Core


def as_json(group: GroupStatus) -> dict[str, Any]:
    """One group's part of the status JSON."""
    whole = status_json(AgentStatus("0", group.host, 1, (), (group,)))
    return whole["groups"][0]  # type: ignore[no-any-return]


class Stub:
    def __init__(self) -> None:
        self.quiesced: set[str] = set()

    def status(self) -> dict[str, Any]:
        return {"groups": [{"name": g, "quiesced": g in self.quiesced} for g in ("a", "b")]}

    def quiesce(self, group: str | None) -> list[str]:
        names = ["a", "b"] if group is None else [{"a": "a", "b": "b"}[group]]
        self.quiesced |= set(names)
        return names

    def unquiesce(self, group: str | None) -> list[str]:
        names = ["a", "b"] if group is None else [{"a": "a", "b": "b"}[group]]
        self.quiesced -= set(names)
        return names

    def move(self, address: IP | Sequence[IP], host: IP, group: str | None) -> str:
        raise LookupError("not here")

    def failback(self, address: IP | Sequence[IP], group: str | None) -> str:
        raise ValueError("refused")

    def pause(self, duration: float) -> dict[str, Any]:
        return {"groups": ["www"], "for_s": duration}

    def metrics_text(self) -> tuple[bytes, str]:
        return b"rais_x 1\n", "text/plain; version=0.0.4; charset=utf-8"


async def test_status_quiesce_unquiesce() -> None:
    stub = Stub()
    async with TestClient(TestServer(make_app(stub))) as client:
        resp = await client.get("/v1/status")
        assert resp.status == 200
        assert (await resp.json())["groups"][0]["name"] == "a"
        resp = await client.post("/v1/quiesce?group=b")
        assert resp.status == 200 and (await resp.json())["groups"] == ["b"]
        assert stub.quiesced == {"b"}
        resp = await client.post("/v1/quiesce?group=nope")
        assert resp.status == 404
        resp = await client.get("/v1/quiesce")
        assert resp.status == 405  # mutations are POST only
        resp = await client.post("/v1/unquiesce")
        assert (await resp.json())["groups"] == ["a", "b"] and not stub.quiesced


async def test_token_is_required_when_configured() -> None:
    async with TestClient(TestServer(make_app(Stub(), token="s3cret"))) as client:
        assert (await client.get("/v1/status")).status == 401
        bad = {"Authorization": "Bearer wrong"}
        assert (await client.get("/v1/status", headers=bad)).status == 401
        good = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/v1/status", headers=good)).status == 200


def test_status_of_a_lone_core_and_its_table() -> None:
    cfg = CoreConfig(
        group="www",
        control=(pack("192.0.2.1"),),
        keys=(b"k",),
        preferred=pack("198.51.100.1"),
        prefixlen=24,
    )
    core = Core(cfg, epoch=1, rng=random.Random(1), now=0.0)
    core.handle_timer(0.0)
    core.effects()
    status = as_json(group_status(core.view(0.0), {"acquired": 0}))
    assert status["host"] == "192.0.2.1" and status["name"] == "www"
    assert status["hosts"][0]["preferred"] == "198.51.100.1/24"
    assert not status["hosts"][0]["spare"]
    text = render({"groups": [status]})
    assert "group www" in text and "192.0.2.1" in text and "198.51.100.1/24" in text
    assert status["hosts"][0]["utilization"] == 0  # no load objects (0/0): idle
    assert "0 (0/0)" in text
    core.load_sample(0.0, 300, 2000)
    tests = [TestStatus("web", False, "HTTP 503", 1.0), TestStatus("maint", True, "missing", 9.0)]
    status = as_json(group_status(core.view(0.0), {}, scale=100, tests=tests))
    assert status["hosts"][0]["utilization"] == 15 and status["load_scale"] == 100
    text = render({"groups": [status]})
    assert "test web" in text and "FAILING  (HTTP 503)" in text
    assert "test maint" in text and "passing" in text and "15 (300/2000)" in text
    status["dns"] = {
        "name": "www.rais.test.",
        "addresses": ["198.51.100.1"],
        "shed": ["198.51.100.2"],
        "serial": 7,
        "publishers": {},
    }
    text = render({"groups": [status]})
    assert "dns www.rais.test. -> 198.51.100.1  (shed for load: 198.51.100.2)  serial 7" in text


async def test_move_and_failback_errors() -> None:
    async with TestClient(TestServer(make_app(Stub()))) as client:
        resp = await client.post("/v1/move?address=192.0.2.1&host=192.0.2.2")
        assert resp.status == 404 and (await resp.json()) == {"error": "not here"}
        resp = await client.post("/v1/failback?address=192.0.2.1")
        assert resp.status == 409 and (await resp.json()) == {"error": "refused"}
        resp = await client.post("/v1/move?address=192.0.2.1")
        assert resp.status == 400 and (await resp.json()) == {"error": "missing host"}
        assert (await client.get("/v1/failback?address=192.0.2.1")).status == 405


async def test_cross_site_and_rebound_names_are_refused() -> None:
    stub = Stub()
    async with TestClient(TestServer(make_app(stub))) as client:
        form = {
            "Origin": "http://evil.example",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        resp = await client.post("/v1/quiesce", headers=form, data="x=1")
        assert resp.status == 403 and not stub.quiesced
        rebound = {"Host": "evil.example:7400"}
        assert (await client.get("/v1/status", headers=rebound)).status == 403
        assert (await client.get("/v1/status", headers={"Host": "localhost:7400"})).status == 200
        assert (await client.get("/v1/status", headers={"Host": "[::1]:7400"})).status == 200
        assert (await client.post("/v1/quiesce")).status == 200  # the CLI: no Origin
    # with a token, any name, but the token on everything except the page
    async with TestClient(TestServer(make_app(stub, token="t"))) as client:
        named = {"Host": "rais.example:7400"}
        assert (await client.get("/v1/status", headers=named)).status == 401
        auth = named | {"Authorization": "Bearer t"}
        assert (await client.get("/v1/status", headers=auth)).status == 200


def test_render_shows_parts_that_failed() -> None:
    parts = [
        {
            "name": "probes",
            "group": None,
            "essential": False,
            "state": "running",
            "restarts": 0,
            "last_error": "",
            "since_s": 4.0,
        },
        {
            "name": "dns update www",
            "group": "www",
            "essential": False,
            "state": "restarting",
            "restarts": 2,
            "last_error": "OSError: boom",
            "since_s": 0.2,
        },
    ]
    text = render({"parts": parts, "groups": []})
    assert "probes" not in text  # healthy and never restarted: not shown
    assert "part dns update www (group www): RESTARTING, 2 restarts: OSError: boom" in text
