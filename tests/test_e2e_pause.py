"""Restarting an agent in place, for real: three namespaces running ``rais
agent``, a client probing a service address every 5 ms (a UDP echo server in
every host, never restarted) and ``ip monitor address`` in every host.

``rais pause --for 5s``, then SIGTERM and a new agent: no probe unanswered
for over 20 ms (by the prober's clock: a busy machine that delays answers
loses none), no address change but refreshes. Without the pause, the same
restart hands over as it always did (the spare takes the address, then it
fails back), and probes go unanswered meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import Lab, LabFactory, lab_fixture, wait_for  # noqa: F401
from test_e2e_agent import VIP2, Rais, holders, hosts, settle
from traffic import AddrMonitor, Answers, UdpProbe

pytestmark = pytest.mark.e2e

PREFIX = "rais-pause"
"""Namespaces of their own (the pid and a counter follow): no collision with
another run of the e2e tests on this machine."""


@pytest.fixture
def cluster(make_lab: LabFactory, tmp_path: Path) -> Iterator[tuple[Lab, Rais]]:
    net = make_lab(3, client=True, prefix=PREFIX)
    net.ip("c", "route", "add", "198.51.100.0/24", "dev", "eth0")
    rais = Rais(net, tmp_path)
    try:
        for host in hosts(net):
            rais.start(host)
        yield net, rais
    finally:
        rais.stop_all()


def largest_gap(answers: Answers) -> float:
    """The longest time without an answer, from the first answer to the last."""
    times = sorted(t for _, t, _ in answers.got)
    return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


def gaps_over(answers: Answers, limit: float) -> list[tuple[float, float]]:
    """(start, length) of every gap longer than ``limit``, from the first answer."""
    times = sorted(t for _, t, _ in answers.got)
    return [(a - times[0], b - a) for a, b in itertools.pairwise(times) if b - a > limit]


async def _restart(net: Lab, rais: Rais, *, pause: bool) -> tuple[Answers, AddrMonitor, str, str]:
    await settle(net, rais)
    probe = UdpProbe(net, hosts(net), VIP2, rais.tmp)
    monitor = AddrMonitor(net, hosts(net), stamped=True)
    monitor.start()
    try:
        await asyncio.sleep(0.5)
        if pause:
            out = rais.cli("h2", "pause", "--for", "5s")
            assert "paused for 5s: www" in out, out
        rais.signal("h2", signal.SIGTERM)
        assert rais.wait("h2") == 0
        h2_log = rais.log("h2")
        rais.start("h2")
        back, _ = await wait_for(lambda: "up: host" in rais.log("h2")[len(h2_log) :], 10.0)
        assert back, rais.log("h2")
        ok, _ = await wait_for(lambda: holders(net, VIP2) == ["h2"], 10.0)
        assert ok, holders(net, VIP2)
        await asyncio.sleep(1.0)
        answers = probe.stop()
    finally:
        probe.kill()
        monitor.stop()
    return answers, monitor, rais.cli("h1", "events"), rais.cli("h3", "events")


async def test_an_in_place_restart_moves_nothing(cluster: tuple[Lab, Rais]) -> None:
    net, rais = cluster
    answers, monitor, h1, h3 = await _restart(net, rais, pause=True)
    gap, lost = largest_gap(answers), answers.longest_loss()
    print(f"in-place restart: largest gap {gap * 1000:.1f} ms, {len(answers.got)} answers")
    print(f"longest unanswered {lost * 1000:.1f} ms, {len(answers.sent)} sent")
    print("gaps over 10 ms (start s, length s):", gaps_over(answers, 0.010))
    assert {h for _, _, h in answers.got} == {"h2"}
    assert len(answers.sent) > 100
    assert lost <= 0.020, lost
    changes = [c for c in monitor.changes if c.address == VIP2]
    assert changes, "no refresh seen: is the monitor working?"
    assert all(c.host == "h2" and c.added for c in changes), changes  # refreshes only
    assert monitor.overlaps(VIP2) == []
    for events in (h1, h3):  # `rais events` on the others
        assert "host-paused" in events and "host-resumed" in events
        assert "host-lost" not in events


async def test_a_plain_restart_still_hands_over(cluster: tuple[Lab, Rais]) -> None:
    net, rais = cluster
    answers, monitor, _, h3 = await _restart(net, rais, pause=False)
    gap = largest_gap(answers)
    print(f"plain restart: largest gap {gap * 1000:.1f} ms")
    print(f"plain restart: longest unanswered {answers.longest_loss() * 1000:.1f} ms")
    assert "h3" in {h for _, _, h in answers.got}  # the spare took it over meanwhile
    assert [c for c in monitor.changes if c.address == VIP2 and not c.added]
    assert monitor.overlaps(VIP2) == []
    assert "host-paused" not in h3
