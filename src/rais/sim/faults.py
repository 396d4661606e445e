"""The random fault schedule: episodes separated by quiet periods.

Every episode is a start action and, later, an end action. Between one
episode's last action and the next episode's first there is a quiet period of
at least ``timeout + 2 x heartbeat`` plus a margin, so invariant I1 is checked
after every episode; about one episode in four starts while the previous one
is still going on, to exercise overlapping faults.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rais.core.pause import KERNEL_MARGIN, bounds

KINDS = (
    "crash",
    "leave",
    "test",
    "quiesce",
    "partition",
    "netcut",
    "loss",
    "latency",
    "move",
    "pause",
    "link",
)
WEIGHTS = (5, 2, 3, 2, 2, 2, 2, 1, 2, 2, 2)
"""'link': a host's service link loses its carrier ('link+'), gets it back
('link-'), and the hold-down ends ('linkup-', ``link_hold`` later)."""
HOST_FAULTS = ("crash", "leave", "test", "quiesce", "pause", "link", "stall")
GUARDED = {"pause": "stall"}
"""With a guard a pause is refused (rais.core.guard): the agent stalls
instead (SIGSTOP, a VM pause: 'stall'); with etcd the arbiter goes down in
turn ('etcd'); and some control-network cuts are asymmetric ('deaf': a random
set of (sender, receiver) pairs that do not get through, one way only)."""


@dataclass(frozen=True, slots=True)
class FaultAction:
    time: float
    kind: str
    """One of KINDS with '+' (start) or '-' (end) appended, e.g. 'crash+'; 'drained-'
    marks the end of a latency spike's last delayed datagram."""
    hosts: tuple[int, ...] = ()
    value: float = 0.0


def schedule(
    rng: random.Random,
    *,
    hosts: int,
    candidates: list[int],
    duration: float,
    heartbeat: float,
    timeout: float,
    networks: int,
    orphan_timeout: float,
    link_hold: float = 0.5,
    guard: str = "none",
    bound: float = 0.0,
    lease: float = 2.0,
) -> list[FaultAction]:
    """Random episodes over ``candidates`` (hosts that may be faulted); with a
    ``guard``, quiet periods of its ``bound`` and its faults (``GUARDED``)."""
    quiet = max(timeout + 2 * heartbeat, bound) + 0.3
    t = 2 * timeout + 1.0
    end_of_faults = duration - 2 * quiet - 1.0
    busy_until: dict[int, float] = {}
    netcut_until = 0.0
    actions: list[FaultAction] = []
    last_end = t
    while t < end_of_faults and candidates:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        if guard != "none":
            kind = GUARDED.get(kind, kind)
            r = rng.random()
            if kind in ("latency", "loss") and guard == "etcd" and r < 0.4:
                kind = "etcd"
            elif kind in ("netcut", "loss", "latency") and r < 0.7:
                kind = "deaf"
            elif kind in ("move", "test", "quiesce", "leave") and r < 0.5:
                kind = "partition"  # what the guard is for: more of them
        window = 0.0
        if kind == "netcut" and (networks < 2 or netcut_until > t):
            # One control network at a time: two cut at once is a partition.
            kind = "loss"
        free = [h for h in candidates if busy_until.get(h, 0.0) <= t]
        if kind in HOST_FAULTS and not free:
            t += quiet
            continue
        if kind in ("crash", "leave"):
            # Sometimes long enough for the orphan countdown to run out.
            length = (
                rng.uniform(0.5, orphan_timeout * 1.6)
                if rng.random() < 0.3
                else (rng.uniform(0.3, 4.0))
            )
        elif kind in ("test", "quiesce", "link"):
            length = rng.uniform(0.3, 5.0)
        elif kind == "pause":
            # ``rais pause --for D`` then a restart in place: mostly back in time
            # (with the KERNEL_MARGIN the agent needs left), sometimes too late.
            shortest = bounds(timeout)[0]
            window = rng.uniform(shortest, max(4.0, shortest + 1.0))
            if rng.random() < 0.8:
                length = rng.uniform(0.2, window - KERNEL_MARGIN - 0.1)
            else:
                length = window + rng.uniform(0.1, 3.0)
        elif kind == "latency":
            length = rng.uniform(0.2, 2.0)
        elif kind == "stall":
            length = rng.uniform(0.1, 3 * lease)
        elif kind == "etcd":
            length = rng.uniform(0.5, 6.0)
        elif kind == "deaf":
            length = rng.uniform(0.5, bound + 3.0)
        elif kind == "partition" and guard != "none" and rng.random() < 0.7:
            length = rng.uniform(bound, bound + 4.0)  # long enough for I8
        elif kind == "move":
            # An operator pins an address elsewhere, then fails it back; shorter
            # than the orphan countdown, which a pinned orphan still runs.
            length = rng.uniform(0.3, min(4.0, orphan_timeout / 3))
        else:
            length = rng.uniform(0.2, 3.0)
        hold = link_hold if kind == "link" else 0.0
        if t + length + hold > end_of_faults:
            break
        hosts_hit: tuple[int, ...] = ()
        value = 0.0
        if kind == "pause":
            hosts_hit = (rng.choice(free),)
            busy_until[hosts_hit[0]] = t + length + quiet
            value = window
        elif kind in HOST_FAULTS:
            count = 1 if rng.random() < 0.8 else min(len(free), 2)
            hosts_hit = tuple(sorted(rng.sample(free, count)))
            for h in hosts_hit:
                busy_until[h] = t + length + hold + quiet
        elif kind == "deaf":
            pairs = [(a, b) for a in range(hosts) for b in range(hosts) if a != b]
            hosts_hit = tuple(x for pair in pairs if rng.random() < 0.3 for x in pair)
        elif kind == "partition":
            side = [h for h in range(hosts) if rng.random() < 0.5]
            if not side or len(side) == hosts:
                side = [rng.randrange(hosts)]
            hosts_hit = tuple(side)
            value = rng.random()  # with etcd: on the split-off side if >= 0.5
        elif kind == "netcut":
            netcut_until = t + length + quiet
            value = float(rng.randrange(networks))
            if rng.random() < 0.5:
                hosts_hit = tuple(sorted(rng.sample(range(hosts), max(1, hosts // 3))))
        elif kind == "loss":
            value = rng.uniform(0.05, 0.6)
        elif kind == "latency":
            value = rng.uniform(0.005, 2.5 * timeout)
        actions.append(FaultAction(t, kind + "+", hosts_hit, value))
        actions.append(FaultAction(t + length, kind + "-", hosts_hit, value))
        if kind == "link":
            actions.append(FaultAction(t + length + hold, "linkup-", hosts_hit))
        if kind == "latency":
            # Datagrams sent during the spike are still in flight after it ends:
            # the disturbance is over when the last of them has landed.
            actions.append(FaultAction(t + length + value + 0.001, "drained-", (), value))
        last_end = max(last_end, t + length + hold)
        if rng.random() < 0.25:
            t = t + rng.uniform(0.05, length)
        else:
            t = last_end + quiet + rng.uniform(0.0, 2.0)
    actions.sort(key=lambda a: a.time)
    return actions
