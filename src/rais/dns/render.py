"""Master-file (RFC 1035 zone file) text of a :class:`~rais.dns.server.ZoneData`.

The one zone renderer: the zone-file publisher (:mod:`rais.dns.zonefile`)
writes its zone with it, from the same ``ZoneData`` the embedded server
answers from, so both carry the same records: SOA (same timers) and NS at
the apex, then the A/AAAA RRsets of every listed name (the group's name and
its per-host names), all with the zone's TTL. Names listed with no addresses
have no records, so they do not appear (in a zone file they would be
NXDOMAIN, where the embedded server answers NODATA). Rendered by dnspython,
sorted in DNSSEC canonical order with the apex first, names relative to a
``$ORIGIN`` line, every record with its TTL (so no ``$TTL`` line is needed).
"""

from __future__ import annotations

import dns.zone

from rais.dns.server import ZoneData


def zone_text(zone: ZoneData, *, comment: str | None = None) -> str:
    """The zone as master-file text, ending with a newline; ``comment`` (one
    line) goes first, as a ``;`` comment."""
    out = dns.zone.Zone(zone.origin)
    for rrset in zone.records():
        out.replace_rdataset(rrset.name, rrset)
    text = out.to_text(sorted=True, relativize=True, nl="\n", want_origin=True)
    return text if comment is None else f"; {comment}\n{text}"
