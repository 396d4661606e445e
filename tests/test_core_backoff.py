"""A host whose acquires keep failing is backed off, and the address goes elsewhere."""

from __future__ import annotations

import itertools

from clusterkit import Cluster, make_config, service

from rais.core.effects import Acquire, EventKind


def test_failing_preferred_host_is_backed_off_and_a_spare_serves() -> None:
    c = Cluster([make_config(1), make_config(2), make_config(3, spare=True)])
    c.run_until(1.0)
    c.kill(1)
    c.run_until(2.0)
    assert c.holders(service(2)) == [2]  # the spare took it over
    c.restart(1)
    c.nodes[1].fail_acquires = True
    c.run_until(6.0)
    tries = [t for t, e in c.logged(1, Acquire) if t > 2.0 and e.address == service(2)]
    # Backoff starts at one timeout (0.3 s) and doubles: a handful of tries in 4 s,
    # not hundreds a second.
    assert 2 <= len(tries) <= 6, tries
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert all(g2 >= g1 * 1.5 for g1, g2 in itertools.pairwise(gaps)), gaps
    assert len(c.events(1, EventKind.ACQUIRE_FAILED)) == len(tries)
    # Between tries the address is served, by exactly one host.
    assert len(c.holders(service(2))) == 1
    assert c.overlapping_claims(service(2)) == []
    # Once the host can acquire again, the next try brings the address home.
    c.nodes[1].fail_acquires = False
    c.run_until(20.0)
    assert c.holders(service(2)) == [1]
