"""rais.core.utilization: the one rule, and that placement, DNS, status, metrics
and the probes all read a (load, capacity) the same way (issue 10)."""

from __future__ import annotations

import ipaddress
import itertools
import math
import random
from fractions import Fraction

import pytest
from clusterkit import host_id, service
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from rais.admin.metrics import Metrics
from rais.admin.status import group_status, render
from rais.admin.status_view import AgentStatus, GroupStatus, status_json
from rais.core.addrtable import AddressTable
from rais.core.config import CoreConfig
from rais.core.control import Controller
from rais.core.core import Core
from rais.core.effects import Acquire
from rais.core.messages import HostEntry, Op
from rais.core.outbox import Outbox
from rais.core.utilization import share, utilization
from rais.dns.views import view
from rais.dns.zone import HostView, ZonePolicy, advertise
from rais.probes.fake import FakeProbeHub
from rais.probes.loads import combine, parse_load_output
from rais.probes.spec import U32_MAX, LoadSpec

# ------------------------------------------------------------------ the rule


@pytest.mark.parametrize(
    ("load", "capacity", "scale", "want"),
    [
        (0, 0, 1000, 0),  # no load object at all: idle
        (0, 0, 1, 0),
        (1, 0, 1000, 1000),  # a load against capacity 0: full
        (500, 0, 1000, 1000),
        (U32_MAX, 0, 100, 100),
        (0, 1000, 1000, 0),
        (250, 1000, 1000, 250),
        (1, 3, 1000, 333),  # rounded down
        (2, 3, 1000, 666),
        (999, 1000, 1000, 999),
        (1000, 1000, 1000, 1000),
        (1500, 1000, 1000, 1500),  # not clamped: overload is not hidden
        (U32_MAX, 1, 1000, U32_MAX * 1000),
        (U32_MAX, U32_MAX, 1_000_000, 1_000_000),
        (300, 2000, 100, 15),
    ],
)
def test_utilization_edge_cases(load: int, capacity: int, scale: int, want: int) -> None:
    assert utilization(load, capacity, scale) == want


def test_share_edge_cases() -> None:
    assert share(0, 0) == 0
    assert share(500, 0) == 1
    assert share(1, 3) == Fraction(1, 3)
    assert share(3000, 1000) == 3


@pytest.mark.parametrize(("load", "capacity", "scale"), [(-1, 10, 1000), (1, -1, 1000), (1, 1, 0)])
def test_bad_inputs_are_refused(load: int, capacity: int, scale: int) -> None:
    with pytest.raises(ValueError):
        utilization(load, capacity, scale)
    if scale:
        with pytest.raises(ValueError):
            share(load, capacity)


U32 = st.integers(0, U32_MAX)
EDGES = st.sampled_from([0, 1, 2, 3, 999, 1000, 1001, 1500, U32_MAX])
LOADS = EDGES | U32
SCALES = st.sampled_from([1, 7, 100, 1000, 1_000_000]) | st.integers(1, 1_000_000)


@given(LOADS, LOADS, SCALES)
def test_utilization_is_the_share_scaled_and_rounded_down(
    load: int, capacity: int, scale: int
) -> None:
    assert utilization(load, capacity, scale) == math.floor(share(load, capacity) * scale)


@given(LOADS, LOADS, LOADS, LOADS, SCALES)
def test_utilization_keeps_the_order_of_the_shares(
    la: int, ca: int, lb: int, cb: int, scale: int
) -> None:
    if share(la, ca) <= share(lb, cb):
        assert utilization(la, ca, scale) <= utilization(lb, cb, scale)


# ----------------------------------------------- placement and DNS agree


def _entry(n: int, load: int, capacity: int, preferred: bool = False) -> HostEntry:
    return HostEntry(
        id=host_id(n),
        control=(host_id(n),),
        ok=True,
        quiesced=False,
        observer=False,
        leaving=False,
        settled=True,
        load=load,
        capacity=capacity,
        preferred=service(n) if preferred else None,
        prefixlen=24 if preferred else 0,
        served=(),
    )


def placement_order(pairs: list[tuple[int, int]], scale: int, seed: int) -> list[int]:
    """One leader pass with a spare per pair and as many orphans: which spare
    (index into ``pairs``) got the first orphan, the second, ... Each gets one,
    so the order is the leader's preference among them."""
    table = AddressTable(86400.0)
    for k in range(len(pairs)):  # hosts 101.. brought these addresses, then died
        table.observe(0.0, _entry(101 + k, 0, 0, preferred=True))
    spares = [_entry(1 + i, load, cap) for i, (load, cap) in enumerate(pairs)]
    ctl = Controller(Outbox("g", host_id(1)), random.Random(seed), backoff=1.0, load_scale=scale)
    commands = ctl.run(1.0, spares, table, command_timeout=1.0)
    assert [c.op for c in commands] == [Op.ACQUIRE] * len(pairs)
    assert [c.address for c in commands] == list(table.rows)
    index = {host_id(1 + i): i for i in range(len(pairs))}
    return [index[c.target] for c in commands]


def _dns_host(i: int, load: int, capacity: int) -> HostView:
    addr = ipaddress.ip_address(f"198.51.100.{i + 1}")
    return HostView(
        id=f"192.0.2.{i + 1}",
        live=True,
        ok=True,
        quiesced=False,
        observer=False,
        preferred=addr,
        serving_preferred=True,
        load=load,
        capacity=capacity,
    )


def dns_values(pairs: list[tuple[int, int]], scale: int) -> list[int]:
    """The utilization DNS sees for each host, measured through ``advertise``
    alone: the lowest water mark (high = low, no minimum) that keeps it in."""
    hosts = [_dns_host(i, load, cap) for i, (load, cap) in enumerate(pairs)]
    out = []
    for h in hosts:
        lo, hi = 0, U32_MAX * scale  # kept at hi whatever the load
        while lo < hi:
            mid = (lo + hi) // 2
            policy = ZonePolicy(scale=scale, high=mid, low=mid, min_addresses=0)
            if h.preferred in advertise(hosts, policy).advertised:
                hi = mid
            else:
                lo = mid + 1
        out.append(lo)
    return out


def dns_least_loaded(pairs: list[tuple[int, int]], scale: int) -> set[int]:
    """The hosts DNS keeps when every host is above the mark and it must keep
    one (min_addresses 1, marks at 0): its least loaded, plus any at 0."""
    hosts = [_dns_host(i, load, cap) for i, (load, cap) in enumerate(pairs)]
    answer = advertise(hosts, ZonePolicy(scale=scale, high=0, low=0, min_addresses=1))
    return {i for i, h in enumerate(hosts) if h.preferred in answer.advertised}


PAIR = st.tuples(LOADS, LOADS) | st.sampled_from(
    [(0, 0), (500, 0), (1, 0), (500, 1000), (1000, 1000), (1500, 1000), (1, 3000), (2, 3000)]
)
SEEDS = range(32)


@settings(max_examples=60, deadline=None)
@given(st.lists(PAIR, min_size=1, max_size=6), SCALES)
@example([(500, 0), (500, 1000)], 1000)  # the host: full to DNS, idle to the leader
@example([(0, 0), (1, 1000)], 1000)
@example([(1, 3000), (2, 3000)], 10_000)  # equal at a scale of 1000, not at 10,000
@example([(500, 0), (1500, 1000), (1000, 1000)], 1000)
def test_placement_and_dns_agree(pairs: list[tuple[int, int]], scale: int) -> None:
    values = dns_values(pairs, scale)
    # the same value: what DNS sheds on is the one function's (and status shows it)
    assert values == [utilization(load, cap, scale) for load, cap in pairs]
    orders = [placement_order(pairs, scale, seed) for seed in SEEDS]
    for order in orders:
        # the same ordering: the leader never prefers a host DNS sees as more loaded
        assert [values[i] for i in order] == sorted(values)
    for a, b in itertools.combinations(range(len(pairs)), 2):
        if values[a] == values[b]:
            # ... and treats hosts DNS sees as equal as a tie (its seeded random pick)
            firsts = {next(i for i in order if i in (a, b)) for order in orders}
            assert firsts == {a, b}
    # the host the leader gives an orphan first is one DNS counts as least loaded
    assert {values[i] for i in dns_least_loaded(pairs, scale)} == {values[orders[0][0]]}


# ------------------------------------------------ one value for "500 0"


def _core(scale: int) -> Core:
    cfg = CoreConfig(
        group="www",
        control=(host_id(1),),
        keys=(b"k",),
        preferred=service(1),
        prefixlen=24,
        load_scale=scale,
    )
    core = Core(cfg, epoch=1, rng=random.Random(1), now=0.0)
    now = 0.0
    while not core.served.online():  # a lone host: it leads and takes its own address
        timer = core.get_timer()
        assert timer is not None and timer < 5.0
        now = max(now, timer)
        core.handle_timer(now)
        for effect in core.effects():
            if isinstance(effect, Acquire):
                core.action_done(now, effect.address, True)
    return core


def _ratio(status: GroupStatus) -> float:
    """rais_host_utilization_ratio{group="www"} as a scrape of this status shows it."""
    whole = AgentStatus("x", status.host, 1, (), (status,))
    body = Metrics(lambda: whole).render()[0].decode()
    values = [
        s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
        if s.name == "rais_host_utilization_ratio" and s.labels == {"group": "www"}
    ]
    assert len(values) == 1
    return float(values[0])


@pytest.mark.parametrize("scale", [1000, 100])
def test_a_500_0_load_is_full_everywhere(scale: int) -> None:
    # the probes: a command load object printing "500 0", next to one at 90 %
    hub = FakeProbeHub(loads={"cmd": LoadSpec("cmd", "command"), "cpu": LoadSpec("cpu", "cpu")})
    hub.set_load("cmd", *parse_load_output("500 0", "cmd"))
    hub.set_load("cpu", 900, 1000)
    sample = hub.load(["cpu", "cmd"], "max")
    assert sample == (500, 0)  # the full one is the group's load, not the 90 % one
    core = _core(scale)
    core.load_sample(0.0, *sample)

    status = group_status(core.view(0.0), {}, scale=scale)
    me = status.hosts[0]
    assert (me.load, me.capacity, me.utilization) == (500, 0, scale)
    assert f"{scale} (500/0)" in render(
        status_json(AgentStatus("x", status.host, 1, (), (status,)))
    )

    assert _ratio(status) == 1.0

    # DNS sheds it above the high mark (80 %) ...
    policy = ZonePolicy(scale=scale, high=scale * 8 // 10, low=scale * 6 // 10, min_addresses=0)
    assert advertise([view(core.entry(), True)], policy).shed == {
        ipaddress.ip_address("198.51.100.1")
    }
    # ... and the leader, on the same scale, places an orphan on a host at 50 % instead
    assert placement_order([(500, 0), (500, 1000)], scale, seed=0) == [1, 0]


def test_no_load_object_is_idle_everywhere() -> None:
    core = _core(1000)  # never sampled: 0/0
    status = group_status(core.view(0.0), {}, scale=1000)
    assert status.hosts[0].utilization == 0
    assert _ratio(status) == 0.0
    assert combine([(0, 0), (100, 1000)], "max") == (100, 1000)
    policy = ZonePolicy(high=0, low=0, min_addresses=0)
    assert advertise([view(core.entry(), True)], policy).shed == frozenset()
    assert placement_order([(0, 0), (1, 1000)], 1000, seed=0) == [0, 1]


def test_a_core_needs_a_positive_load_scale() -> None:
    with pytest.raises(ValueError, match="load_scale"):
        CoreConfig(group="www", control=(host_id(1),), keys=(b"k",), load_scale=0)
