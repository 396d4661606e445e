"""A group's members as the DNS thread sees them: host views built from the
core's read model (its own entry and the other hosts' entries)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from rais.core.addr import Addr, fmt
from rais.core.features import SETS
from rais.core.messages import AddrState, HostEntry
from rais.core.view import CoreView, MemberView
from rais.dns.zone import HostView


def host_label(host_id: str) -> str:
    """The per-host name's first label: ``host-192-0-2-11``, ``host-2001-db8--11``."""
    return "host-" + host_id.replace(".", "-").replace(":", "-")


def view(entry: HostEntry, live: bool, extras_up: Iterable[Addr] = ()) -> HostView:
    """``extras_up``: the other addresses of its preferred set that are up."""
    served = frozenset(ipaddress.ip_address(a) for a, s in entry.served if s == AddrState.ONLINE)
    pref = ipaddress.ip_address(entry.preferred) if entry.preferred is not None else None
    return HostView(
        id=fmt(entry.id),
        live=live,
        ok=entry.ok,
        quiesced=entry.quiesced,
        observer=entry.observer,
        preferred=pref,
        serving_preferred=pref is not None and pref in served,
        load=entry.load,
        capacity=entry.capacity,
        serving=served,
        extras=tuple(ipaddress.ip_address(a) for a in extras_up),
    )


def _extras_up(cv: CoreView, m: MemberView) -> tuple[Addr, ...]:
    """The other addresses of a member's preferred set that are up: for this
    host, what its core has configured; for another, all of them while ``sets``
    is common (a holder brings them then, docs/protocol.md "Address sets"),
    none otherwise."""
    entry = m.entry
    if not entry.extras or entry.preferred is None:
        return ()
    if m.this_host:
        for s in cv.sets:
            if s.key == entry.preferred:
                return tuple(a for a, _ in s.up)
        return ()
    return tuple(a for a, _ in entry.extras) if SETS in cv.common_features else ()


def views(cv: CoreView) -> list[HostView]:
    """Every host of the group as the DNS thread judges it."""
    return [
        view(m.entry, m.this_host or (m.live and not m.entry.leaving), _extras_up(cv, m))
        for m in cv.members
    ]
