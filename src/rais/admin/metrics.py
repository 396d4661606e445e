"""Prometheus metrics of one agent, in a private registry.

Every :class:`Metrics` owns its own :class:`prometheus_client.CollectorRegistry`
(never the process-wide default one), so several agents in one process (``rais
dev`` runs four) keep separate numbers. Names follow Prometheus conventions:
``rais_`` prefix, base units (seconds, bytes), ``_total`` on counters, and
labels only from small fixed sets: ``group`` (a configured group name),
``state``, ``reason``, ``kind``, ``publisher``, ``test`` (a configured test
name) and ``version``. Addresses and host ids never appear in a label.

These names are a contract once released.

Computed at scrape time from the agent's status (``rais.admin.status_view.AgentStatus``,
what ``GET /v1/status`` renders; one call of ``source()`` per scrape):

``rais_build_info{version}``                 gauge, always 1
``rais_leader{group}``                       1 if this host leads the group
``rais_settled{group}``                      1 once this host has waited out its
                                             start-up settle time
``rais_host_ok{group}``                      1 if this host is OK (its tests pass)
``rais_host_quiesced{group}``                1 if this host is quiesced
``rais_host_utilization_ratio{group}``       this host's utilization / load_scale
                                             (rais.core.utilization, the value
                                             DNS and placement use: 0 for no
                                             load objects, 1 for a load against
                                             capacity 0, above 1 when overloaded)
``rais_hosts_live{group}``                   hosts of the group seen live,
                                             this host included
``rais_addresses_held{group}``               service addresses online on this host
``rais_addresses{group,state}``              the group's service addresses by
                                             state: online, acquiring, releasing,
                                             unassigned, duplicate
``rais_addresses_orphaned{group}``           addresses counting down to expiry
``rais_addresses_expired{group}``            addresses that have expired
``rais_test_state{group,test}``              1 passing, 0 failing, -1 pending
``rais_control_datagrams_dropped_total{group,reason}``
                                             control datagrams received and
                                             dropped: oversized, truncated,
                                             malformed, version, group, auth,
                                             unsupported, replay, duplicate, own,
                                             stale-part, stale
``rais_control_send_errors_total{group}``    control datagrams the transport
                                             could not send
``rais_control_receive_errors_total{group}`` errors reported by a receiving socket
``rais_announcements_total{group}``          gratuitous ARPs / unsolicited NAs sent
``rais_announce_errors_total{group}``        announcements that failed

Counted as things happen (the agent calls the methods):

``rais_events_total{group,kind}``            events, by kind (the values of
                                             ``rais.core.effects.EventKind``
                                             and ``rais.runtime.events.AgentEventKind``:
                                             acquisitions are kind="acquired",
                                             failed ones kind="acquire-failed",
                                             releases kind="released", ...)
``rais_heartbeat_lateness_seconds{group}``   histogram: how late the heartbeat
                                             timer fired (1 ms .. 1 s buckets)
``rais_control_datagrams_sent_total{group}`` control datagrams sent
``rais_control_sent_bytes_total{group}``     their payload bytes
``rais_control_datagrams_received_total{group}``
                                             control datagrams received
``rais_control_received_bytes_total{group}`` their payload bytes
``rais_dns_publishes_total{group,publisher}`` DNS publish attempts (publisher:
                                             update, zonefile)
``rais_dns_publish_failures_total{group,publisher}``
                                             DNS publishes that failed
``rais_snmp_traps_sent_total``               SNMP notifications sent (attempts)
``rais_snmp_trap_failures_total``            SNMP notifications whose send failed
``rais_snmp_traps_dropped_total``            SNMP notifications dropped unsent
                                             (a full queue)

Every series of a group starts at 0 once the group appears in the status or in
a call, so ``rate()`` and ``increase()`` see the first increment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from rais.admin.status_view import AgentStatus, HostStatus
from rais.admin.traffic import LATENESS_BUCKETS as LATENESS_BUCKETS
from rais.admin.traffic import GroupTraffic, TrafficCollector
from rais.core.effects import EventKind
from rais.core.utilization import utilization
from rais.runtime.events import AgentEventKind

ADDRESS_STATES = ("online", "acquiring", "releasing", "unassigned", "duplicate")
DROP_REASONS = (
    "oversized",
    "truncated",
    "malformed",
    "version",
    "group",
    "auth",
    "replay",
    "duplicate",
    "own",
    "stale-part",
    "stale",
)
EVENT_KINDS = tuple(k.value for k in EventKind) + tuple(k.value for k in AgentEventKind)
PUBLISHERS = ("update", "zonefile")

# the status's counters key(s) -> (metric name without _total, help)
_STATUS_COUNTERS: dict[str, tuple[tuple[str, ...], str]] = {
    "rais_control_send_errors": (
        ("transport_send_errors", "transport_send_oversized", "transport_send_not_open"),
        "Control datagrams the transport could not send.",
    ),
    "rais_control_receive_errors": (
        ("transport_receive_errors",),
        "Errors reported by a receiving control socket.",
    ),
    "rais_announcements": (
        ("announcements",),
        "Gratuitous ARPs / unsolicited neighbour advertisements sent.",
    ),
    "rais_announce_errors": (("announce_errors",), "Address announcements that failed."),
}


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


def _test_value(ok: bool | None) -> float:
    return -1.0 if ok is None else _flag(ok)


class StatusCollector:
    """The metrics derived from the agent's status, computed at scrape time."""

    def __init__(self, source: Callable[[], AgentStatus], seen: Callable[[str], None]) -> None:
        self.source = source
        self.seen = seen

    def describe(self) -> Iterable[Metric]:
        """The families this collector yields (names only; lets the registry
        refuse a clash without calling ``source``)."""
        return self._families()

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        g = ["group"]
        fams: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily("rais_build_info", "rais version; always 1.", labels=["version"]),
            GaugeMetricFamily("rais_leader", "1 if this host leads the group.", labels=g),
            GaugeMetricFamily(
                "rais_settled", "1 once this host has waited out its settle time.", labels=g
            ),
            GaugeMetricFamily("rais_host_ok", "1 if this host is OK (tests pass).", labels=g),
            GaugeMetricFamily("rais_host_quiesced", "1 if this host is quiesced.", labels=g),
            GaugeMetricFamily(
                "rais_host_utilization_ratio",
                "This host's utilization / load_scale (load / capacity; 0/0 is 0, x/0 is 1).",
                labels=g,
            ),
            GaugeMetricFamily(
                "rais_hosts_live", "Hosts of the group seen live, this one included.", labels=g
            ),
            GaugeMetricFamily(
                "rais_addresses_held", "Service addresses online on this host.", labels=g
            ),
            GaugeMetricFamily(
                "rais_addresses",
                "Service addresses of the group by state.",
                labels=[*g, "state"],
            ),
            GaugeMetricFamily(
                "rais_addresses_orphaned", "Addresses counting down to expiry.", labels=g
            ),
            GaugeMetricFamily("rais_addresses_expired", "Addresses that have expired.", labels=g),
            GaugeMetricFamily(
                "rais_test_state",
                "This host's tests: 1 passing, 0 failing, -1 pending.",
                labels=[*g, "test"],
            ),
            CounterMetricFamily(
                "rais_control_datagrams_dropped",
                "Control datagrams received and dropped, by reason.",
                labels=[*g, "reason"],
            ),
        ]
        for name, (_, doc) in _STATUS_COUNTERS.items():
            fams.append(CounterMetricFamily(name, doc, labels=g))
        return fams

    def collect(self) -> Iterable[Metric]:
        status = self.source()
        fams = {f.name: f for f in self._families()}

        def gauge(name: str, labels: list[str], value: float) -> None:
            fams[name].add_metric(labels, value)

        counter = gauge
        gauge("rais_build_info", [status.version], 1.0)
        for grp in status.groups:
            name = grp.name
            self.seen(name)
            gl = [name]
            me = grp.me()
            gauge("rais_leader", gl, _flag(grp.is_leader))
            gauge("rais_settled", gl, _flag(grp.settled))
            gauge("rais_host_ok", gl, _flag(grp.ok))
            gauge("rais_host_quiesced", gl, _flag(grp.quiesced))
            if me is not None:
                ratio = _ratio(me, grp.load_scale)
                if ratio is not None:
                    gauge("rais_host_utilization_ratio", gl, ratio)
            gauge("rais_hosts_live", gl, float(sum(1 for h in grp.hosts if h.live)))
            served = me.served if me is not None else ()
            held = sum(1 for s in served if s.state == "online")
            gauge("rais_addresses_held", gl, float(held))
            by_state = dict.fromkeys(ADDRESS_STATES, 0)
            for a in grp.addresses:
                if a.state in by_state:
                    by_state[a.state] += 1
            for state, n in by_state.items():
                gauge("rais_addresses", [name, state], float(n))
            orphaned = sum(1 for a in grp.addresses if a.orphan_s is not None)
            gauge("rais_addresses_orphaned", gl, float(orphaned))
            gauge("rais_addresses_expired", gl, float(len(grp.expired)))
            for t in grp.tests:
                gauge("rais_test_state", [name, t.name], _test_value(t.ok))
            counts = grp.counters
            drops = dict.fromkeys(DROP_REASONS, 0) | dict(grp.dropped)
            drops["oversized"] += counts.get("transport_oversized_dropped", 0)
            for reason, n in sorted(drops.items()):
                counter("rais_control_datagrams_dropped", [name, reason], float(n))
            for metric, (keys, _) in _STATUS_COUNTERS.items():
                counter(metric, gl, float(sum(counts.get(k, 0) for k in keys)))
        return list(fams.values())


def _ratio(host: HostStatus, scale: int) -> float | None:
    """utilization / load_scale, from the host's load and capacity by the one
    rule (rais.core.utilization): the status's utilization as a fraction. None
    when the numbers are out of range (a negative load or capacity, a scale
    below 1)."""
    if host.load < 0 or host.capacity < 0 or scale < 1:
        return None
    return float(utilization(host.load, host.capacity, scale)) / float(scale)


class Metrics:
    """The agent's metrics. ``source()`` returns the agent's status (the typed
    view ``GET /v1/status`` renders); it is called once per :meth:`render`."""

    def __init__(self, source: Callable[[], AgentStatus]) -> None:
        self.registry = CollectorRegistry()
        self._groups: set[str] = set()
        self._kids: dict[str, tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        # Registered first, so groups it sees get their zero series in the same scrape.
        self.registry.register(StatusCollector(source, self._seen))
        r = self.registry
        self.events = Counter(
            "rais_events_total", "Events, by kind.", ["group", "kind"], registry=r
        )
        self._traffic: dict[str, GroupTraffic] = {}
        r.register(TrafficCollector(lambda: list(self._traffic.items())))
        self.dns_publishes = Counter(
            "rais_dns_publishes_total",
            "DNS publish attempts.",
            ["group", "publisher"],
            registry=r,
        )
        self.dns_failures = Counter(
            "rais_dns_publish_failures_total",
            "DNS publishes that failed.",
            ["group", "publisher"],
            registry=r,
        )
        self.traps_sent = Counter(
            "rais_snmp_traps_sent_total", "SNMP notifications sent (attempts).", registry=r
        )
        self.trap_failures = Counter(
            "rais_snmp_trap_failures_total", "SNMP notifications whose send failed.", registry=r
        )
        self.traps_dropped = Counter(
            "rais_snmp_traps_dropped_total",
            "SNMP notifications dropped unsent (a full queue).",
            registry=r,
        )

    def _seen(self, group: str) -> None:
        """Create a group's event-driven series at 0 the first time it shows up."""
        with self._lock:
            if group in self._groups:
                return
            self._groups.add(group)
        for kind in EVENT_KINDS:
            self.events.labels(group, kind)
        self.traffic(group)
        for publisher in PUBLISHERS:
            self.dns_publishes.labels(group, publisher)
            self.dns_failures.labels(group, publisher)

    def event(self, kind: str, group: str) -> None:
        """One event happened (``kind``: an ``EventKind`` or ``AgentEventKind``
        value; ValueError otherwise)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"{kind!r} is not an event kind")
        self._seen(group)
        self.events.labels(group, str(kind)).inc()

    def traffic(self, group: str) -> GroupTraffic:
        """The hot-path counters of ``group`` (rais.admin.traffic), made at 0 on first use."""
        t = self._traffic.get(group)
        if t is None:
            t = self._traffic[group] = GroupTraffic()
            self._seen(group)
        return t

    def heartbeat_lateness(self, group: str, seconds: float) -> None:
        """The heartbeat timer fired ``seconds`` late (a negative value counts as 0)."""
        self.traffic(group).late(seconds)

    def datagram_sent(self, group: str, size: int) -> None:
        t = self.traffic(group)
        t.sent += 1
        t.sent_bytes += size

    def datagram_received(self, group: str, size: int) -> None:
        t = self.traffic(group)
        t.received += 1
        t.received_bytes += size

    def dns_publish(self, group: str, publisher: str, ok: bool) -> None:
        """A DNS publish finished (``publisher``: "update" or "zonefile")."""
        if publisher not in PUBLISHERS:
            raise ValueError(f"unknown DNS publisher {publisher!r}")
        self._seen(group)
        self.dns_publishes.labels(group, publisher).inc()
        if not ok:
            self.dns_failures.labels(group, publisher).inc()

    def trap_sent(self, ok: bool) -> None:
        """An SNMP notification was sent (``ok`` False: the send failed)."""
        self.traps_sent.inc()
        if not ok:
            self.trap_failures.inc()

    def trap_dropped(self, n: int = 1) -> None:
        """``n`` SNMP notifications were dropped without being sent."""
        self.traps_dropped.inc(n)

    def trap_outcome(self, outcome: str) -> None:
        """What ``TrapSender`` tells of each notification: "sent", "failed" or "dropped"."""
        if outcome == "dropped":
            self.trap_dropped()
        else:
            self.trap_sent(outcome == "sent")

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (one ``source()`` call)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
