"""A group's members as the DNS thread sees them: host views built from the
core's read model (its own entry and the other hosts' entries)."""

from __future__ import annotations

import ipaddress

from rais.core.addr import fmt
from rais.core.messages import AddrState, HostEntry
from rais.core.view import CoreView
from rais.dns.zone import HostView


def host_label(host_id: str) -> str:
    """The per-host name's first label: ``host-192-0-2-11``, ``host-2001-db8--11``."""
    return "host-" + host_id.replace(".", "-").replace(":", "-")


def view(entry: HostEntry, live: bool) -> HostView:
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
    )


def views(cv: CoreView) -> list[HostView]:
    """Every host of the group as the DNS thread judges it."""
    return [view(m.entry, m.this_host or (m.live and not m.entry.leaving)) for m in cv.members]
