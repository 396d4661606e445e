"""``[snmp]`` and ``[[snmp.receiver]]`` of the config file (docs/snmp.md)."""

from __future__ import annotations

from typing import Any

from rais.base.section import Invalid, Section
from rais.snmp.config import DEFAULT_ENTERPRISE, TRAPPED_BY_DEFAULT, SnmpConfig, TrapReceiver

_TOP = ("enterprise", "events", "queue_size", "engine_id", "receiver")
_RECEIVER = (
    "host",
    "port",
    "version",
    "community",
    "community_file",
    "user",
    "auth_key",
    "auth_key_file",
    "priv_key",
    "priv_key_file",
    "auth_protocol",
    "priv_protocol",
    "inform",
    "timeout",
    "retries",
)


def _secret(s: Section, name: str) -> str | None:
    if s.has(name) and s.has(f"{name}_file"):
        raise s.fail(f"{name}_file", f"give {name} or {name}_file, not both")
    if s.has(f"{name}_file"):
        return s.key_file(f"{name}_file").decode(errors="replace")
    return s.opt_string(name)


def _receiver(s: Section) -> TrapReceiver:
    version = s.choice("version", ("2c", "3"))
    auth = s.choice("auth_protocol", ("SHA", "SHA256"))
    s.choice("priv_protocol", ("AES",))
    try:
        return TrapReceiver(
            host=s.string("host"),
            port=s.integer("port", 162, 1, 65535),
            version="3" if version == "3" else "2c",
            community=_secret(s, "community"),
            user=s.opt_string("user"),
            auth_key=_secret(s, "auth_key"),
            priv_key=_secret(s, "priv_key"),
            auth_protocol="SHA256" if auth == "SHA256" else "SHA",
            priv_protocol="AES",
            inform=s.boolean("inform", False),
            timeout=s.duration("timeout", 1.0).seconds,
            retries=s.integer("retries", 2, 0, 100),
        )
    except ValueError as exc:
        raise Invalid(s.prefix, str(exc)) from None


def parse_snmp(data: dict[str, Any], base: str) -> SnmpConfig:
    """The ``[snmp]`` table (absent or empty: no receivers, nothing sent)."""
    s = Section(data, "snmp", _TOP, base)
    receivers = tuple(
        _receiver(Section(raw, f"snmp.receiver[{i}]", _RECEIVER, base))
        for i, raw in enumerate(s.tables("receiver"))
    )
    known = {str(k): k for k in TRAPPED_BY_DEFAULT}
    events = set()
    for i, name in enumerate(s.strings("events") if s.has("events") else list(known)):
        if name not in known:
            raise Invalid(f"snmp.events[{i}]", f"{name!r} is not one of {', '.join(sorted(known))}")
        events.add(known[name])
    try:
        return SnmpConfig(
            receivers=receivers,
            enterprise=s.opt_string("enterprise", DEFAULT_ENTERPRISE) or DEFAULT_ENTERPRISE,
            events=frozenset(events),
            queue_size=s.integer("queue_size", 1000, 1, 1_000_000),
            engine_id=s.opt_string("engine_id"),
        )
    except ValueError as exc:
        raise Invalid("snmp", str(exc)) from None
