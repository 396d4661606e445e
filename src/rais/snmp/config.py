"""RAIS-MIB numbers, notification contents and the SNMP configuration.

Pure: no pysnmp here, so the config can be parsed and checked without it.
See mibs/RAIS-MIB.txt and docs/snmp.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from rais.core.addr import fmt
from rais.core.effects import Event, EventKind

DEFAULT_ENTERPRISE = "1.3.6.1.4.1.8072.9999.9999.26553"
"""RAIS-MIB::raisMIB: NET-SNMP-MIB::netSnmpPlaypen (net-snmp's arc for private
experiments, 1.3.6.1.4.1.8072.9999.9999) . 26553 (after WO 98/26553). A site
should move it under its own enterprise number: see docs/snmp.md."""

NOTIFICATIONS: Mapping[EventKind, int] = {
    EventKind.ACQUIRED: 1,  # raisAcquired
    EventKind.ACQUIRE_FAILED: 2,  # raisAcquireFailed
    EventKind.RELEASED: 3,  # raisReleased
    EventKind.RELEASE_FAILED: 4,  # raisReleaseFailed
    EventKind.TEST_FAILED: 5,  # raisTestFailed
    EventKind.CANNOT_ASSIGN: 6,  # raisCannotAssign
    EventKind.LEADER_CHANGED: 7,  # raisLeaderChanged
    EventKind.QUORUM_LOST: 8,  # raisQuorumLost
    EventKind.QUORUM_REGAINED: 9,  # raisQuorumRegained
    EventKind.ARBITER_LOST: 10,  # raisArbiterLost
    EventKind.ARBITER_REGAINED: 11,  # raisArbiterRegained
}
"""The event kinds that have a notification in RAIS-MIB, and its number under
``ENTERPRISE.0`` (raisNotifications). Other kinds cannot be sent. The guard's
four (8 to 11, issue 13) come only from groups with a guard."""

TRAPPED_BY_DEFAULT: frozenset[EventKind] = frozenset(NOTIFICATIONS)

OBJECTS: Mapping[str, int] = {"raisGroup": 1, "raisHostId": 2, "raisAddress": 3, "raisReason": 4}
"""The objects every notification carries, in order, under ``ENTERPRISE.1``."""

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"

TEXT_MAX = 255
"""Octets in raisGroup and raisReason (RaisText, SIZE (0..255))."""

_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_HEX = re.compile(r"(0x)?([0-9a-fA-F]{2})+")


def notification_oid(kind: EventKind, enterprise: str = DEFAULT_ENTERPRISE) -> str:
    """The notification (snmpTrapOID.0 value) sent for ``kind``."""
    return f"{enterprise}.0.{NOTIFICATIONS[kind]}"


def object_oid(name: str, enterprise: str = DEFAULT_ENTERPRISE) -> str:
    """The varbind name (with instance .0) of a RAIS-MIB object, e.g. ``raisGroup``."""
    return f"{enterprise}.1.{OBJECTS[name]}.0"


def uptime_ticks(seconds: float) -> int:
    """TimeTicks (hundredths of a second, modulo 2**32) for an uptime in seconds."""
    return int(max(seconds, 0.0) * 100) % (1 << 32)


def _text(value: str) -> bytes:
    """UTF-8, cut at a character boundary to at most TEXT_MAX octets."""
    data = value.encode("utf-8", "replace")
    if len(data) <= TEXT_MAX:
        return data
    return data[:TEXT_MAX].decode("utf-8", "ignore").encode("utf-8")


def varbinds(
    event: Event, ticks: int, enterprise: str = DEFAULT_ENTERPRISE
) -> tuple[tuple[str, int | str | bytes], ...]:
    """The variable bindings of the notification for ``event``, as plain values:
    (OID, TimeTicks int | OID str | OCTET STRING bytes)."""
    return (
        (SYS_UPTIME, ticks),
        (SNMP_TRAP_OID, notification_oid(event.kind, enterprise)),
        (object_oid("raisGroup", enterprise), _text(event.group)),
        (object_oid("raisHostId", enterprise), fmt(event.host).encode("ascii")),
        (
            object_oid("raisAddress", enterprise),
            b"" if event.address is None else fmt(event.address).encode("ascii"),
        ),
        (object_oid("raisReason", enterprise), _text(event.reason)),
    )


def text_engine_id(text: str) -> str:
    """An SNMP engine id (hex) in the RFC 3411 text format under net-snmp's
    enterprise number 8072: ``80001f8804`` then ``text`` in ASCII (1..27 chars)."""
    data = text.encode("ascii")
    if not 1 <= len(data) <= 27:
        raise ValueError("engine id text must be 1..27 ASCII characters")
    return "80001f8804" + data.hex()


@dataclass(frozen=True, slots=True)
class TrapReceiver:
    """One management station that gets the notifications.

    SNMPv2c needs ``community``. SNMPv3 is always authPriv: ``user``,
    ``auth_key`` and ``priv_key`` (pass phrases, at least 8 characters) with
    HMAC-SHA-96 (``"SHA"``) or HMAC-SHA-256 (``"SHA256"``) and AES-128-CFB.
    SNMPv3 TRAPs are sent from this agent's engine id, which the receiver must
    know (``SnmpConfig.engine_id``); INFORMs discover the receiver's engine id.
    ``timeout`` (seconds) and ``retries`` apply to INFORMs only.
    """

    host: str
    port: int = 162
    version: Literal["2c", "3"] = "2c"
    community: str | None = None
    user: str | None = None
    auth_key: str | None = None
    priv_key: str | None = None
    auth_protocol: Literal["SHA", "SHA256"] = "SHA"
    priv_protocol: Literal["AES"] = "AES"
    inform: bool = False
    timeout: float = 1.0
    retries: int = 2

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("receiver host is empty")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"receiver {self.name}: port must be 1..65535")
        if self.version == "2c":
            if not self.community:
                raise ValueError(f"receiver {self.name}: version 2c needs a community")
            if self.user or self.auth_key or self.priv_key:
                raise ValueError(f"receiver {self.name}: user and keys are for version 3")
        elif self.version == "3":
            if not self.user:
                raise ValueError(f"receiver {self.name}: version 3 needs a user")
            for what, key in (("auth_key", self.auth_key), ("priv_key", self.priv_key)):
                if key is None or len(key) < 8:
                    raise ValueError(
                        f"receiver {self.name}: version 3 needs {what} of 8 characters or more"
                    )
            if self.community:
                raise ValueError(f"receiver {self.name}: community is for version 2c")
        else:
            raise ValueError(f"receiver {self.name}: version must be '2c' or '3'")
        if self.auth_protocol not in ("SHA", "SHA256"):
            raise ValueError(f"receiver {self.name}: auth_protocol must be SHA or SHA256")
        if self.priv_protocol != "AES":
            raise ValueError(f"receiver {self.name}: priv_protocol must be AES")
        if not self.timeout > 0:
            raise ValueError(f"receiver {self.name}: timeout must be above zero")
        if self.retries < 0:
            raise ValueError(f"receiver {self.name}: retries must be 0 or more")

    @property
    def name(self) -> str:
        """``host:port`` (``[v6]:port``): the receiver's key in ``TrapSender.stats``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def deadline(self) -> float:
        """Longest one send may take before it counts as failed."""
        return (self.timeout * (self.retries + 1) if self.inform else 0.0) + 1.0


@dataclass(frozen=True, slots=True)
class SnmpConfig:
    """Where and what to send. ``engine_id`` (hex, 5..32 octets, optional
    ``0x``) is this agent's SNMP engine id; SNMPv3 TRAP receivers need it."""

    receivers: tuple[TrapReceiver, ...] = ()
    enterprise: str = DEFAULT_ENTERPRISE
    events: frozenset[EventKind] = TRAPPED_BY_DEFAULT
    queue_size: int = 1000
    engine_id: str | None = None

    def __post_init__(self) -> None:
        if not _OID.fullmatch(self.enterprise):
            raise ValueError(f"enterprise {self.enterprise!r} is not a dotted OID")
        bad = sorted(str(kind) for kind in self.events - TRAPPED_BY_DEFAULT)
        if bad:
            raise ValueError(f"events without a notification: {', '.join(bad)}")
        if self.queue_size < 1:
            raise ValueError("queue_size must be 1 or more")
        names = [r.name for r in self.receivers]
        if len(set(names)) != len(names):
            raise ValueError("the same receiver host:port is listed twice")
        if self.engine_id is not None:
            if not _HEX.fullmatch(self.engine_id):
                raise ValueError("engine_id must be hex digits, two per octet")
            if not 5 <= len(self.engine_id.removeprefix("0x")) // 2 <= 32:
                raise ValueError("engine_id must be 5..32 octets")
        users: dict[str, tuple[str | None, ...]] = {}
        for r in self.receivers:
            if r.version != "3":
                continue
            if not r.inform and self.engine_id is None:
                raise ValueError(f"receiver {r.name}: SNMPv3 traps need engine_id (or use inform)")
            assert r.user is not None
            keys = (r.auth_key, r.priv_key, r.auth_protocol, r.priv_protocol)
            if users.setdefault(r.user, keys) != keys:
                raise ValueError(f"SNMPv3 user {r.user!r} is given different keys")
