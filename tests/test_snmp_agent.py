"""[snmp] in the config file, and a running agent's events reaching a real
snmptrapd."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from snmptrapd import COMMUNITY, snmptrapd
from test_agent import Cluster

from rais.config import ConfigError, load
from rais.core.effects import EventKind
from rais.snmp import DEFAULT_ENTERPRISE, SnmpConfig, TrapReceiver, notification_oid

BASE = '[host]\ncontrol = ["192.0.2.11"]\n[auth]\nkey_file = "group.key"\n'


def write(tmp_path: Path, text: str) -> str:
    (tmp_path / "group.key").write_text("secret\n")
    (tmp_path / "community").write_text("public-ish\n")
    path = tmp_path / "rais.toml"
    path.write_text(BASE + text)
    return str(path)


def test_snmp_config(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            '[snmp]\nevents = ["acquired", "leader-changed"]\nengine_id = "80001f8804726169"\n'
            '[[snmp.receiver]]\nhost = "192.0.2.50"\ncommunity_file = "community"\n'
            '[[snmp.receiver]]\nhost = "2001:db8::50"\nport = 1162\nversion = "3"\n'
            'user = "rais"\nauth_key = "authpass1"\npriv_key = "privpass1"\n'
            'auth_protocol = "SHA256"\n',
        )
    )
    s = cfg.snmp
    assert s.events == {EventKind.ACQUIRED, EventKind.LEADER_CHANGED}
    assert s.receivers[0] == TrapReceiver("192.0.2.50", community="public-ish")
    assert s.receivers[1].version == "3" and s.receivers[1].auth_protocol == "SHA256"
    assert load(write(tmp_path, "")).snmp == SnmpConfig()


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('[snmp]\nevents = ["host-joined"]\n', "snmp.events[0]", "not one of"),
        ("[snmp]\nqueue_size = 0\n", "snmp.queue_size", "got 0"),
        ('[snmp]\nenterprise = "1.3.x"\n', "snmp", "dotted OID"),
        ('[[snmp.receiver]]\nhost = "192.0.2.50"\n', "snmp.receiver[0]", "community"),
        (
            '[[snmp.receiver]]\nhost = "h"\ncommunity = "a"\ncommunity_file = "community"\n',
            "snmp.receiver[0].community_file",
            "not both",
        ),
        (
            '[[snmp.receiver]]\nhost = "h"\nversion = "1"\ncommunity = "a"\n',
            "snmp.receiver[0].version",
            '"2c" or "3"',
        ),
        (
            '[[snmp.receiver]]\nhost = "h"\nversion = "3"\nuser = "u"\nauth_key = "short"\n'
            'priv_key = "privpass1"\ninform = true\n',
            "snmp.receiver[0]",
            "8 characters",
        ),
        (
            '[[snmp.receiver]]\nhost = "h"\ncommunity = "c"\nportt = 1\n',
            "snmp.receiver[0].portt",
            "unknown",
        ),
    ],
)
def test_bad_snmp_config(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)


async def test_agent_events_arrive_as_traps(tmp_path: Path) -> None:
    async with snmptrapd() as trapd:
        c = Cluster(tmp_path, 2, spares=1)
        h1 = c.hosts[0]
        receiver = TrapReceiver(trapd.host, trapd.port, community=COMMUNITY)
        h1.config = replace(h1.config, snmp=SnmpConfig(receivers=(receiver,)))
        for h in c.hosts:
            await c.start(h)
        try:
            await c.until(lambda: h1.held == {"198.51.100.1"})
            traps = await trapd.wait_for(2)
        finally:
            for h in c.hosts:
                await c.stop(h)
        oids = {t.trap_oid for t in trapd.traps}
        assert notification_oid(EventKind.ACQUIRED, DEFAULT_ENTERPRISE) in oids
        assert notification_oid(EventKind.LEADER_CHANGED, DEFAULT_ENTERPRISE) in oids
        assert traps
        assert h1.agent is not None and h1.agent.traps is not None
        assert sum(st.sent for st in h1.agent.traps.stats.values()) >= 2
