"""The timer contract: handling the timer at the time ``get_timer`` names does
everything due then, so the next timer is strictly later (an event-driven
driver that calls ``handle_timer(get_timer())`` never spins in place)."""

from __future__ import annotations

import dataclasses
import heapq
import random

import pytest
from clusterkit import host_id, make_config
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rais.core.core import Core
from rais.core.effects import Acquire, EventKind, Release, Send


def _run_exact(heard: float, heartbeat: float, timeout: float) -> None:
    a = Core(
        make_config(1, heartbeat=heartbeat, timeout=timeout),
        epoch=1,
        rng=random.Random(1),
        now=heard,
    )
    b = Core(
        make_config(2, heartbeat=heartbeat, timeout=timeout),
        epoch=1,
        rng=random.Random(2),
        now=heard,
    )
    a.handle_timer(heard)
    data = [e.data for e in a.effects() if isinstance(e, Send)]
    b.handle_timer(heard)
    b.datagram_received(heard, data[0], 0)
    b.effects()
    lost_at = None
    for _ in range(int(2 * timeout / heartbeat) + 10):
        t = b.get_timer()
        assert t is not None
        b.handle_timer(t)
        after = b.get_timer()
        assert after is not None and after > t, (t, after)
        for e in b.effects():
            if not isinstance(e, Send) and getattr(e, "kind", None) == EventKind.HOST_LOST:
                lost_at = t
        if lost_at is not None:
            break
    assert lost_at is not None
    assert not b.members.is_live(host_id(1))
    assert lost_at == b.members.records[host_id(1)].last_heard + timeout


@settings(max_examples=300, deadline=None)
@given(
    heard=st.floats(0.0, 1e6, allow_nan=False, allow_infinity=False),
    heartbeat=st.sampled_from([0.1, 0.05, 0.3, 1.0]),
    factor=st.sampled_from([3.0, 2.5, 4.0, 7.0]),
)
@example(heard=15.962552, heartbeat=0.1, factor=3.0)
def test_handling_the_timer_at_its_time_always_makes_progress(
    heard: float, heartbeat: float, factor: float
) -> None:
    _run_exact(heard, heartbeat, heartbeat * factor)


def _exact_cluster_run(seed: int) -> None:
    """Hosts on a float clock, each timer handled at exactly the time it names,
    through failover, orphan expiry, failback and periodic announces."""
    rng = random.Random(seed)
    configs = [
        dataclasses.replace(
            make_config(n, spare=n == 4, orphan_timeout=rng.uniform(0.5, 1.5)),
            announce_interval=rng.uniform(0.2, 0.7),
            command_timeout=rng.uniform(0.15, 0.4),
        )
        for n in (1, 2, 3, 4)
    ]
    cores = [Core(c, epoch=1, rng=random.Random(seed + k), now=0.0) for k, c in enumerate(configs)]
    alive = [True] * 4
    queue: list[tuple[float, int, int, bytes | None, bytes]] = []
    order = 0

    def drain(i: int, now: float) -> None:
        nonlocal order
        for e in cores[i].effects():
            if isinstance(e, Send):
                for j in range(4):
                    if j != i:
                        order += 1
                        at = now + rng.uniform(0.0001, 0.003)
                        heapq.heappush(queue, (at, order, j, e.data, b""))
            elif isinstance(e, Acquire | Release):
                order += 1
                at = now + rng.uniform(0.0001, 0.01)
                heapq.heappush(queue, (at, order, i, None, e.address))

    kill_at, back_at = rng.uniform(1.0, 2.0), rng.uniform(3.0, 4.0)
    now = 0.0
    while now < 6.0:
        if alive[1] and now >= kill_at:
            alive[1] = False
        if not alive[1] and now >= back_at:
            alive[1] = True
            cores[1] = Core(configs[1], epoch=2, rng=random.Random(seed), now=now)
            back_at = 1e9
        timers = [
            (t, i) for i, c in enumerate(cores) if alive[i] and (t := c.get_timer()) is not None
        ]
        t, i = min(timers)
        if queue and queue[0][0] < t:
            now, _, j, data, address = heapq.heappop(queue)
            if alive[j]:
                if data is not None:
                    cores[j].datagram_received(now, data, 0)
                else:
                    cores[j].action_done(now, address, True)
                drain(j, now)
            continue
        assert t >= now
        now = t
        cores[i].handle_timer(now)
        after = cores[i].get_timer()
        assert after is None or after > now, (i, now, after)
        drain(i, now)


@pytest.mark.parametrize("seed", range(8))
def test_an_exact_time_driver_never_spins(seed: int) -> None:
    _exact_cluster_run(seed)
