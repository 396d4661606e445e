"""rais.dns.zone: what a group's name advertises, and RFC 1982 serials."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rais.base.ip import IP, ip_key
from rais.dns.zone import (
    HostView,
    ZoneAnswer,
    ZonePolicy,
    advertise,
    serial_gt,
    serial_next,
)

V4 = [ipaddress.IPv4Address(f"192.0.2.{i}") for i in range(1, 9)]
V6 = [ipaddress.IPv6Address(f"2001:db8::{i}") for i in range(1, 5)]
POOL: list[IP] = [*V4, *V6]
MOD = 2**32


def ip(text: str) -> IP:
    return ipaddress.ip_address(text)


def host(
    n: int,
    load: int = 0,
    capacity: int = 1000,
    *,
    preferred: str | None = "",
    live: bool = True,
    ok: bool = True,
    quiesced: bool = False,
) -> HostView:
    """Host ``n`` preferring 192.0.2.n (unless told otherwise), eligible by default."""
    pref = ip(f"192.0.2.{n}") if preferred == "" else None if preferred is None else ip(preferred)
    return HostView(f"h{n}", live, ok, quiesced, False, pref, True, load, capacity)


def addrs(answer: ZoneAnswer) -> list[str]:
    return [str(a) for a in answer.addresses]


SHED = ZonePolicy(high=800, low=600, min_addresses=0)


# --- examples, one per rule -------------------------------------------------


def test_advertises_preferred_addresses_of_available_hosts_sorted() -> None:
    hosts = [host(3), host(1), host(9, preferred="2001:db8::1"), host(2)]
    answer = advertise(hosts, ZonePolicy())
    assert addrs(answer) == ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1"]
    assert answer.advertised == frozenset(answer.addresses)
    assert answer.shed == frozenset()


@pytest.mark.parametrize(
    "flag",
    [
        {"live": False},
        {"ok": False},
        {"quiesced": True},
        {"observer": True},
        {"serving_preferred": False},
    ],
    ids=lambda f: next(iter(f)),
)
def test_unavailable_hosts_are_not_advertised(flag: dict[str, Any]) -> None:
    answer = advertise([host(1), dataclasses.replace(host(2), **flag)], ZonePolicy(min_addresses=0))
    assert addrs(answer) == ["192.0.2.1"]


def test_hot_spares_and_orphans_are_not_advertised() -> None:
    # h2 is a spare holding h3's orphaned address; h3 is silent
    spare = dataclasses.replace(host(2, preferred=None), serving=frozenset({ip("192.0.2.3")}))
    silent = host(3, live=False)
    answer = advertise([host(1), spare, silent], ZonePolicy())
    assert addrs(answer) == ["192.0.2.1"]


def test_duplicate_claims_count_once() -> None:
    answer = advertise([host(1), dataclasses.replace(host(1), id="other")], ZonePolicy())
    assert addrs(answer) == ["192.0.2.1"]


def test_no_marks_means_no_shedding() -> None:
    answer = advertise([host(1, load=1000), host(2, load=5000)], ZonePolicy(min_addresses=0))
    assert addrs(answer) == ["192.0.2.1", "192.0.2.2"]


def test_above_high_is_removed_and_high_itself_stays() -> None:
    prev = frozenset({V4[0], V4[1]})
    answer = advertise([host(1, load=800), host(2, load=801)], SHED, prev)
    assert addrs(answer) == ["192.0.2.1"]
    assert answer.shed == {V4[1]}


def test_removed_host_comes_back_at_or_below_low() -> None:
    for load, back in [(601, False), (700, False), (600, True), (0, True)]:
        answer = advertise([host(1, load=load)], SHED, frozenset())
        assert (V4[0] in answer.advertised) is back, load


def test_between_the_marks_keeps_previous_status() -> None:
    hosts = [host(1, load=700), host(2, load=700)]
    answer = advertise(hosts, SHED, frozenset({V4[0]}))
    assert addrs(answer) == ["192.0.2.1"] and answer.shed == {V4[1]}


def test_no_history_counts_everyone_as_advertised() -> None:
    answer = advertise([host(1, load=700), host(2, load=900)], SHED, None)
    assert addrs(answer) == ["192.0.2.1"]


def test_equal_marks_disable_hysteresis() -> None:
    policy = ZonePolicy(high=700, low=700, min_addresses=0)
    assert addrs(advertise([host(1, load=700)], policy, frozenset())) == ["192.0.2.1"]
    assert addrs(advertise([host(1, load=701)], policy, frozenset({V4[0]}))) == []


def test_utilization_scales_and_zero_capacity_is_full() -> None:
    policy = ZonePolicy(scale=100, high=80, low=60, min_addresses=0)
    hosts = [
        host(1, load=7, capacity=10),
        host(2, load=9, capacity=10),
        host(3, load=1, capacity=0),
        host(4, load=0, capacity=0),  # no load objects: never shed
    ]
    answer = advertise(hosts, policy)
    assert addrs(answer) == ["192.0.2.1", "192.0.2.4"]
    assert answer.shed == {V4[1], V4[2]}


def test_minimum_keeps_least_loaded_even_above_high() -> None:
    policy = ZonePolicy(high=800, low=600, min_addresses=2)
    hosts = [host(1, load=950), host(2, load=990), host(3, load=900), host(4, load=100)]
    answer = advertise(hosts, policy)
    assert addrs(answer) == ["192.0.2.3", "192.0.2.4"]
    assert answer.shed == {V4[0], V4[1]}


def test_minimum_ranks_by_weighted_util_then_address() -> None:
    policy = ZonePolicy(high=800, low=600, min_addresses=1)
    # h1 was shed: weighted 850 + 200 = 1050 ranks after h2's 900
    answer = advertise([host(1, load=850), host(2, load=900)], policy, frozenset({V4[1]}))
    assert addrs(answer) == ["192.0.2.2"]
    # a tie goes to the lower address
    answer = advertise([host(5, load=900), host(4, load=900)], policy, None)
    assert addrs(answer) == ["192.0.2.4"]


def test_short_remaining_advertises_what_is_left() -> None:
    policy = ZonePolicy(high=800, low=600, min_addresses=3)
    hosts = [host(1, load=990), host(2, load=999), host(3, live=False)]
    answer = advertise(hosts, policy)
    assert addrs(answer) == ["192.0.2.1", "192.0.2.2"] and answer.shed == frozenset()
    assert addrs(advertise([host(1, ok=False)], policy)) == []


def test_short_all_live_fails_open_with_every_served_address() -> None:
    policy = ZonePolicy(min_addresses=2, when_short="all-live")
    orphan_holder = dataclasses.replace(host(2, preferred=None), serving=frozenset({V4[4]}))
    quiesced = host(3, quiesced=True)
    silent = host(4, live=False)
    answer = advertise([host(1), orphan_holder, quiesced, silent], policy)
    assert addrs(answer) == ["192.0.2.1", "192.0.2.3", "192.0.2.5"]
    # with enough eligible hosts it is the ordinary answer
    answer = advertise([host(1), host(6), orphan_holder], policy)
    assert addrs(answer) == ["192.0.2.1", "192.0.2.6"]


@pytest.mark.parametrize(
    "kw",
    [
        {"high": 500, "low": 600},
        {"high": 500},
        {"low": 500},
        {"low": -1, "high": 5},
        {"scale": 0},
        {"min_addresses": -1},
        {"when_short": "nope"},
    ],
)
def test_policy_validation(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ZonePolicy(**kw)  # type: ignore[arg-type]


def test_host_validation() -> None:
    with pytest.raises(ValueError):
        host(1, load=-1)


# --- properties ---------------------------------------------------------------


@st.composite
def host_views(draw: st.DrawFn, n: int, addr: IP | None) -> HostView:
    b = st.booleans()
    return HostView(
        id=f"h{n}",
        live=draw(b),
        ok=draw(b),
        quiesced=draw(b),
        observer=draw(b),
        preferred=addr if draw(st.integers(0, 5)) else None,
        serving_preferred=draw(b),
        load=draw(st.integers(0, 2000)),
        capacity=draw(st.integers(0, 1000)),
        serving=frozenset(draw(st.lists(st.sampled_from(POOL), max_size=3))),
    )


@st.composite
def clusters(draw: st.DrawFn, unique: bool = False) -> list[HostView]:
    n = draw(st.integers(0, len(POOL)))
    if unique:
        picks: list[IP | None] = list(draw(st.permutations(POOL))[:n])
    else:
        picks = draw(st.lists(st.sampled_from([*POOL, None]), min_size=n, max_size=n))
    return [draw(host_views(i, a)) for i, a in enumerate(picks)]


@st.composite
def policies(draw: st.DrawFn) -> ZonePolicy:
    marks = draw(st.none() | st.tuples(st.integers(0, 1200), st.integers(0, 1200)))
    low, high = (None, None) if marks is None else sorted(marks)
    return ZonePolicy(
        scale=draw(st.sampled_from([100, 1000])),
        high=high,
        low=low,
        min_addresses=draw(st.integers(0, 5)),
        when_short=draw(st.sampled_from(["remaining", "all-live"])),
    )


previous_sets = st.none() | st.frozensets(st.sampled_from(POOL))


def eligible(hosts: Sequence[HostView]) -> set[IP]:
    return {h.preferred for h in hosts if h.eligible and h.preferred is not None}


@given(
    start_in=st.booleans(),
    min_addresses=st.integers(0, 3),
    rounds=st.lists(
        st.tuples(st.integers(601, 799), clusters(unique=True)), min_size=1, max_size=12
    ),
)
def test_hysteresis_never_flaps_between_the_marks(
    start_in: bool, min_addresses: int, rounds: list[tuple[int, list[HostView]]]
) -> None:
    """Host 0's load oscillates strictly between the marks while the others do
    anything: with no minimum its status never changes; with a minimum it may
    be pulled in once (to make up the numbers) and then stays in."""
    policy = ZonePolicy(high=800, low=600, min_addresses=min_addresses)
    target = ipaddress.IPv4Address("198.51.100.1")
    previous: frozenset[IP] = frozenset({target}) if start_in else frozenset()
    statuses = [start_in]
    for load, others in rounds:
        me = HostView("me", True, True, False, False, target, True, load, 1000)
        answer = advertise([me, *others], policy, previous)
        statuses.append(target in answer.advertised)
        previous = answer.advertised
    changes = sum(a != b for a, b in itertools.pairwise(statuses))
    if min_addresses == 0:
        assert changes == 0, statuses
    else:
        assert changes <= 1 and (changes == 0 or statuses[-1]), statuses


@given(hosts=clusters(), policy=policies(), previous=previous_sets)
def test_minimum_kept_and_only_eligible_advertised(
    hosts: list[HostView], policy: ZonePolicy, previous: frozenset[IP] | None
) -> None:
    answer = advertise(hosts, policy, previous)
    ok = eligible(hosts)
    assert list(answer.addresses) == sorted(answer.advertised, key=ip_key)
    assert len(answer.addresses) == len(answer.advertised)
    assert not answer.shed & answer.advertised
    if len(ok) >= policy.min_addresses:
        assert len(answer.addresses) >= policy.min_addresses
    if len(ok) >= policy.min_addresses or policy.when_short == "remaining":
        # never orphans, failed, quiesced, silent hosts' addresses or spares
        assert answer.advertised <= ok
        assert answer.advertised | answer.shed == ok
    else:
        live_held = {a for h in hosts if h.live for a in h.held()}
        assert answer.advertised == live_held and not answer.shed
    if policy.high is None:
        assert not answer.shed


@given(hosts=clusters(), policy=policies(), previous=previous_sets, data=st.data())
def test_output_is_deterministic(
    hosts: list[HostView],
    policy: ZonePolicy,
    previous: frozenset[IP] | None,
    data: st.DataObject,
) -> None:
    answer = advertise(hosts, policy, previous)
    assert advertise(hosts, policy, previous) == answer
    shuffled = data.draw(st.permutations(hosts))
    assert advertise(shuffled, policy, previous) == answer


# --- serials ------------------------------------------------------------------

serials = st.one_of(
    st.integers(0, MOD - 1),
    st.integers(MOD - 1000, MOD - 1),
    st.integers(0, 1000),
    st.integers(2**31 - 1000, 2**31 + 1000),
)
clocks = st.one_of(st.integers(0, 2**40), serials, st.integers(MOD - 1000, MOD + 1000))


@given(old=serials, now=clocks)
def test_serial_next_is_always_greater(old: int, now: int) -> None:
    new = serial_next(old, now)
    assert 0 <= new < MOD
    assert serial_gt(new, old) and not serial_gt(old, new)
    assert new in (now % MOD, (old + 1) % MOD)


@given(start=serials, nows=st.lists(clocks, min_size=1, max_size=20))
def test_serial_chain_never_goes_backwards(start: int, nows: list[int]) -> None:
    serial = start
    for now in nows:
        new = serial_next(serial, now)
        assert serial_gt(new, serial)
        serial = new


def test_serial_examples() -> None:
    assert serial_next(5, 1_700_000_000) == 1_700_000_000  # the clock when it is ahead
    assert serial_next(1_700_000_000, 5) == 1_700_000_001  # clock behind: old + 1
    assert serial_next(1_700_000_000, 1_700_000_000) == 1_700_000_001
    assert serial_next(MOD - 1, 0) == 0  # wraps: 0 follows 2**32 - 1
    assert serial_next(MOD - 1, 3) == 3
    assert serial_next(MOD - 1, MOD - 1) == 0
    assert serial_next(10, MOD + 20) == 20  # the clock itself wraps (year 2106)
    assert serial_next(0, 2**31) == 1  # 2**31 ahead is undefined, so not greater
    assert serial_gt(1, 0) and serial_gt(0, MOD - 1) and not serial_gt(0, 0)
    assert not serial_gt(2**31, 0) and not serial_gt(0, 2**31)
    assert serial_gt(2**31 - 1, 0) and serial_gt(2**31, 1) and serial_gt(1, 2**31 + 2)
    for bad in (-1, MOD):
        with pytest.raises(ValueError):
            serial_gt(bad, 0)
        with pytest.raises(ValueError):
            serial_next(bad, 0)
    with pytest.raises(ValueError):
        serial_next(0, -1)
