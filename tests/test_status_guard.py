"""The guard in the status (``GET /v1/status``'s ``guard`` object, last in each
group) and in ``rais status`` (one ``guard`` line, none without a guard)."""

from __future__ import annotations

from typing import Any

from test_lifetimes import guarded, runner

from rais.admin.status import group_status, guard_line, render
from rais.admin.status_view import AgentStatus, status_json

KEYS = [
    "mode",
    "quorate",
    "votes",
    "needed",
    "voters",
    "vote",
    "key_held",
    "token",
    "arbiter",
    "holding",
    "lease_left_s",
    "quorate_for_s",
    "on_arbiter_loss",
]


def group_json(r: Any) -> dict[str, Any]:
    view = r.core.view(r.loop.time())
    status = AgentStatus("0", "192.0.2.1", 1, (), (group_status(view, {}),))
    out: dict[str, Any] = status_json(status)["groups"][0]
    return out


async def test_without_a_guard_the_object_says_none_and_status_no_line() -> None:
    r, _ = runner()
    g = group_json(r)
    assert list(g)[-1] == "guard" and list(g["guard"]) == KEYS
    assert g["guard"] == {
        "mode": "none",
        "quorate": None,
        "votes": 0,
        "needed": 0,
        "voters": [],
        "vote": None,
        "key_held": False,
        "token": 0,
        "arbiter": "",
        "holding": False,
        "lease_left_s": None,
        "quorate_for_s": None,
        "on_arbiter_loss": "hold",
    }
    assert "guard" not in render({"groups": [g]})


async def test_with_a_guard() -> None:
    r, _ = guarded()
    g = group_json(r)["guard"]
    assert list(g) == KEYS
    assert (g["mode"], g["voters"], g["needed"]) == ("majority", ["192.0.2.1"], 1)
    text = render({"groups": [group_json(r)]})
    assert "  guard majority, leader NOT QUORATE\n" in text  # not leading yet


def test_guard_lines() -> None:
    base: dict[str, Any] = dict.fromkeys(KEYS, None) | {"voters": [], "lease_left_s": None}
    majority = base | {"mode": "majority", "quorate": True, "votes": 3, "needed": 2}
    majority["voters"] = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"]
    assert guard_line(majority, True) == "majority 3/5 quorate, 2 needed"
    lost = majority | {"quorate": False, "votes": 1}
    assert guard_line(lost, True) == "majority 1/5 NOT QUORATE, 2 needed"
    assert guard_line(majority | {"lease_left_s": 1.87}, False) == (
        "majority, leader quorate, lease 1.9s left"
    )
    etcd = base | {"mode": "etcd", "quorate": True, "key_held": True, "token": 42}
    assert guard_line(etcd | {"arbiter": "reachable"}, True) == "etcd key held, token 42"
    gone = etcd | {"key_held": False, "arbiter": "unreachable", "holding": True}
    assert guard_line(gone, True) == (
        "etcd key NOT HELD, etcd UNREACHABLE, holding on, nothing new assigned"
    )
    other = etcd | {"key_held": False, "quorate": False, "arbiter": "reachable"}
    assert guard_line(other, True) == "etcd key NOT HELD, NOT QUORATE"
