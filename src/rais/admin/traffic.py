"""The metrics of the hot path (rais.admin.metrics): control datagrams sent
and received and the heartbeat's lateness, per group. Every datagram and
every heartbeat counts, so they are plain attributes of a per-group object
that the group runner increments, turned into Prometheus families only when
``/metrics`` is scraped (a prometheus_client child costs a lock and tens of
microseconds on a cold cache per update)."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

LATENESS_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Upper bounds (s) of the heartbeat-lateness histogram's buckets (+Inf added)."""


class GroupTraffic:
    """One group's counters (see the module docstring)."""

    __slots__ = (
        "created",
        "late_buckets",
        "late_count",
        "late_sum",
        "received",
        "received_bytes",
        "sent",
        "sent_bytes",
    )

    def __init__(self) -> None:
        self.created = time.time()
        """When the series began (their ``_created`` samples)."""
        self.sent = 0
        self.sent_bytes = 0
        self.received = 0
        self.received_bytes = 0
        self.late_buckets = [0] * (len(LATENESS_BUCKETS) + 1)
        """Observations per bucket (not cumulative); the last one is +Inf."""
        self.late_count = 0
        self.late_sum = 0.0

    def late(self, seconds: float) -> None:
        """The heartbeat timer fired ``seconds`` late (negative: 0)."""
        seconds = seconds if seconds > 0.0 else 0.0
        self.late_buckets[bisect.bisect_left(LATENESS_BUCKETS, seconds)] += 1
        self.late_count += 1
        self.late_sum += seconds


_COUNTERS = (
    ("sent", "rais_control_datagrams_sent", "Control datagrams sent."),
    ("sent_bytes", "rais_control_sent_bytes", "Payload bytes of the control datagrams sent."),
    ("received", "rais_control_datagrams_received", "Control datagrams received."),
    (
        "received_bytes",
        "rais_control_received_bytes",
        "Payload bytes of the control datagrams received.",
    ),
)
"""(GroupTraffic attribute, counter name without ``_total``, help)."""


class TrafficCollector:
    """Renders every group's ``GroupTraffic`` at scrape time."""

    def __init__(self, groups: Callable[[], Iterable[tuple[str, GroupTraffic]]]) -> None:
        self.groups = groups

    def collect(self) -> Iterable[Metric]:
        late = HistogramMetricFamily(
            "rais_heartbeat_lateness_seconds",
            "How late the heartbeat timer fired.",
            labels=["group"],
        )
        families = {
            attr: CounterMetricFamily(name, doc, labels=["group"]) for attr, name, doc in _COUNTERS
        }
        for name, t in sorted(self.groups()):
            buckets, total = [], 0
            for bound, n in zip((*LATENESS_BUCKETS, float("inf")), t.late_buckets, strict=True):
                total += n
                buckets.append((_bound(bound), float(total)))
            late.add_metric([name], buckets, t.late_sum)
            late.add_sample("rais_heartbeat_lateness_seconds_created", {"group": name}, t.created)
            for attr, family in families.items():
                family.add_metric([name], float(getattr(t, attr)), created=t.created)
        yield late
        yield from families.values()


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
