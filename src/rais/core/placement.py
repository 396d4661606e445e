"""Where the leader puts an orphan (rule 3 of rais.core.control): the hosts'
loads and the pick among the hosts that may take it."""

from __future__ import annotations

import random

from rais.core.addr import Addr
from rais.core.hosts import eligible, pausing
from rais.core.messages import HostEntry
from rais.core.utilization import utilization


def loads(hosts: list[HostEntry], load_scale: int) -> dict[Addr, list[int]]:
    """Per host that may be given an address (eligible, not pausing): [addresses
    given in this pass, utilization (on the group's load_scale, the same value
    DNS uses), addresses it serves]."""
    out: dict[Addr, list[int]] = {}
    for h in hosts:
        if eligible(h) and not pausing(h):
            util = utilization(h.load, h.capacity, load_scale)
            out[h.id] = [0, util, len(h.served)]
    return out


def pick(
    takers: list[Addr], load: dict[Addr, list[int]], placement: str, rng: random.Random
) -> Addr:
    """Where an orphan goes. "least-loaded": never a second address to a host
    in one pass while another taker got none, then the lowest utilization,
    then the fewest addresses served, ties broken by the seeded random pick;
    "random": the patent's random pick."""
    if placement == "random":
        return rng.choice(takers)
    keys = {h: tuple(load.get(h, (0, 0, 0))) for h in takers}
    best = min(keys.values())
    return rng.choice([h for h in takers if keys[h] == best])
