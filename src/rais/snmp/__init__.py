"""SNMP notifications for the scripts thread's events (RAIS-MIB, mibs/RAIS-MIB.txt).

The patent's scripts thread reports six events to a management station:
address acquired, acquire failed, address released, release failed, test
failed, address cannot be assigned. rais sends each as an SNMPv2 notification
(a TRAP, or an INFORM that the receiver acknowledges), and one more when a
group's leader changes. See docs/snmp.md.

``rais.snmp.config`` holds the numbers and the configuration (no pysnmp);
``rais.snmp.sender`` holds ``TrapSender``.

Every notification carries, in this order: sysUpTime.0 (the agent's uptime in
hundredths of a second when the event was submitted), snmpTrapOID.0 (the
notification, ``ENTERPRISE.0.N``), then raisGroup.0, raisHostId.0,
raisAddress.0 and raisReason.0 (``ENTERPRISE.1.N.0``), all four OCTET
STRINGs: the group name and reason in UTF-8 (at most 255 octets, cut at a
character boundary), the host id and address in text form (``192.0.2.1``,
``2001:db8::1``; the address is empty when the event has none).
"""

from rais.snmp.config import (
    DEFAULT_ENTERPRISE,
    NOTIFICATIONS,
    OBJECTS,
    SNMP_TRAP_OID,
    SYS_UPTIME,
    TEXT_MAX,
    TRAPPED_BY_DEFAULT,
    SnmpConfig,
    TrapReceiver,
    notification_oid,
    object_oid,
    text_engine_id,
    uptime_ticks,
    varbinds,
)
from rais.snmp.sender import ReceiverStats, TrapSender

__all__ = [
    "DEFAULT_ENTERPRISE",
    "NOTIFICATIONS",
    "OBJECTS",
    "SNMP_TRAP_OID",
    "SYS_UPTIME",
    "TEXT_MAX",
    "TRAPPED_BY_DEFAULT",
    "ReceiverStats",
    "SnmpConfig",
    "TrapReceiver",
    "TrapSender",
    "notification_oid",
    "object_oid",
    "text_engine_id",
    "uptime_ticks",
    "varbinds",
]
