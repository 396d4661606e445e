"""Embedded authoritative DNS server (asyncio, UDP and TCP, dnspython messages).

The zones come from a callback called once per query, so an answer always
reflects the latest :func:`rais.dns.zone.advertise` result. Behaviour:

* A/AAAA for names with addresses of that family; SOA and NS at the apex; the
  AA flag on every answer from a served zone. The owner name is echoed with
  the query's letter case. The records of an RRset go out in a fresh random
  order every time (dnspython shuffles when rendering): the patent's
  round-robin rotation for statistical load balancing.
* NODATA (NOERROR, empty answer, the SOA in authority) for an existing name
  without the asked type, for a name listed with no addresses at all (a group
  whose every address is shed or down stays NODATA rather than NXDOMAIN, so
  resolvers do not negatively cache the whole name), and for empty
  non-terminals (``hosts.rais.test`` when only ``h1.hosts.rais.test`` is
  listed). NXDOMAIN with the SOA for other names inside a served zone. The
  negative SOA has TTL ``min(ttl, negative_ttl)`` and MINIMUM
  ``negative_ttl`` (RFC 2308). No wildcards, no delegations: a zone nested in
  another served zone is answered from the closest enclosing origin.
* REFUSED (no AA) for names outside every served zone, classes other than IN,
  and AXFR/IXFR (no zone transfers: secondaries are fed by the zone-file
  publisher). NOTIMP for opcodes other than QUERY and for the other
  meta-types (OPT, TSIG, MAILA, ...). SERVFAIL when the zones callback raises.
* ANY is answered minimally (RFC 8482): the A and AAAA RRsets of the name; if
  it has none, a single RRset: the SOA at the apex, elsewhere the synthesized
  ``HINFO "RFC8482" ""``. NXDOMAIN for ANY works as for any other type.
* EDNS0: a query with OPT gets OPT back (version 0, our payload size); the UDP
  answer is limited to the client's payload size, capped at ``max_udp_payload``
  (1232 by default, the DNS flag day 2020 value, to avoid fragmentation) and
  never below 512; 512 without EDNS. EDNS versions above 0 get BADVERS.
* An answer that does not fit is cut at RRset granularity (an RRset is never
  split) with TC set, so a 100-address group goes out with an empty answer
  section and TC over UDP; the client retries over TCP, where up to 64 KiB goes.
* Warm-up (issue 10): a name listed in a zone's ``warming`` (a group whose host
  has not yet heard the group for one full timeout) gets no answer at all, for
  itself and every name below it, any type; silence over UDP, the connection
  closed over TCP. A resolver retries and gets the full answer once the group
  is warm; SERVFAIL or REFUSED would be cached by it (unbound: about 5 s) and
  NODATA/NXDOMAIN for the negative TTL. The other names of the zone answer
  normally. Counted in ``DnsCounters.warming``.
* FORMERR for messages that have a 12-byte header but do not parse (or do not
  carry exactly one question); silence for anything shorter and for
  responses (QR set); over TCP these also close the connection.
  TCP connections take pipelined queries and close after ``tcp_idle_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from rais.base.ip import IP

log = logging.getLogger(__name__)

SOA_REFRESH = 300
SOA_RETRY = 60
SOA_EXPIRE = 86400
PLAIN_UDP_PAYLOAD = 512
IN = dns.rdataclass.IN
_TTL_MAX = 2**31 - 1


@dataclass(frozen=True)
class ZoneData:
    """One zone: ``names`` maps absolute names (the group name, per-host names,
    maybe the apex) to their addresses, both families mixed. ``mname`` (the SOA
    MNAME) defaults to ``ns[0]``, ``rname`` (the SOA mailbox) to
    ``hostmaster.<origin>``; ``refresh``, ``retry`` and ``expire`` are the SOA
    timers, ``negative_ttl`` its MINIMUM. The keyword-only fields have the
    defaults the embedded server uses; the zone file is rendered from the same
    data (:mod:`rais.dns.render`)."""

    origin: dns.name.Name
    serial: int
    ttl: int = field(default=5, kw_only=True)
    negative_ttl: int = field(default=5, kw_only=True)
    ns: tuple[dns.name.Name, ...]
    names: Mapping[dns.name.Name, tuple[IP, ...]]
    rname: dns.name.Name | None = field(default=None, kw_only=True)
    mname: dns.name.Name | None = field(default=None, kw_only=True)
    refresh: int = field(default=SOA_REFRESH, kw_only=True)
    retry: int = field(default=SOA_RETRY, kw_only=True)
    expire: int = field(default=SOA_EXPIRE, kw_only=True)
    warming: tuple[dns.name.Name, ...] = field(default=(), kw_only=True)
    """Names (with everything below them) left unanswered: still warming up."""

    def __post_init__(self) -> None:
        if not self.origin.is_absolute():
            raise ValueError(f"zone origin must be absolute: {self.origin}")
        if not 0 <= self.serial < 2**32:
            raise ValueError(f"serial out of range: {self.serial}")
        for what in ("ttl", "negative_ttl", "refresh", "retry", "expire"):
            if not 0 <= getattr(self, what) <= _TTL_MAX:
                raise ValueError(f"{what} out of range: {getattr(self, what)}")
        if not self.ns or not all(n.is_absolute() for n in self.ns):
            raise ValueError("ns must list at least one absolute name")
        if self.mname is not None and not self.mname.is_absolute():
            raise ValueError(f"mname must be absolute: {self.mname}")
        for name in (*self.names, *self.warming):
            if not name.is_absolute() or not name.is_subdomain(self.origin):
                raise ValueError(f"{name} is not an absolute name inside {self.origin}")
        object.__setattr__(self, "warming", tuple(self.warming))
        frozen = MappingProxyType({n: tuple(a) for n, a in self.names.items()})
        object.__setattr__(self, "names", frozen)
        object.__setattr__(self, "ns", tuple(self.ns))

    @cached_property
    def nodes(self) -> frozenset[dns.name.Name]:
        """Every existing name: the apex, the listed and warming names, their
        empty non-terminals."""
        found = {self.origin}
        for name in (*self.names, *self.warming):
            while name not in found:
                found.add(name)
                name = name.parent()
        return frozenset(found)

    def soa(self, negative: bool = False) -> dns.rrset.RRset:
        """The SOA RRset (for a negative answer, TTL ``min(ttl, negative_ttl)``)."""
        rname = self.rname or dns.name.Name(("hostmaster",)).concatenate(self.origin)
        mname = self.mname or self.ns[0]
        timers = f"{self.serial} {self.refresh} {self.retry} {self.expire} {self.negative_ttl}"
        ttl = min(self.ttl, self.negative_ttl) if negative else self.ttl
        return dns.rrset.from_text(self.origin, ttl, IN, "SOA", f"{mname} {rname} {timers}")

    def ns_rrset(self, owner: dns.name.Name | None = None) -> dns.rrset.RRset:
        texts = [n.to_text() for n in self.ns]
        return dns.rrset.from_text_list(owner or self.origin, self.ttl, IN, "NS", texts)

    def address_rrset(
        self,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        owner: dns.name.Name | None = None,
    ) -> dns.rrset.RRset | None:
        """The A or AAAA RRset of ``name`` (owned by ``owner``), None if it has none."""
        version = 4 if rdtype == dns.rdatatype.A else 6
        texts = [str(a) for a in self.names.get(name, ()) if a.version == version]
        if not texts:
            return None
        return dns.rrset.from_text_list(owner or name, self.ttl, IN, rdtype, texts)

    def records(self) -> list[dns.rrset.RRset]:
        """Every RRset of the zone: SOA, NS, then the address records."""
        out = [self.soa(), self.ns_rrset()]
        for name in self.names:
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                rrset = self.address_rrset(name, rdtype)
                if rrset is not None:
                    out.append(rrset)
        return out

    def lookup(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[bool, list[dns.rrset.RRset]]:
        """(whether ``qname`` exists, the answer RRsets for ``rdtype``)."""
        if qname not in self.nodes:
            return False, []
        apex = qname == self.origin
        if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            rrset = self.address_rrset(qname, rdtype, qname)
            return True, [] if rrset is None else [rrset]
        if rdtype == dns.rdatatype.SOA and apex:
            return True, [self.soa()]
        if rdtype == dns.rdatatype.NS and apex:
            return True, [self.ns_rrset(qname)]
        if rdtype == dns.rdatatype.ANY:
            found = [
                r
                for t in (dns.rdatatype.A, dns.rdatatype.AAAA)
                if (r := self.address_rrset(qname, t, qname)) is not None
            ]
            if found:
                return True, found
            if apex:
                return True, [self.soa()]
            return True, [dns.rrset.from_text(qname, self.ttl, IN, "HINFO", '"RFC8482" ""')]
        return True, []


def is_warming(zone: ZoneData, qname: dns.name.Name) -> bool:
    """Whether ``qname`` is a warming name of ``zone`` or below one (and not
    below a listed name nested deeper, which belongs to a group that is warm)."""
    depth = max((len(w) for w in zone.warming if qname.is_subdomain(w)), default=-1)
    if depth < 0:
        return False
    return not any(len(n) > depth and qname.is_subdomain(n) for n in zone.names)


def closest_zone(zones: Sequence[ZoneData], qname: dns.name.Name) -> ZoneData | None:
    """The served zone with the longest origin enclosing ``qname``."""
    best: ZoneData | None = None
    for zone in zones:
        if qname.is_subdomain(zone.origin) and (
            best is None or len(zone.origin) > len(best.origin)
        ):
            best = zone
    return best


def warming(query: dns.message.Message, zones: Sequence[ZoneData]) -> bool:
    """Whether ``query`` asks (class IN) about a name that is still warming up."""
    if len(query.question) != 1 or query.question[0].rdclass != IN:
        return False
    zone = closest_zone(zones, query.question[0].name)
    return zone is not None and is_warming(zone, query.question[0].name)


def resolve(
    query: dns.message.Message, response: dns.message.Message, zones: Sequence[ZoneData]
) -> None:
    """Fill ``response`` (rcode, flags, sections) for a parsed QUERY (names
    still warming up are the caller's business: see :func:`warming`)."""
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return
    question = query.question[0]
    qname, rdtype = question.name, question.rdtype
    zone = closest_zone(zones, qname) if question.rdclass == IN else None
    if zone is None or rdtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
        response.set_rcode(dns.rcode.REFUSED)
        return
    if dns.rdatatype.is_metatype(rdtype) and rdtype != dns.rdatatype.ANY:
        response.set_rcode(dns.rcode.NOTIMP)
        return
    response.flags |= dns.flags.AA
    exists, rrsets = zone.lookup(qname, rdtype)
    response.answer.extend(rrsets)
    if not rrsets:
        response.authority.append(zone.soa(negative=True))
        if not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)


@dataclass
class DnsCounters:
    """``queries``: messages received; ``answers``: responses sent, by rcode
    name; ``truncated``: responses sent with TC; ``dropped``: messages left
    unanswered (too short for a header, or responses); ``warming``: queries
    left unanswered because their name is still warming up."""

    queries: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    truncated: int = 0
    dropped: int = 0
    warming: int = 0


class DnsServer:
    """Serves ``zones()`` on ``listen`` (UDP and TCP on the same port; port 0
    picks a free one, see :attr:`port`). Use a numeric listen address."""

    def __init__(
        self,
        listen: tuple[str, int],
        zones: Callable[[], Sequence[ZoneData]],
        *,
        max_udp_payload: int = 1232,
        tcp_idle_timeout: float = 10.0,
    ) -> None:
        if not PLAIN_UDP_PAYLOAD <= max_udp_payload <= 65535:
            raise ValueError(f"max_udp_payload out of range 512..65535: {max_udp_payload}")
        self.listen = listen
        self.zones = zones
        self.max_udp_payload = max_udp_payload
        self.tcp_idle_timeout = tcp_idle_timeout
        self.counters = DnsCounters()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_tasks: set[asyncio.Task[Any]] = set()
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port actually bound (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("DnsServer is not started")
        return self._port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.listen
        for _ in range(20):
            udp, _proto = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(host, port)
            )
            bound = int(udp.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, bound)
            except OSError as exc:
                udp.close()
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    continue  # the UDP port is taken over TCP: pick another
                raise
            self._udp, self._port = udp, bound
            log.info("DNS server on %s port %d (UDP and TCP)", host, bound)
            return
        raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None

    def handle(self, wire: bytes, udp: bool) -> bytes | None:
        """The response to one message (None: say nothing)."""
        self.counters.queries += 1
        if len(wire) < 12 or wire[2] & 0x80:  # no header, or a response (QR)
            self.counters.dropped += 1
            return None
        limit = PLAIN_UDP_PAYLOAD if udp else 65535
        try:
            query = dns.message.from_wire(wire)
        except Exception as exc:
            log.debug("malformed DNS message: %s", exc)
            response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
            response.flags = dns.flags.QR | (int.from_bytes(wire[2:4], "big") & dns.flags.RD)
            opcode = dns.opcode.from_flags(int.from_bytes(wire[2:4], "big"))
            response.set_opcode(opcode)
            bad = dns.rcode.NOTIMP if opcode != dns.opcode.QUERY else dns.rcode.FORMERR
            response.set_rcode(bad)
            return self._render(response, limit)
        response = dns.message.make_response(query, our_payload=self.max_udp_payload)
        if udp and query.edns >= 0:
            limit = max(PLAIN_UDP_PAYLOAD, min(query.payload, self.max_udp_payload))
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
        else:
            try:
                zones = self.zones()
            except Exception:
                log.exception("DNS zones callback failed")
                response.set_rcode(dns.rcode.SERVFAIL)
            else:
                if warming(query, zones):
                    self.counters.warming += 1
                    return None
                resolve(query, response, zones)
        return self._render(response, limit)

    def _render(self, response: dns.message.Message, limit: int) -> bytes:
        wire = response.to_wire(max_size=limit, prefer_truncation=True)
        if wire[2] & 0x02:  # TC
            self.counters.truncated += 1
        self.counters.answers[dns.rcode.to_text(response.rcode())] += 1
        return wire

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tcp_tasks.add(task)
        try:
            while True:
                try:
                    size = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
                    wire = await asyncio.wait_for(
                        reader.readexactly(int.from_bytes(size, "big")), self.tcp_idle_timeout
                    )
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                try:
                    reply = self.handle(wire, udp=False)
                except Exception:
                    log.exception("DNS query over TCP failed")
                    return
                if reply is None:
                    return
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            if task is not None:
                self._tcp_tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            reply = self.server.handle(data, udp=True)
        except Exception:
            log.exception("DNS query from %s failed", addr)
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP socket error: %s", exc)
