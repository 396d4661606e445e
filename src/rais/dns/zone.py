"""What a group's DNS name advertises (the patent's DNS thread), and zone serials.

:func:`advertise` is pure: host views, a policy and the previous answer in, the
new answer out. No clock, no I/O; the same inputs always give the same output,
whatever the order of the hosts.

Eligibility
    An address is *eligible* when it is the preferred service address of a host
    that is live, OK, not quiesced, not an observer and currently serving it.
    Never advertised (except by the ``all-live`` fail-open, below): orphaned
    addresses (served by a host that does not prefer them), the addresses of
    failed, quiesced or silent hosts, and hot spares (no preferred address).
    Two eligible hosts claiming the same address (a transient double claim)
    count once, with the lower weighted utilization of the two.

Load shedding with hysteresis (WO 98/26553, DNS thread)
    ``util`` is :func:`rais.core.utilization.utilization`, the rule the leader's
    placement uses too: ``load * scale // capacity`` (integer division, not
    clamped); a host that reports no load at all, load 0 and capacity 0, has no
    load objects: util 0; a load against capacity 0 is ``util = scale``, fully
    used. With ``delta = high - low``::

        weighted = util           if the address was advertised last time
        weighted = util + delta   if it was not
        in  <=>  weighted <= high

    So, precisely at the boundaries:

    * an advertised host stays in while ``util <= high`` and is removed when
      ``util > high`` (strictly above the high mark; ``util == high`` stays in);
    * a host that was not advertised comes (back) in when ``util <= low``
      (at or below the low mark; ``util == low`` comes back) and stays out
      while ``util > low``;
    * strictly between the marks (``low < util < high``) a host keeps its
      previous status, so a load oscillating there never flaps.

    A newly eligible host (just recovered, just joined) was not advertised last
    time, so it comes in only at or below the low mark, as in the patent where
    it is absent from the previous table M. ``previous=None`` means "no history"
    (first run): every host is treated as advertised last time, so only the high
    mark applies. ``high == low`` is allowed and disables the hysteresis.

Minimum number of addresses
    The eligible addresses are sorted by (weighted util, address; IPv4 before
    IPv6, then numerically); the first ``min_addresses`` are always kept, even
    above the high mark; the rest are kept iff ``weighted <= high``.

Fewer than ``min_addresses`` eligible at all
    ``remaining``: advertise every eligible address, however loaded (possibly
    none). ``all-live`` (fail open, like Route 53 answering with every record
    of a weighted or multivalue set once all of them are unhealthy, or
    PowerDNS's ``ifportup()`` picking from all candidates once all are down):
    advertise every address currently served by a live host, orphans and the
    addresses held by quiesced or service-failed (but live) hosts included;
    silent (not live) hosts contribute nothing. Nothing is shed in either case.

Serials
    :func:`serial_next` and :func:`serial_gt` implement RFC 1982 arithmetic on
    32-bit zone serials.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from rais.base.ip import IP, ip_key, sorted_ips
from rais.core.hosts import eligible as host_eligible
from rais.core.utilization import utilization

SERIAL_BITS = 32
_MOD = 1 << SERIAL_BITS
_HALF = 1 << (SERIAL_BITS - 1)


@dataclass(frozen=True)
class HostView:
    """What the DNS thread knows of one group member.

    ``serving`` lists every address the host currently holds; it is only used
    by the ``all-live`` fail-open (``preferred`` counts as held when
    ``serving_preferred`` is set, whether or not it is listed).
    """

    id: str
    live: bool
    ok: bool
    quiesced: bool
    observer: bool
    preferred: IP | None
    serving_preferred: bool
    load: int
    capacity: int
    serving: frozenset[IP] = frozenset()
    extras: tuple[IP, ...] = ()
    """With an address set: its other addresses that are up with the preferred
    one (the key); they are advertised with it, as one entry."""

    def __post_init__(self) -> None:
        if self.load < 0 or self.capacity < 0:
            raise ValueError(f"host {self.id}: load and capacity must be >= 0")

    @property
    def leaving(self) -> bool:
        """Out of the group, as rais.core.hosts reads the flag: not live
        (rais.dns.views counts a host that left as not live)."""
        return not self.live

    @property
    def eligible(self) -> bool:
        """Whether the preferred address may be advertised at all: the host is
        eligible (rais.core.hosts) and serves its preferred address."""
        return host_eligible(self) and self.preferred is not None and self.serving_preferred

    def held(self) -> frozenset[IP]:
        """Every address the host currently serves."""
        if self.serving_preferred and self.preferred is not None:
            return self.serving | {self.preferred, *self.extras}
        return self.serving

    def entry(self) -> tuple[IP, ...]:
        """Its entry in the answer: the preferred address and the set's other
        addresses that are up (none if it has no preferred address)."""
        return () if self.preferred is None else (self.preferred, *self.extras)


@dataclass(frozen=True)
class ZonePolicy:
    """Load shedding and minimum-address settings of one group's zone.

    ``high``/``low`` are utilization marks on the ``0..scale`` scale; both
    ``None`` means no load shedding. Setting only one of them is an error.
    """

    scale: int = 1000
    high: int | None = None
    low: int | None = None
    min_addresses: int = 1
    when_short: Literal["remaining", "all-live"] = "remaining"

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError("scale must be >= 1")
        if (self.high is None) != (self.low is None):
            raise ValueError("set both high and low water marks, or neither")
        if self.high is not None and self.low is not None and not 0 <= self.low <= self.high:
            raise ValueError(f"need 0 <= low <= high, got low={self.low} high={self.high}")
        if self.min_addresses < 0:
            raise ValueError("min_addresses must be >= 0")
        if self.when_short not in ("remaining", "all-live"):
            raise ValueError(f"when_short must be 'remaining' or 'all-live': {self.when_short!r}")

    @property
    def shedding(self) -> bool:
        return self.high is not None


@dataclass(frozen=True)
class ZoneAnswer:
    """The outcome: ``addresses`` (sorted) is what the name advertises;
    ``advertised`` is the same as a set (pass it back as ``previous``);
    ``shed`` holds the eligible addresses left out for load."""

    addresses: tuple[IP, ...]
    shed: frozenset[IP]
    advertised: frozenset[IP]


def _expand(keys: Iterable[IP], hosts: Sequence[HostView]) -> list[IP]:
    """The keys (preferred addresses) with the other addresses of their sets."""
    sets = {h.preferred: h.extras for h in hosts if h.eligible and h.preferred is not None}
    return [a for k in keys for a in (k, *sets.get(k, ()))]


def _answer(addrs: Iterable[IP], shed: Iterable[IP] = ()) -> ZoneAnswer:
    ordered = sorted_ips(addrs)
    return ZoneAnswer(addresses=ordered, shed=frozenset(shed), advertised=frozenset(ordered))


def advertise(
    hosts: Sequence[HostView],
    policy: ZonePolicy,
    previous: frozenset[IP] | None = None,
) -> ZoneAnswer:
    """The addresses the group's name advertises now (see the module doc).

    ``previous`` is the ``advertised`` set of the last answer (``None``: no
    history, everyone counts as advertised last time).
    """
    delta = 0
    if policy.high is not None and policy.low is not None:
        delta = policy.high - policy.low
    weighted: dict[IP, int] = {}
    for host in hosts:
        if not host.eligible or host.preferred is None:
            continue
        addr = host.preferred
        util = utilization(host.load, host.capacity, policy.scale)
        was_in = previous is None or addr in previous
        w = util if was_in or not policy.shedding else util + delta
        weighted[addr] = min(w, weighted.get(addr, w))

    if len(weighted) < policy.min_addresses:
        if policy.when_short == "all-live":
            return _answer(a for h in hosts if h.live for a in h.held())
        return _answer(_expand(weighted, hosts))

    ranked = sorted(weighted, key=lambda a: (weighted[a], ip_key(a)))
    keep = ranked[: policy.min_addresses]
    shed: list[IP] = []
    for addr in ranked[policy.min_addresses :]:
        if policy.high is None or weighted[addr] <= policy.high:
            keep.append(addr)
        else:
            shed.append(addr)
    return _answer(_expand(keep, hosts), _expand(shed, hosts))


def serial_gt(a: int, b: int) -> bool:
    """RFC 1982 ``a > b`` for 32-bit serials (false when a and b are 2**31 apart)."""
    _check_serial(a)
    _check_serial(b)
    return (a < b and b - a > _HALF) or (a > b and a - b < _HALF)


def serial_next(old: int, now_unix: int) -> int:
    """The serial to publish after ``old``: the clock (``now_unix`` mod 2**32)
    if that is RFC-1982-greater than ``old``, otherwise ``old + 1`` (mod 2**32).

    The result is always RFC-1982-greater than ``old``, so secondaries never
    see the zone go backwards, even when the clock steps back or the serial
    wraps past 2**32 - 1.
    """
    _check_serial(old)
    if now_unix < 0:
        raise ValueError("now_unix must be >= 0")
    clock = now_unix % _MOD
    if serial_gt(clock, old):
        return clock
    return (old + 1) % _MOD


def _check_serial(value: int) -> None:
    if not 0 <= value < _MOD:
        raise ValueError(f"serial out of range 0..2**32-1: {value}")
