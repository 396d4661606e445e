"""The beat grid: cores given one ``beat_origin`` (an agent's groups) send
their heartbeats at the same instants, whenever each was created, and a late
timer puts the next heartbeat back on the grid, never more than one
heartbeat after the last."""

from __future__ import annotations

import itertools
import random

import pytest
from clusterkit import HEARTBEAT, make_config

from rais.core.core import Core
from rais.core.effects import Send


def sends(core: Core, until: float, late: dict[int, float] | None = None) -> list[float]:
    """Drive a lone core by its own timer until ``until``; the times it sent
    at. ``late``: the n-th timer pass (by count) runs that many seconds late."""
    out: list[float] = []
    for n in itertools.count():
        when = core.get_timer()
        assert when is not None
        when += (late or {}).get(n, 0.0)
        if when > until:
            return out
        core.handle_timer(when)
        out += [when for e in core.effects() if isinstance(e, Send)]
    raise AssertionError  # unreachable


def core(n: int, now: float, origin: float | None, group: str = "g") -> Core:
    config = make_config(n, group=group)
    return Core(config, epoch=1, rng=random.Random(n), now=now, beat_origin=origin)


def on_grid(t: float, origin: float) -> bool:
    k = round((t - origin) / HEARTBEAT)
    return abs(origin + k * HEARTBEAT - t) < 1e-9


def test_groups_of_one_agent_beat_together() -> None:
    a = core(1, 10.0123, origin=10.0, group="a")
    b = core(1, 10.0471, origin=10.0, group="b")
    sa, sb = sends(a, 13.0), sends(b, 13.0)
    steady_a = [t for t in sa if t > 12.0]
    steady_b = [t for t in sb if t > 12.0]
    assert len(steady_a) >= 9
    assert all(on_grid(t, 10.0) for t in steady_a)
    assert steady_a == pytest.approx(steady_b)
    assert max(y - x for x, y in itertools.pairwise(sa)) <= HEARTBEAT + 1e-9


def test_a_late_heartbeat_goes_back_on_the_grid() -> None:
    c = core(1, 0.005, origin=0.0)
    times = sends(c, 3.0, late={12: 0.07, 20: 0.031, 21: 0.2})
    assert max(y - x for x, y in itertools.pairwise(times)) <= HEARTBEAT + 0.2 + 1e-9
    after = [t for t in times if t > 2.5]
    assert after and all(on_grid(t, 0.0) for t in after)
    # the pass after a late one is on the grid point after it: the gap shrinks
    gaps = [y - x for x, y in itertools.pairwise(times)]
    assert min(gaps) < HEARTBEAT / 2


def test_without_an_origin_heartbeats_keep_their_own_phase() -> None:
    c = core(1, 0.0123, origin=None)
    after = [t for t in sends(c, 3.0) if t > 2.0]
    assert after and all(on_grid(t, 0.0123) for t in after)
    assert not any(on_grid(t, 0.0) for t in after)


def test_a_steady_info_leaves_the_core_idle() -> None:
    """``Core.idle``: the driver may skip draining after an input that queued
    nothing and did not move the timer (every steady info); a host joining,
    or changing, is never such an input."""
    a, b = core(1, 0.0, origin=0.0), core(2, 0.0, origin=0.0)

    def heartbeat(t: float) -> bytes:
        b.handle_timer(t)
        out = [e for e in b.effects() if isinstance(e, Send)]
        assert out, t
        return out[-1].data

    assert a.datagram_received(0.0, heartbeat(0.0), 0)
    assert not a.idle  # host 2 joined: an event, a new timer
    a.effects()
    a.get_timer()
    for k in range(1, 20):
        t = k * HEARTBEAT
        data = heartbeat(t)
        a.handle_timer(t)
        a.effects()
        a.get_timer()
        assert a.datagram_received(t + 0.001, data, 0)
        if k > 15:  # settled, nothing left to change
            assert a.idle, k
    b.quiesce(2.0)
    quiesced = [e for e in b.effects() if isinstance(e, Send)][-1].data
    assert a.datagram_received(2.001, quiesced, 0)
    assert not a.idle
