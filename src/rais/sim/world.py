"""The simulated world: the hosts, their control networks and the service
network (who holds which address), and the faults that change them.

This is the bottom of the simulator. The checker (sim/invariants.py) reads it,
the bad-datagram injection and the operator episodes (sim/inject.py,
sim/episodes.py) use its public methods, and the engine (sim/engine.py) runs
the cores in it. It imports none of them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rais.core import wire
from rais.core.addr import Addr
from rais.core.config import CoreConfig
from rais.core.core import Core
from rais.sim.network import Network
from rais.sim.params import SimParams

KEY = b"rais-simulator-group-key"
GROUP = "sim"


def addresses(i: int, ipv6: bool) -> tuple[Addr, Addr, Addr]:
    """Host i's id (first control address), second control address, service address."""
    if ipv6 or i >= 254:
        base = int(ipaddress.IPv6Address("2001:db8::c:0"))
        host = ipaddress.IPv6Address(base + i + 1).packed
        service = ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8:5::")) + i + 1).packed
    else:
        host = ipaddress.IPv4Address(f"192.0.2.{i + 1}").packed
        service = ipaddress.IPv4Address(f"198.51.100.{i + 1}").packed
    second = ipaddress.IPv6Address(int(ipaddress.IPv6Address("2001:db8:1::")) + i + 1).packed
    return host, second, service


def _extra(i: int, k: int) -> Addr:
    """The k-th other address of host i's preferred set: 2001:db8:6::/48 and up."""
    base = int(ipaddress.IPv6Address(f"2001:db8:{6 + k}::"))
    return ipaddress.IPv6Address(base + i + 1).packed


@dataclass(slots=True)
class SimHost:
    index: int
    id: Addr
    control: tuple[Addr, ...]
    preferred: Addr | None
    observer: bool
    core: Core | None = None
    up: bool = False
    test_ok: bool = True
    """Its test passes."""
    carrier: bool = True
    """Its service link has a carrier (the link fault takes it away)."""
    link_fit: bool = True
    """The carrier has been back for the core's hold-down (or since a boot)."""
    quiesced: bool = False
    epoch: int = 0
    started_at: float = 0.0
    down_at: float = 0.0
    timer_tick: int = -1
    """The engine's: the step its core's timer is scheduled for (-1: none)."""
    last_rx: bytes = b""
    old: bool = False
    """Runs the version-1 model (wire version 1, no features) since its last boot."""
    paused_until: float | None = None
    """Its agent is stopped in place after ``rais pause`` until then: it counts
    as up, its addresses stay on the service network, it has no core."""

    @property
    def ok(self) -> bool:
        """OK as rais.core.hosts reads it: the test passes and the link is fit."""
        return self.test_ok and self.link_fit

    @property
    def leaving(self) -> bool:
        """Out of the group, as rais.core.hosts reads the flag. The checker judges
        the hosts' real state, not their entries: it has no leaving state, a host
        that has left is down (one still releasing counts as up, as before)."""
        return not self.up


class Trace:
    """The run's trace: one line per event, hashed (and kept if asked)."""

    __slots__ = ("events", "lines", "sha")

    def __init__(self, keep: bool) -> None:
        self.lines: list[str] | None = [] if keep else None
        self.sha = hashlib.sha256()
        self.events = 0

    def log(self, now: float, text: str) -> None:
        self.events += 1
        line = f"{now:.4f} {text}\n"
        self.sha.update(line.encode())
        if self.lines is not None:
            self.lines.append(line)


OLD_RELEASE: dict[str, Any] = {"wire_versions": (1,), "features": ()}
"""What makes a core behave as the version-1 release on the wire."""


class World:
    """The hosts, the control networks (``net``) and the service network
    (``holders``). Fault methods change their state; draining the effects of a
    core that got an input is the engine's job."""

    def __init__(
        self, params: SimParams, *, keep_trace: bool, core_factory: Callable[..., Core]
    ) -> None:
        p = params
        self.params = p
        self.timeout = p.effective_timeout
        self.core_factory = core_factory
        self.net = Network(
            random.Random(p.seed * 7919 + 1),
            networks=p.networks,
            latency=p.latency,
            jitter=p.jitter,
            loss=p.loss,
            hear_limit=self.timeout - p.heartbeat,
        )
        self.rng = random.Random(p.seed * 7919 + 2)
        """Boot times, bad datagrams and the operator's picks."""
        self.hosts: list[SimHost] = []
        first_spare = p.hosts - p.observers - p.spares
        for i in range(p.hosts):
            hid, second, service = addresses(i, p.ipv6)
            observer = i >= p.hosts - p.observers
            preferred = None if i >= first_spare else service
            control = (hid, second)[: p.networks] if p.networks <= 2 else (hid, second)
            self.hosts.append(SimHost(i, hid, control, preferred, observer))
        self.extras: dict[int, tuple[tuple[Addr, int], ...]] = {}
        """The other addresses of each host's preferred set (``params.sets``)."""
        if p.sets:
            for h in self.hosts:
                if h.preferred is not None and self.rng.random() < p.sets:
                    n = 1 if self.rng.random() < 0.5 else 2
                    self.extras[h.index] = tuple((_extra(h.index, k), 64) for k in range(n))
        self.extra_holders: dict[Addr, set[int]] = {}
        """The service network's other addresses of sets: which hosts have each."""
        self.index_of = {h.id: h.index for h in self.hosts}
        self.voters = tuple(h.id for h in self.hosts)
        self.index_of_service = {h.preferred: h.index for h in self.hosts if h.preferred}
        self.group_tag = wire.group_tag(GROUP)
        self.holders: dict[Addr, set[int]] = {}
        """The service network: which hosts have each address online."""
        self.trace = Trace(keep_trace)
        self.boots = [0, 0]
        self.pauses = {"paused": 0, "resumed": 0, "lapsed": 0, "refused": 0}
        """What became of the pauses (for the sweeps' own checks)."""
        """Boots of this release and of the version-1 model (``SimParams.old``)."""

    # ------------------------------------------------------- service network

    def hold(self, address: Addr, host: int) -> None:
        self.holders.setdefault(address, set()).add(host)

    def release(self, address: Addr, host: int) -> bool:
        """Take the address off the host; False if it did not have it."""
        hs = self.holders.get(address)
        if hs is None or host not in hs:
            return False
        hs.discard(host)
        return True

    def hold_extra(self, address: Addr, host: int) -> None:
        self.extra_holders.setdefault(address, set()).add(host)

    def release_extra(self, address: Addr, host: int) -> None:
        self.extra_holders.get(address, set()).discard(host)

    def drop_extras(self, host: int) -> None:
        """The other addresses of every set ``host`` holds go: its agent removes
        them when it restarts in place, and its core adds them again once it may
        (rais.runtime.group.reconcile)."""
        for hs in self.extra_holders.values():
            hs.discard(host)

    # ---------------------------------------------------------------- faults

    def boot(self, h: SimHost, now: float, resume: list[tuple[Addr, int]] | None = None) -> None:
        """Start a new core (a new epoch) on a host that is down, or, with
        ``resume``, on one stopped in place that takes over those addresses
        (an in-place restart is into this release: it needs the pause feature)."""
        p = self.params
        h.epoch += 1
        pref = h.preferred
        h.old = resume is None and bool(p.old) and self.rng.random() < p.old
        self.boots[h.old] += 1
        cfg = CoreConfig(
            group=GROUP,
            control=h.control,
            keys=(KEY,),
            heartbeat=p.heartbeat,
            timeout=self.timeout,
            preferred=pref,
            prefixlen=(24 if pref is not None and len(pref) == 4 else 64) if pref else 0,
            observer=h.observer,
            orphan_timeout=p.orphan_timeout,
            link_hold=p.link_hold,
            guard=p.guard,
            voters=self.voters if p.guard == "majority" else (),
            lease=p.lease,
            on_arbiter_loss=p.on_arbiter_loss,
            **(OLD_RELEASE if h.old else {"extras": self.extras.get(h.index, ())}),
        )
        rng = random.Random((p.seed * 1_000_003 + h.index) * 131 + h.epoch)
        h.core = core = self.core_factory(cfg, epoch=h.epoch, rng=rng, now=now)
        h.up = True
        h.started_at = now
        h.last_rx = b""
        if resume is not None:
            core.resume(now, resume)
        if not h.test_ok:
            core.test_result(now, False, "still failing")
        # The agent reads the link at start: up counts at once, with no hold-down.
        h.link_fit = h.carrier
        if not h.carrier:
            core.link_state(now, False, "sim0: no carrier")
        if h.quiesced:
            core.quiesce(now)

    def held_by(self, index: int) -> list[Addr]:
        """The addresses host ``index`` has online, in address order."""
        return sorted(a for a, hs in self.holders.items() if index in hs)

    def stop_in_place(self, h: SimHost, now: float, until: float) -> list[Addr]:
        """The agent of a paused host stops without leaving: its core is gone,
        its addresses stay. Returns them."""
        h.core = None
        h.paused_until = until
        return self.held_by(h.index)

    def down(self, h: SimHost, now: float, *, keep: bool = False) -> list[Addr]:
        """The host stops (a crash, or the end of a graceful leave); its
        addresses go off the service network (with ``keep``, they stay until
        their kernel lifetime ends: sim/guarded.py). Returns those gone."""
        h.up = False
        h.core = None
        h.down_at = now
        for hs in self.extra_holders.values():
            hs.discard(h.index)
        if keep:
            return []
        gone = []
        for address, hs in self.holders.items():
            if h.index in hs:
                hs.discard(h.index)
                gone.append(address)
        return gone

    def leave(self, h: SimHost, now: float) -> None:
        """``rais leave``: the core releases its addresses and goes."""
        if h.core is not None:
            h.core.leave(now)

    def fail_test(self, h: SimHost, now: float, failing: bool) -> None:
        """The host's test starts (or stops) failing."""
        h.test_ok = not failing
        if h.core is not None:
            h.core.test_result(now, h.test_ok, "simulated test")

    def link(self, h: SimHost, now: float, up: bool) -> None:
        """The host's service link loses (or gets back) its carrier."""
        h.carrier = up
        if not up:
            h.link_fit = False
        if h.core is not None:
            h.core.link_state(now, up, "sim0: up" if up else "sim0: no carrier")

    def link_held(self, h: SimHost) -> None:
        """The hold-down after the carrier returned is over (the core sees it
        on its own timer): the host is fit again."""
        if h.carrier:
            h.link_fit = True

    def quiesce(self, h: SimHost, now: float, on: bool) -> None:
        h.quiesced = on
        if h.core is not None:
            if on:
                h.core.quiesce(now)
            else:
                h.core.unquiesce(now)
