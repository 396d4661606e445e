"""The typed status renders byte for byte the JSON the dict-building code of
before (``rais.admin.status.group_status`` and ``rais.admin.agent_status.agent_status``
returning dicts, ``Part.status`` and ``GroupDns.status`` returning dicts) made
for the same state. The old code is kept here, verbatim apart from its names,
as the reference; it is compared on core clusters (spares, an observer,
quiesced and failing hosts, loads against capacity 0, orphans, expiry, a
leave, restarts) and on running agents (tests passing, failing and pending, a
DNS group with a publisher, a part restarting)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusterkit import Cluster as CoreCluster
from clusterkit import make_config
from test_agent import Cluster
from test_agent_supervision import CrashingProbes, probes_factory

from rais import __version__
from rais.admin.agent_status import agent_status
from rais.admin.status import group_status
from rais.admin.status_view import AgentStatus, GroupStatus, TestStatus, status_json
from rais.core.addr import fmt
from rais.core.core import Core
from rais.core.messages import HostEntry
from rais.core.utilization import utilization
from rais.core.view import CoreView
from rais.dns.config import GroupDnsConfig, ZoneFileConfig
from rais.dns.group import GroupDns, _kind
from rais.probes.spec import TestSpec
from rais.runtime.group import GroupRunner
from rais.runtime.supervise import Part

# ------------------------------------------------------------ the reference (the old code)


def old_host(
    entry: HostEntry, *, live: bool, last_heard_s: float | None, scale: int
) -> dict[str, Any]:
    return {
        "id": fmt(entry.id),
        "control": [fmt(c) for c in entry.control],
        "live": live,
        "ok": entry.ok,
        "quiesced": entry.quiesced,
        "spare": entry.preferred is None and not entry.observer,
        "observer": entry.observer,
        "leaving": entry.leaving,
        "load": entry.load,
        "capacity": entry.capacity,
        "utilization": utilization(entry.load, entry.capacity, scale),
        "preferred": (
            f"{fmt(entry.preferred)}/{entry.prefixlen}" if entry.preferred is not None else None
        ),
        "served": [{"address": fmt(a), "state": s.name.lower()} for a, s in entry.served],
        "last_heard_s": last_heard_s,
        "paused_s": None,
    }


def old_group_status(
    view: CoreView,
    counters: dict[str, int],
    *,
    scale: int = 1000,
    tests: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    hosts = [
        old_host(
            m.entry,
            live=m.live,
            last_heard_s=0.0 if m.this_host else round(m.age, 3),
            scale=scale,
        )
        for m in view.members
    ]
    hosts.sort(key=lambda h: (not h["live"], h["id"]))
    holders: dict[str, list[tuple[str, str]]] = {}
    for h in hosts:
        if h["live"]:
            for s in h["served"]:
                holders.setdefault(s["address"], []).append((h["id"], s["state"]))
    addresses: list[dict[str, Any]] = []
    for row in view.rows:
        address = fmt(row.address)
        held = holders.pop(address, [])
        addresses.append(
            {
                "address": f"{address}/{row.prefixlen}",
                "preferred": fmt(row.preferred),
                "holders": [h for h, _ in held],
                "state": held[0][1]
                if len(held) == 1
                else ("unassigned" if not held else "duplicate"),
                "orphan_s": None if row.orphan_s is None else round(row.orphan_s, 3),
            }
        )
    for address, held in holders.items():
        addresses.append(
            {
                "address": address,
                "preferred": None,
                "holders": [h for h, _ in held],
                "state": old_state(held),
                "orphan_s": None,
            }
        )
    addresses.sort(key=lambda a: a["address"])
    return {
        "name": view.group,
        "host": fmt(view.host),
        "leader": fmt(view.leader) if view.leader is not None else None,
        "is_leader": view.is_leader,
        "settled": view.settled,
        "ok": view.ok,
        "quiesced": view.quiesced,
        "load_scale": scale,
        "tests": tests or [],
        "hosts": hosts,
        "addresses": addresses,
        "expired": sorted(fmt(a) for a in view.expired),
        "dropped": dict(view.drops),
        "counters": dict(counters),
    }


def old_state(held: list[tuple[str, str]]) -> str:
    if not held:
        return "unassigned"
    return held[0][1] if len(held) == 1 else "duplicate"


def old_part_status(p: Part, now: float) -> dict[str, Any]:
    return {
        "name": p.name,
        "group": p.group or None,
        "essential": p.essential,
        "state": p.state,
        "restarts": p.restarts,
        "last_error": p.last_error,
        "since_s": round(now - p.since, 3),
    }


def old_dns_status(gd: GroupDns) -> dict[str, Any]:
    a = gd.answer
    pubs: dict[str, Any] = {}
    for who, pub in gd.publishers:
        kind = _kind(pub)
        st = pub.stats
        pubs[kind] = {
            "publisher": who,
            "active": who == "self" or gd.leading,
            "ok": st.ok,
            "failed": st.failed_total,
            "last_error": st.last_error,
        }
    return {
        "name": gd.config.name,
        "warming": gd.warming,
        "serial": gd.serial,
        "addresses": [str(x) for x in a.addresses] if a else [],
        "shed": sorted(str(x) for x in a.shed) if a else [],
        "publishers": pubs,
    }


def old_agent_status(
    now: float,
    *,
    host: str,
    epoch: int,
    parts: list[dict[str, Any]],
    runners: Iterable[GroupRunner],
    dns: Mapping[str, GroupDns],
    test_states: Callable[[], Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        "version": __version__,
        "host": host,
        "epoch": epoch,
        "parts": parts,
        "groups": [
            old_group_status(
                r.core.view(now),
                dict(r.counters) | old_transport_counters(r),
                scale=r.config.load_scale,
                tests=old_tests(r.config.tests, now, test_states()),
            )
            | ({"dns": old_dns_status(dns[r.config.name])} if r.config.name in dns else {})
            for r in runners
        ],
    }


def old_tests(
    names: tuple[str, ...], now: float, states: Mapping[str, Any]
) -> list[dict[str, Any]]:
    out = []
    for name in names:
        st = states.get(name)
        out.append(
            {
                "name": name,
                "ok": None if st is None else st.ok,
                "reason": "" if st is None else st.reason,
                "since_s": None if st is None or st.ok is None else round(now - st.since, 3),
            }
        )
    return out


def old_transport_counters(runner: GroupRunner) -> dict[str, int]:
    return {f"transport_{k}": int(v) for k, v in runner.drivers.transport.counters.items()}


# ------------------------------------------------------------ comparing


def dumps(status: dict[str, Any]) -> str:
    return json.dumps(status, sort_keys=False)


ADDED_GROUP_FIELDS = ("wire_version", "common_features", "link", "guard")
ADDED_HOST_FIELDS = ("wire_versions", "features")
"""Fields added since the reference (issue 12; ``link`` and ``guard``: issue
13): they come last, in this order, and are left out before comparing with it."""


def without_added(status: dict[str, Any]) -> dict[str, Any]:
    """``status`` (an agent's or one group's) without the fields added since the
    reference, after checking that they are there, last, in their order."""

    def strip(d: dict[str, Any], added: tuple[str, ...]) -> dict[str, Any]:
        assert tuple(d)[-len(added) :] == added, tuple(d)
        return {k: v for k, v in d.items() if k not in added}

    def group(g: dict[str, Any]) -> dict[str, Any]:
        g = strip(g, ADDED_GROUP_FIELDS)
        g["hosts"] = [strip(h, ADDED_HOST_FIELDS) for h in g["hosts"]]
        return g

    if "groups" in status:
        return {**status, "groups": [group(g) for g in status["groups"]]}
    return group(status)


def as_json(group: GroupStatus) -> dict[str, Any]:
    whole = status_json(AgentStatus("0", group.host, 1, (), (group,)))
    return without_added(whole["groups"][0])


TESTS: list[dict[str, Any]] = [
    {"name": "web", "ok": True, "reason": "HTTP 200", "since_s": 3.25},
    {"name": "maint", "ok": False, "reason": "flag file", "since_s": 0.5},
    {"name": "db", "ok": None, "reason": "", "since_s": None},
]


def same_group(core: Core, now: float, scale: int, counters: dict[str, int]) -> str:
    """The old and the new JSON of one core's group, which must be equal."""
    view = core.view(now)
    old = dumps(old_group_status(view, counters, scale=scale, tests=TESTS))
    typed = [TestStatus(t["name"], t["ok"], t["reason"], t["since_s"]) for t in TESTS]
    new = dumps(as_json(group_status(view, counters, scale=scale, tests=typed)))
    assert new == old
    assert dumps(old_group_status(view, {})) == dumps(as_json(group_status(view, {})))
    return new


def test_core_clusters_render_the_same_json() -> None:
    c = CoreCluster(
        [
            *(make_config(n, orphan_timeout=1.0) for n in (1, 2, 3, 4)),
            make_config(5, spare=True, orphan_timeout=1.0),
            make_config(6, spare=True, orphan_timeout=1.0),
            make_config(7, observer=True, orphan_timeout=1.0),
        ],
        jitter=0.003,
        seed=3,
    )
    counters = {"acquired": 2, "transport_sent": 40, "transport_oversized_dropped": 1}
    seen: set[str] = set()
    steps: list[Callable[[], object]] = [
        lambda: None,
        lambda: c.quiesce(1),
        lambda: c.test_result(2, False),
        lambda: c.poke(0, lambda core, now: core.load_sample(now, 500, 0)),
        lambda: c.poke(3, lambda core, now: core.load_sample(now, 300, 2000)),
        lambda: c.kill(3),
        lambda: c.leave(0),
        lambda: [c.test_result(i, False) for i in (1, 4, 5)],  # nobody can take an orphan
        lambda: c.kill(2),
        lambda: c.restart(3),
        lambda: [c.test_result(i, True) for i in (1, 4, 5)],
    ]
    for step in steps:
        step()
        for _ in range(40):
            c.step(0.037)
            for node in c.live():
                for scale in (1000, 100):
                    seen.add(same_group(node.core, c.now, scale, counters))
    text = "".join(seen)
    for wanted in ('"orphan_s": 0.', '"expired": ["198.51.100.', '"state": "unassigned"'):
        assert wanted in text, wanted
    for wanted in ('"quiesced": true', '"ok": false', '"capacity": 0, "utilization": 1000'):
        assert wanted in text, wanted
    assert '"spare": true' in text and '"observer": true' in text and '"leaving": true' in text
    assert '"live": false' in text and '"leader": null' in text


async def test_running_agents_render_the_same_json(tmp_path: Path) -> None:
    zone = ZoneFileConfig(str(tmp_path / "www.zone"), publisher="self")
    dns = GroupDnsConfig("www.rais.test.", "rais.test.", zonefile=zone)
    c = Cluster(tmp_path, 3, spares=1, tests=("web", "db"), dns=dns)
    web = TestSpec("web", "file", path=str(tmp_path / "up"))
    hubs = {h.n: CrashingProbes(1 if h.n == 2 else 0, {"web": web}) for h in c.hosts}
    for h in c.hosts:
        h.config = replace(h.config, tests={"web": web})
        hubs[h.n].set_test("web", h.n != 3)
        await c.start(h, probes=probes_factory(hubs[h.n]))
    loop = asyncio.get_running_loop()
    texts: list[str] = []

    def compare() -> None:
        for h in c.hosts:
            a = h.agent
            if a is None or h.task is None or h.task.done():
                continue
            now = loop.time()
            sup = a.supervisor
            parts = list(sup.parts.values()) if sup is not None else []
            common: dict[str, Any] = {
                "host": str(a.config.host.control[0]),
                "epoch": a.epoch,
                "runners": a.groups.values(),
                "dns": a.dns.groups,
                "test_states": a.probes.test_states,
            }
            old = old_agent_status(now, parts=[old_part_status(p, now) for p in parts], **common)
            new = agent_status(now, parts=[p.status(now) for p in parts], **common)
            assert dumps(without_added(status_json(new))) == dumps(old)
            texts.append(dumps(old))

    try:
        for _ in range(10):
            compare()
            await asyncio.sleep(0.03)
        hubs[2].go.set()  # host 2's probes raise: a part restarting

        def restarting() -> bool:
            compare()
            return any('"state": "restarting"' in t for t in texts[-3:])

        await c.until(restarting)
        for _ in range(10):
            compare()
            await asyncio.sleep(0.03)
    finally:
        for h in c.hosts:
            if h.task is not None and not h.task.done():
                await c.stop(h)
    text = "".join(texts)
    assert '"dns": {"name": "www.rais.test."' in text and '"zonefile": {"publisher": "self"' in text
    assert '"name": "db", "ok": null' in text and '"state": "restarting"' in text
    assert '"ok": false, "reason": "' in text
