"""Prometheus metrics: the exposition text, parsed back, from hand-built statuses
and from a real core's status."""

from __future__ import annotations

import random
import re

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter
from prometheus_client.parser import text_string_to_metric_families

import rais.admin.metrics
from rais.admin.metrics import ADDRESS_STATES, DROP_REASONS, LATENESS_BUCKETS, Metrics
from rais.admin.status import group_status
from rais.admin.status_view import (
    AddressStatus,
    AgentStatus,
    GroupStatus,
    HostStatus,
    ServedStatus,
    TestStatus,
)
from rais.core.addr import pack
from rais.core.config import CoreConfig
from rais.core.core import Core
from rais.core.effects import Acquire, EventKind
from rais.core.utilization import utilization
from rais.runtime.events import AgentEventKind

Key = tuple[str, tuple[tuple[str, str], ...]]


class Scrape:
    """One render, parsed: family types and sample values by (name, labels)."""

    def __init__(self, m: Metrics) -> None:
        body, ctype = m.render()
        assert ctype == CONTENT_TYPE_LATEST
        self.text = body.decode()
        self.types: dict[str, str] = {}
        self.values: dict[Key, float] = {}
        self.labels: list[dict[str, str]] = []
        for fam in text_string_to_metric_families(self.text):
            self.types[fam.name] = fam.type
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                assert key not in self.values, key
                self.values[key] = s.value
                self.labels.append(dict(s.labels))

    def get(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, tuple(sorted(labels.items()))))

    def __call__(self, name: str, **labels: str) -> float:
        value = self.get(name, **labels)
        assert value is not None, f"no sample {name} {labels}"
        return value

    def names(self) -> set[str]:
        return {name for name, _ in self.values}


def host(
    hid: str,
    *,
    live: bool = True,
    served: list[tuple[str, str]] | None = None,
    load: int = 0,
    capacity: int = 0,
    scale: int = 1000,
) -> HostStatus:
    return HostStatus(
        id=hid,
        control=(hid,),
        live=live,
        ok=True,
        quiesced=False,
        spare=not served,
        observer=False,
        leaving=False,
        load=load,
        capacity=capacity,
        utilization=utilization(load, capacity, scale),
        preferred=None,
        served=tuple(ServedStatus(a, s) for a, s in served or []),
        last_heard_s=0.0,
    )


def address(
    addr: str, state: str, holders: list[str], orphan_s: float | None = None
) -> AddressStatus:
    return AddressStatus(
        address=f"{addr}/24",
        preferred=holders[0] if holders else None,
        holders=tuple(holders),
        state=state,
        orphan_s=orphan_s,
    )


def www() -> GroupStatus:
    """Group www seen from 192.0.2.1: the leader, 4 hosts (one dead), 6 addresses."""
    return GroupStatus(
        name="www",
        host="192.0.2.1",
        leader="192.0.2.1",
        is_leader=True,
        settled=True,
        ok=True,
        quiesced=False,
        load_scale=1000,
        tests=(
            TestStatus("web", True, "", 3.0),
            TestStatus("maint", False, "flag", 1.0),
            TestStatus("db", None, "", None),
        ),
        hosts=(
            host(
                "192.0.2.1",
                served=[("198.51.100.1", "online"), ("198.51.100.5", "acquiring")],
                load=250,
                capacity=1000,
            ),
            host("192.0.2.2", served=[("198.51.100.2", "online"), ("198.51.100.6", "online")]),
            host("192.0.2.3", served=[("198.51.100.6", "online")]),
            host("192.0.2.4", live=False),
        ),
        addresses=(
            address("198.51.100.1", "online", ["192.0.2.1"]),
            address("198.51.100.2", "online", ["192.0.2.2"]),
            address("198.51.100.3", "unassigned", [], orphan_s=12.5),
            address("198.51.100.4", "releasing", ["192.0.2.3"]),
            address("198.51.100.5", "acquiring", ["192.0.2.1"]),
            address("198.51.100.6", "duplicate", ["192.0.2.2", "192.0.2.3"]),
        ),
        expired=("198.51.100.9",),
        dropped={"auth": 3, "replay": 2, "own": 40},
        counters={
            "acquired": 4,
            "transport_sent": 99,
            "transport_send_errors": 2,
            "transport_send_oversized": 1,
            "transport_receive_errors": 5,
            "transport_oversized_dropped": 7,
            "announcements": 12,
            "announce_errors": 1,
        },
    )


def db() -> GroupStatus:
    """Group db seen from 192.0.2.1: a quiesced spare, another host leads."""
    return GroupStatus(
        name="db",
        host="192.0.2.1",
        leader="192.0.2.7",
        is_leader=False,
        settled=False,
        ok=False,
        quiesced=True,
        load_scale=100,
        tests=(),
        hosts=(host("192.0.2.1"), host("192.0.2.7", served=[("203.0.113.1", "online")])),
        addresses=(address("203.0.113.1", "online", ["192.0.2.7"]),),
        expired=(),
        dropped={},
        counters={},
    )


def agent_status(*groups: GroupStatus) -> AgentStatus:
    return AgentStatus(version="0.1.0", host="192.0.2.1", epoch=7, parts=(), groups=groups)


def test_gauges_and_status_counters_from_a_hand_built_status() -> None:
    s = Scrape(Metrics(lambda: agent_status(www(), db())))
    assert s("rais_build_info", version="0.1.0") == 1
    assert s.types["rais_build_info"] == "gauge"
    # www: this host leads, holds one address online and is acquiring another
    assert s("rais_leader", group="www") == 1 and s("rais_leader", group="db") == 0
    assert s("rais_settled", group="www") == 1 and s("rais_settled", group="db") == 0
    assert s("rais_host_ok", group="www") == 1 and s("rais_host_ok", group="db") == 0
    assert s("rais_host_quiesced", group="www") == 0 and s("rais_host_quiesced", group="db") == 1
    assert s("rais_host_utilization_ratio", group="www") == pytest.approx(0.25)
    assert s("rais_host_utilization_ratio", group="db") == 0  # no load objects (0/0): idle
    assert s("rais_hosts_live", group="www") == 3 and s("rais_hosts_live", group="db") == 2
    assert s("rais_addresses_held", group="www") == 1 and s("rais_addresses_held", group="db") == 0
    want = {"online": 2, "acquiring": 1, "releasing": 1, "unassigned": 1, "duplicate": 1}
    assert {st: s("rais_addresses", group="www", state=st) for st in ADDRESS_STATES} == want
    assert s("rais_addresses", group="db", state="online") == 1
    assert s("rais_addresses", group="db", state="duplicate") == 0
    assert s("rais_addresses_orphaned", group="www") == 1
    assert s("rais_addresses_expired", group="www") == 1
    assert s("rais_addresses_expired", group="db") == 0
    assert s("rais_test_state", group="www", test="web") == 1
    assert s("rais_test_state", group="www", test="maint") == 0
    assert s("rais_test_state", group="www", test="db") == -1
    assert not [lb for lb in s.labels if lb.get("group") == "db" and "test" in lb]
    # cumulative numbers of the status, as counters
    assert s.types["rais_control_datagrams_dropped"] == "counter"
    drop = "rais_control_datagrams_dropped_total"
    assert s(drop, group="www", reason="auth") == 3
    assert s(drop, group="www", reason="replay") == 2
    assert s(drop, group="www", reason="own") == 40
    assert s(drop, group="www", reason="oversized") == 7  # the transport's, before decoding
    assert all(s(drop, group="db", reason=r) == 0 for r in DROP_REASONS)
    assert s("rais_control_send_errors_total", group="www") == 3
    assert s("rais_control_receive_errors_total", group="www") == 5
    assert s("rais_announcements_total", group="www") == 12
    assert s("rais_announce_errors_total", group="www") == 1
    assert s("rais_announcements_total", group="db") == 0
    for name in ("rais_leader", "rais_addresses", "rais_test_state", "rais_hosts_live"):
        assert s.types[name] == "gauge"


def test_a_real_core_status() -> None:
    cfg = CoreConfig(
        group="www",
        control=(pack("192.0.2.1"),),
        keys=(b"k",),
        preferred=pack("198.51.100.1"),
        prefixlen=24,
    )
    core = Core(cfg, epoch=1, rng=random.Random(1), now=0.0)
    now = 0.0
    status = [agent_status()]
    m = Metrics(lambda: status[0])

    def scrape() -> Scrape:
        status[0] = agent_status(group_status(core.view(now), {"acquired": 0}))
        return Scrape(m)

    s = scrape()  # before the first heartbeat: nothing held, no leader yet
    assert s("rais_leader", group="www") == 0 and s("rais_settled", group="www") == 0
    assert sum(s("rais_addresses", group="www", state=st) for st in ADDRESS_STATES) == 0
    assert s("rais_addresses_held", group="www") == 0 and s("rais_hosts_live", group="www") == 1
    while now < 1.0:
        timer = core.get_timer()
        assert timer is not None
        now = max(now, timer)
        core.handle_timer(now)
        for effect in core.effects():
            if isinstance(effect, Acquire):
                core.action_done(now, effect.address, True)
    core.load_sample(now, 300, 2000)
    s = scrape()
    assert s("rais_leader", group="www") == 1 and s("rais_settled", group="www") == 1
    assert s("rais_host_ok", group="www") == 1 and s("rais_host_quiesced", group="www") == 0
    assert s("rais_hosts_live", group="www") == 1
    assert s("rais_addresses_held", group="www") == 1
    assert s("rais_addresses", group="www", state="online") == 1
    assert s("rais_addresses", group="www", state="unassigned") == 0
    assert s("rais_addresses_orphaned", group="www") == 0
    assert s("rais_host_utilization_ratio", group="www") == pytest.approx(0.15)
    assert "198.51.100.1" not in str(s.labels) and "192.0.2.1" not in str(s.labels)


def test_counters_increase_with_events() -> None:
    m = Metrics(lambda: agent_status())
    before = Scrape(m)
    assert before.get("rais_events_total", group="www", kind="acquired") is None
    m.event(EventKind.ACQUIRED, "www")
    m.event("acquired", "www")
    m.event("release-failed", "www")
    m.event("dns-published", "db")
    m.datagram_sent("www", 300)
    m.datagram_sent("www", 1200)
    m.datagram_received("www", 280)
    m.dns_publish("www", "update", ok=True)
    m.dns_publish("www", "update", ok=False)
    m.dns_publish("www", "zonefile", ok=True)
    m.trap_sent(ok=True)
    m.trap_sent(ok=False)
    m.trap_dropped()
    m.trap_dropped(4)
    s = Scrape(m)
    assert s.types["rais_events"] == "counter"
    assert s("rais_events_total", group="www", kind="acquired") == 2
    assert s("rais_events_total", group="www", kind="release-failed") == 1
    assert s("rais_events_total", group="www", kind="released") == 0  # created at 0
    assert s("rais_events_total", group="db", kind="dns-published") == 1
    kinds = {lb["kind"] for lb in s.labels if "kind" in lb}
    assert kinds == {k.value for k in EventKind} | {k.value for k in AgentEventKind}
    assert s("rais_control_datagrams_sent_total", group="www") == 2
    assert s("rais_control_sent_bytes_total", group="www") == 1500
    assert s("rais_control_datagrams_received_total", group="www") == 1
    assert s("rais_control_received_bytes_total", group="www") == 280
    assert s("rais_control_datagrams_received_total", group="db") == 0
    assert s("rais_dns_publishes_total", group="www", publisher="update") == 2
    assert s("rais_dns_publish_failures_total", group="www", publisher="update") == 1
    assert s("rais_dns_publishes_total", group="www", publisher="zonefile") == 1
    assert s("rais_dns_publish_failures_total", group="www", publisher="zonefile") == 0
    assert s("rais_snmp_traps_sent_total") == 2
    assert s("rais_snmp_trap_failures_total") == 1
    assert s("rais_snmp_traps_dropped_total") == 5
    m.event("acquired", "www")
    assert Scrape(m)("rais_events_total", group="www", kind="acquired") == 3
    with pytest.raises(ValueError):
        m.event("exploded", "www")
    with pytest.raises(ValueError):
        m.dns_publish("www", "carrier-pigeon", ok=True)
    assert "exploded" not in Scrape(m).text


def test_a_group_in_the_status_gets_zero_series_in_the_first_scrape() -> None:
    s = Scrape(Metrics(lambda: agent_status(db())))
    assert s("rais_events_total", group="db", kind="acquired") == 0
    assert s("rais_control_datagrams_sent_total", group="db") == 0
    assert s("rais_heartbeat_lateness_seconds_count", group="db") == 0
    assert s("rais_dns_publish_failures_total", group="db", publisher="zonefile") == 0


def test_heartbeat_lateness_histogram() -> None:
    m = Metrics(lambda: agent_status())
    for seconds in (0.0005, 0.001, 0.0015, 0.03, 0.03, 0.7, 2.0, -0.01):
        m.heartbeat_lateness("www", seconds)
    s = Scrape(m)
    assert s.types["rais_heartbeat_lateness_seconds"] == "histogram"
    buckets = {
        lb["le"]: s("rais_heartbeat_lateness_seconds_bucket", **lb) for lb in s.labels if "le" in lb
    }
    assert [float(le) for le in buckets] == [*LATENESS_BUCKETS, float("inf")]
    assert LATENESS_BUCKETS[0] == 0.001 and LATENESS_BUCKETS[-1] == 1.0
    cumulative = [3, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8]  # -0.01 counts as 0; 2 s only in +Inf
    assert list(buckets.values()) == cumulative
    assert s("rais_heartbeat_lateness_seconds_count", group="www") == 8
    total = 0.0005 + 0.001 + 0.0015 + 0.03 + 0.03 + 0.7 + 2.0
    assert s("rais_heartbeat_lateness_seconds_sum", group="www") == pytest.approx(total)


def test_two_instances_do_not_share_state() -> None:
    a = Metrics(lambda: agent_status(www()))
    b = Metrics(lambda: agent_status(db()))
    assert a.registry is not b.registry and a.registry is not REGISTRY
    a.event("acquired", "www")
    a.datagram_sent("www", 100)
    a.heartbeat_lateness("www", 0.01)
    a.trap_sent(ok=True)
    sa, sb = Scrape(a), Scrape(b)
    assert sa("rais_events_total", group="www", kind="acquired") == 1
    assert sb.get("rais_events_total", group="www", kind="acquired") is None
    assert sb("rais_events_total", group="db", kind="acquired") == 0
    assert sb("rais_snmp_traps_sent_total") == 0
    assert sb.get("rais_leader", group="www") is None
    assert sa.get("rais_leader", group="db") is None
    assert REGISTRY.get_sample_value("rais_snmp_traps_sent_total") is None


def test_source_is_called_once_per_scrape_and_not_at_construction() -> None:
    calls = []

    def source() -> AgentStatus:
        calls.append(1)
        return agent_status(www())

    m = Metrics(source)
    assert not calls
    m.render()
    assert len(calls) == 1
    m.render()
    assert len(calls) == 2
    with pytest.raises(ValueError):  # the collector's names are registered: clashes refused
        Counter("rais_leader", "clash", registry=m.registry)
    assert len(calls) == 2


def test_no_address_or_host_id_in_any_label() -> None:
    status = agent_status(www(), db())
    m = Metrics(lambda: status)
    for g in ("www", "db"):
        for kind in [*EventKind, *AgentEventKind]:
            m.event(kind, g)
        m.datagram_sent(g, 1)
        m.datagram_received(g, 1)
        m.heartbeat_lateness(g, 0.002)
        m.dns_publish(g, "update", ok=False)
    forbidden: set[str] = {status.host}
    for grp in status.groups:
        forbidden |= {grp.host, *grp.expired} | ({grp.leader} if grp.leader else set())
        for h in grp.hosts:
            forbidden |= {h.id, *h.control}
            forbidden |= {s.address for s in h.served}
        for a in grp.addresses:
            forbidden |= {a.address, a.address.split("/")[0], *a.holders}
    s = Scrape(m)
    values = {v for lb in s.labels for v in lb.values()}
    assert not values & forbidden
    assert not [v for v in values if re.search(r"\d+\.\d+\.\d+\.\d+|:.*:", v)]
    allowed_keys = {"group", "state", "reason", "kind", "publisher", "test", "version", "le"}
    assert {k for lb in s.labels for k in lb} <= allowed_keys


def test_names_follow_prometheus_conventions() -> None:
    m = Metrics(lambda: agent_status(www()))
    m.event("acquired", "www")
    m.heartbeat_lateness("www", 0.01)
    m.trap_sent(ok=True)
    s = Scrape(m)
    name = re.compile(r"^rais_[a-z_]+$")
    assert all(name.match(n) for n in s.names()), sorted(s.names())
    assert all(name.match(f) for f in s.types), sorted(s.types)
    for fam in text_string_to_metric_families(s.text):
        if fam.type == "counter":
            assert all(x.name.endswith("_total") for x in fam.samples), fam.name
        if fam.type == "gauge":
            assert not fam.name.endswith("_total"), fam.name
    assert {n for n in s.names() if "seconds" in n or "bytes" in n} == {
        "rais_heartbeat_lateness_seconds_bucket",
        "rais_heartbeat_lateness_seconds_count",
        "rais_heartbeat_lateness_seconds_sum",
        "rais_heartbeat_lateness_seconds_created",
        "rais_control_sent_bytes_total",
        "rais_control_sent_bytes_created",
        "rais_control_received_bytes_total",
        "rais_control_received_bytes_created",
    }
    doc = rais.admin.metrics.__doc__ or ""
    documented = {n.removesuffix("_total") for n in re.findall(r"``(rais_[a-z_]+)", doc)}
    families = {f for f, t in s.types.items() if not f.endswith("_created")}
    assert families == documented


def test_lateness_histogram_counts_like_prometheus_buckets() -> None:
    """Bounds are inclusive (a value on a bound falls in it), buckets cumulative."""
    m = Metrics(lambda: agent_status(www()))
    for late in (0.0005, 0.001, 0.003, -0.2, 2.0):
        m.heartbeat_lateness("www", late)
    m.datagram_sent("www", 100)
    m.datagram_received("www", 40)
    m.datagram_received("www", 60)
    samples = {
        (x.name, x.labels.get("le")): x.value
        for fam in text_string_to_metric_families(Scrape(m).text)
        for x in fam.samples
        if x.labels.get("group") == "www"
    }
    bucket = "rais_heartbeat_lateness_seconds_bucket"
    assert samples[(bucket, "0.001")] == 3.0  # 0.0005, 0.001 and the negative one as 0
    assert samples[(bucket, "0.002")] == 3.0
    assert samples[(bucket, "0.005")] == 4.0
    assert samples[(bucket, "1.0")] == 4.0
    assert samples[(bucket, "+Inf")] == 5.0
    assert samples[("rais_heartbeat_lateness_seconds_count", None)] == 5.0
    assert abs(samples[("rais_heartbeat_lateness_seconds_sum", None)] - 2.0045) < 1e-9
    assert samples[("rais_control_datagrams_sent_total", None)] == 1.0
    assert samples[("rais_control_sent_bytes_total", None)] == 100.0
    assert samples[("rais_control_datagrams_received_total", None)] == 2.0
    assert samples[("rais_control_received_bytes_total", None)] == 100.0
