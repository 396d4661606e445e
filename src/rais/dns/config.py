"""The DNS parts of the config file: ``[dns]`` (the embedded server) and, per
group, ``[group.dns]`` with its publishers ``[group.dns.update]`` (RFC 2136)
and ``[group.dns.zonefile]``. See docs/configuration.md, "DNS"."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal

import dns.exception
import dns.name

from rais.base.ip import IP
from rais.base.section import Invalid, Section, parse_endpoint
from rais.dns.update import TSIG_ALGORITHMS

_TOP = ("listen", "ns")
_GROUP = (
    "name",
    "zone",
    "ttl",
    "negative_ttl",
    "high",
    "low",
    "min_addresses",
    "when_short",
    "host_names",
    "update",
    "zonefile",
)
_UPDATE = ("server", "zone", "key_name", "key_file", "algorithm", "publisher", "timeout")
_ZONEFILE = ("path", "reload", "publisher", "ns")

Publisher = Literal["leader", "self"]


@dataclass(frozen=True, slots=True)
class DnsServerConfig:
    """``[dns]``: where the embedded authoritative server listens."""

    listen: tuple[tuple[IP, int], ...] = ()
    ns: tuple[str, ...] = ("localhost.",)


@dataclass(frozen=True, slots=True)
class UpdateConfig:
    server: tuple[IP, int]
    zone: str
    key_name: str
    secret_b64: str
    algorithm: str = "hmac-sha256"
    publisher: Publisher = "leader"
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class ZoneFileConfig:
    path: str
    reload: str | None = None
    publisher: Publisher = "leader"
    ns: tuple[str, ...] = ("localhost.",)


@dataclass(frozen=True, slots=True)
class GroupDnsConfig:
    """``[group.dns]``: the name that advertises the group's addresses."""

    name: str
    """Absolute, with the final dot."""
    zone: str
    ttl: int = 5
    negative_ttl: int = 5
    high: int | None = None
    """Utilization (in load_scale units) above which a host leaves the answer."""
    low: int | None = None
    """Utilization at or below which a removed host comes back."""
    min_addresses: int = 1
    when_short: Literal["remaining", "all-live"] = "remaining"
    host_names: bool = True
    """Also answer ``<host-label>.<name>`` for each host serving its address."""
    update: UpdateConfig | None = None
    zonefile: ZoneFileConfig | None = None


def _dns_name(s: Section, key: str, default: str | None = None) -> str:
    text = s.opt_string(key, default)
    if text is None:
        raise s.fail(key, "missing")
    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise s.fail(key, f"not a DNS name: {text!r} ({exc})") from None
    if len(name.labels) < 2:
        raise s.fail(key, f"{text!r} is the root")
    return name.to_text()


def _publisher(s: Section) -> Publisher:
    return "self" if s.choice("publisher", ("leader", "self")) == "self" else "leader"


def parse_server(data: dict[str, Any], base: str) -> DnsServerConfig:
    s = Section(data, "dns", _TOP, base)
    listen: list[tuple[IP, int]] = []
    raw = s.data.get("listen")
    items = [raw] if isinstance(raw, str) else s.strings("listen")
    for i, text in enumerate(items):
        try:
            listen.append(parse_endpoint(text))
        except ValueError as exc:
            key = s.key("listen") + ("" if isinstance(raw, str) else f"[{i}]")
            raise Invalid(key, str(exc)) from None
    ns = tuple(_names(s, "ns")) or ("localhost.",)
    return DnsServerConfig(listen=tuple(listen), ns=ns)


def _names(s: Section, key: str) -> list[str]:
    out = []
    for i, text in enumerate(s.strings(key)):
        try:
            out.append(dns.name.from_text(text).to_text())
        except dns.exception.DNSException as exc:
            raise Invalid(f"{s.key(key)}[{i}]", f"not a DNS name: {text!r} ({exc})") from None
    return out


def parse_group(data: dict[str, Any], prefix: str, base: str) -> GroupDnsConfig:
    s = Section(data, prefix, _GROUP, base)
    name = _dns_name(s, "name")
    parent = dns.name.from_text(name).parent().to_text()
    zone = _dns_name(s, "zone", parent)
    if not dns.name.from_text(name).is_subdomain(dns.name.from_text(zone)):
        raise s.fail("zone", f"{name} is not inside zone {zone}")
    has_high, has_low = s.has("high"), s.has("low")
    if has_high != has_low:
        raise s.fail("low" if has_high else "high", "set both high and low, or neither")
    high = s.integer("high", 0, 0) if has_high else None
    low = s.integer("low", 0, 0) if has_low else None
    if high is not None and low is not None and low > high:
        raise s.fail("low", f"must not be above high ({high}), got {low}")
    when = s.choice("when_short", ("remaining", "all-live"))
    update = None
    if s.has("update"):
        update = _update(Section(s.table("update"), s.key("update"), _UPDATE, base), zone)
    zonefile = None
    if s.has("zonefile"):
        zs = Section(s.table("zonefile"), s.key("zonefile"), _ZONEFILE, base)
        zonefile = ZoneFileConfig(
            path=zs.path("path"),
            reload=zs.opt_string("reload"),
            publisher=_publisher(zs),
            ns=tuple(_names(zs, "ns")) or ("localhost.",),
        )
    return GroupDnsConfig(
        name=name,
        zone=zone,
        ttl=_seconds(s, "ttl", 5),
        negative_ttl=_seconds(s, "negative_ttl", 5),
        high=high,
        low=low,
        min_addresses=s.integer("min_addresses", 1, 0, 1000),
        when_short="all-live" if when == "all-live" else "remaining",
        host_names=s.boolean("host_names", True),
        update=update,
        zonefile=zonefile,
    )


def _seconds(s: Section, key: str, default: int) -> int:
    """A TTL: a duration in whole seconds (0 allowed), at most 2^31 - 1."""
    seconds = s.duration(key, float(default), zero=True).seconds
    if seconds != int(seconds) or seconds > 2**31 - 1:
        raise s.fail(key, f"must be whole seconds up to 2147483647, got {seconds:g}s")
    return int(seconds)


def _update(s: Section, zone: str) -> UpdateConfig:
    algorithm = s.opt_string("algorithm", "hmac-sha256")
    if algorithm not in TSIG_ALGORITHMS:
        raise s.fail("algorithm", f"must be one of {', '.join(TSIG_ALGORITHMS)}, got {algorithm!r}")
    secret = s.key_file("key_file")
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise s.fail("key_file", "the TSIG secret must be base64, as in BIND key files") from None
    timeout = s.duration("timeout", 2.0).seconds
    return UpdateConfig(
        server=s.endpoint("server"),
        zone=_dns_name(s, "zone", zone),
        key_name=_dns_name(s, "key_name"),
        secret_b64=secret.decode(),
        algorithm=algorithm,
        publisher=_publisher(s),
        timeout=timeout,
    )
