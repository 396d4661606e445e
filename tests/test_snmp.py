"""SNMP notifications: RAIS-MIB checked by libsmi and net-snmp, and TrapSender
sending to a real snmptrapd (tests/snmptrapd.py) over SNMPv2c and SNMPv3."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from snmptrapd import (
    AUTH_KEY,
    COMMUNITY,
    ENGINE_ID,
    MIB_DIR,
    PRIV_KEY,
    USER,
    USER256,
    Trap,
    TrapDaemon,
    free_udp_port,
    ipv6_loopback,
    mib_path,
    require_tool,
    snmptrapd,
)

from rais.core.addr import fmt, pack
from rais.core.effects import Event, EventKind
from rais.snmp import (
    DEFAULT_ENTERPRISE,
    NOTIFICATIONS,
    OBJECTS,
    SNMP_TRAP_OID,
    SYS_UPTIME,
    TEXT_MAX,
    TRAPPED_BY_DEFAULT,
    ReceiverStats,
    SnmpConfig,
    TrapReceiver,
    TrapSender,
    notification_oid,
    object_oid,
    text_engine_id,
    uptime_ticks,
    varbinds,
)

UPTIME = 4321.5678
TICKS = 432156
MIB_FILE = MIB_DIR / "RAIS-MIB.txt"
NOT_TRAPPED = sorted(set(EventKind) - TRAPPED_BY_DEFAULT)


def sample_events() -> list[Event]:
    """One event of each trapped kind, IPv4 and IPv6, with and without address."""
    v4, v6 = pack("192.0.2.11"), pack("2001:db8::12")
    return [
        Event(1.0, EventKind.ACQUIRED, "www", v4, pack("192.0.2.101"), ""),
        Event(2.0, EventKind.ACQUIRE_FAILED, "www", v4, pack("192.0.2.102"), "exit status 3"),
        Event(3.0, EventKind.RELEASED, "mail", v6, pack("2001:db8::101"), "rebalance"),
        Event(4.0, EventKind.RELEASE_FAILED, "mail", v6, pack("2001:db8::102"), "ip: 99"),
        Event(5.0, EventKind.TEST_FAILED, "www", v4, None, "http probe: connection refused"),
        Event(6.0, EventKind.CANNOT_ASSIGN, "grüße", v4, pack("192.0.2.103"), "no host — é"),
        Event(7.0, EventKind.LEADER_CHANGED, "www", v6, None, "leader 2001:db8::13"),
        Event(8.0, EventKind.QUORUM_LOST, "nfs", v4, None, "1 of 3 voters, 2 needed"),
        Event(9.0, EventKind.QUORUM_REGAINED, "nfs", v4, None, "2 of 3 voters, 2 needed"),
        Event(10.0, EventKind.ARBITER_LOST, "db", v6, None, "etcd unreachable"),
        Event(11.0, EventKind.ARBITER_REGAINED, "db", v6, None, "token 42"),
    ]


def mib_name(kind: EventKind) -> str:
    """``acquire-failed`` -> ``raisAcquireFailed``."""
    return "rais" + "".join(part.capitalize() for part in kind.split("-"))


def check_trap(trap: Trap, event: Event) -> None:
    """The notification snmptrapd printed matches ``event`` exactly."""
    e = DEFAULT_ENTERPRISE
    assert [vb.oid for vb in trap.varbinds] == [
        SYS_UPTIME,
        SNMP_TRAP_OID,
        *(object_oid(name, e) for name in OBJECTS),
    ]
    assert trap.uptime == TICKS
    assert trap.trap_oid == notification_oid(event.kind)
    assert trap.value(object_oid("raisGroup")) == event.group
    assert trap.value(object_oid("raisHostId")) == fmt(event.host)
    address = "" if event.address is None else fmt(event.address)
    assert trap.value(object_oid("raisAddress")) == address
    assert trap.value(object_oid("raisReason")) == event.reason
    assert {vb.type for vb in trap.varbinds[2:]} == {"STRING"}


@contextlib.asynccontextmanager
async def running(sender: TrapSender) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sender.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def trapd() -> AsyncIterator[TrapDaemon]:
    async with snmptrapd() as daemon:
        yield daemon


# --- notification contents (no network) ---


def test_varbinds_layout() -> None:
    events = sample_events()
    vbs = varbinds(events[1], 77)
    assert vbs == (
        ("1.3.6.1.2.1.1.3.0", 77),
        ("1.3.6.1.6.3.1.1.4.1.0", "1.3.6.1.4.1.8072.9999.9999.26553.0.2"),
        ("1.3.6.1.4.1.8072.9999.9999.26553.1.1.0", b"www"),
        ("1.3.6.1.4.1.8072.9999.9999.26553.1.2.0", b"192.0.2.11"),
        ("1.3.6.1.4.1.8072.9999.9999.26553.1.3.0", b"192.0.2.102"),
        ("1.3.6.1.4.1.8072.9999.9999.26553.1.4.0", b"exit status 3"),
    )
    leader = varbinds(events[6], 0, "1.3.6.1.4.1.99999.7")
    assert leader[1] == (SNMP_TRAP_OID, "1.3.6.1.4.1.99999.7.0.7")
    assert leader[3] == ("1.3.6.1.4.1.99999.7.1.2.0", b"2001:db8::12")
    assert leader[4] == ("1.3.6.1.4.1.99999.7.1.3.0", b"")
    assert varbinds(events[5], 0)[2][1] == "grüße".encode()


def test_text_is_cut_at_a_character_boundary() -> None:
    event = Event(0.0, EventKind.TEST_FAILED, "g" * 300, pack("192.0.2.1"), None, "é" * 200)
    vbs = dict(varbinds(event, 0))
    group, reason = vbs[object_oid("raisGroup")], vbs[object_oid("raisReason")]
    assert group == b"g" * TEXT_MAX
    assert isinstance(reason, bytes)
    assert len(reason) == 254 and reason.decode() == "é" * 127


def test_uptime_ticks() -> None:
    assert uptime_ticks(UPTIME) == TICKS
    assert uptime_ticks(0.004) == 0
    assert uptime_ticks(-1.0) == 0
    assert uptime_ticks(2**32 / 100 + 1.0) == 100


def test_notification_numbers_cover_the_patent_events() -> None:
    assert set(NOTIFICATIONS) == TRAPPED_BY_DEFAULT
    assert len(TRAPPED_BY_DEFAULT) == 11
    assert sorted(NOTIFICATIONS.values()) == list(range(1, 12))
    assert list(EventKind)[:6] == [k for k, n in NOTIFICATIONS.items() if n <= 6]
    assert EventKind.LEADER_CHANGED in TRAPPED_BY_DEFAULT
    assert EventKind.TEST_RECOVERED not in TRAPPED_BY_DEFAULT
    guard = ("quorum-lost", "quorum-regained", "arbiter-lost", "arbiter-regained")
    assert [NOTIFICATIONS[EventKind(k)] for k in guard] == [8, 9, 10, 11]


def test_text_engine_id() -> None:
    assert text_engine_id("rais") == "80001f880472616973"
    with pytest.raises(ValueError):
        text_engine_id("")
    with pytest.raises(ValueError):
        text_engine_id("x" * 28)


# --- configuration ---

V2 = TrapReceiver("127.0.0.1", community="public")
V3 = TrapReceiver("127.0.0.1", 1162, "3", user="u", auth_key="a" * 8, priv_key="p" * 8)


def test_receiver_defaults() -> None:
    r = TrapReceiver("192.0.2.5", community="c")
    assert (r.port, r.version, r.inform, r.auth_protocol, r.priv_protocol) == (
        162,
        "2c",
        False,
        "SHA",
        "AES",
    )
    assert r.name == "192.0.2.5:162"
    assert TrapReceiver("2001:db8::5", 1162, community="c").name == "[2001:db8::5]:1162"
    config = SnmpConfig()
    assert config.enterprise == DEFAULT_ENTERPRISE
    assert config.events == TRAPPED_BY_DEFAULT
    assert config.queue_size == 1000
    assert config.receivers == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"community": None}, "needs a community"),
        ({"user": "u"}, "for version 3"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"host": ""}, "host"),
        ({"timeout": 0.0}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"version": "1"}, "version"),
        ({"auth_protocol": "MD5"}, "auth_protocol"),
        ({"priv_protocol": "DES"}, "priv_protocol"),
    ],
)
def test_bad_v2c_receiver(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(V2, **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user": None}, "needs a user"),
        ({"auth_key": None}, "auth_key"),
        ({"priv_key": "short"}, "priv_key of 8"),
        ({"community": "c"}, "for version 2c"),
    ],
)
def test_bad_v3_receiver(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(V3, **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"enterprise": "1.3.6.x"}, "dotted OID"),
        ({"enterprise": ""}, "dotted OID"),
        ({"events": frozenset({EventKind.HOST_JOINED})}, "host-joined"),
        ({"queue_size": 0}, "queue_size"),
        ({"receivers": (V2, V2)}, "twice"),
        ({"engine_id": "xyz"}, "hex"),
        ({"engine_id": "80001f88"}, "5..32"),
        ({"receivers": (V3,)}, "engine_id"),
        (
            {
                "receivers": (V3, dataclasses.replace(V3, port=1163, priv_key="q" * 8)),
                "engine_id": ENGINE_ID,
            },
            "different keys",
        ),
    ],
)
def test_bad_config(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SnmpConfig(**kwargs)  # type: ignore[arg-type]


def test_good_configs() -> None:
    SnmpConfig(receivers=(dataclasses.replace(V3, inform=True),))  # informs: no engine_id
    SnmpConfig(receivers=(V3,), engine_id="0x" + ENGINE_ID)
    SnmpConfig(events=frozenset({EventKind.ACQUIRED}), enterprise="1.3.6.1.4.1.99999.1")


# --- queueing (no network) ---


def test_submit_filters_and_drops_when_full() -> None:
    """Without run(), submit only queues: untrapped kinds are not queued, and
    past queue_size every receiver drops and counts."""
    r2 = dataclasses.replace(V2, port=1163)
    sender = TrapSender(SnmpConfig(receivers=(V2, r2), queue_size=5), uptime=lambda: UPTIME)
    for kind in NOT_TRAPPED:
        sender.submit(Event(0.0, kind, "g", pack("192.0.2.1")))
    assert sender.stats == {
        V2.name: ReceiverStats(0, 0, 0, 0),
        r2.name: ReceiverStats(0, 0, 0, 0),
    }
    for i in range(12):
        sender.submit(Event(0.0, EventKind.ACQUIRED, "g", pack("192.0.2.1"), reason=str(i)))
    assert sender.stats[V2.name] == ReceiverStats(sent=0, failed=0, dropped=7, queued=5)
    assert sender.stats[r2.name] == ReceiverStats(sent=0, failed=0, dropped=7, queued=5)


def test_only_configured_events() -> None:
    config = SnmpConfig(receivers=(V2,), events=frozenset({EventKind.CANNOT_ASSIGN}))
    sender = TrapSender(config, uptime=lambda: 0.0)
    for event in sample_events():
        sender.submit(event)
    assert sender.stats[V2.name].queued == 1


async def test_no_receivers_runs_until_cancelled() -> None:
    sender = TrapSender(SnmpConfig(), uptime=lambda: 0.0)
    sender.submit(sample_events()[0])
    async with running(sender) as task:
        await asyncio.sleep(0)
        assert not task.done()
    assert sender.stats == {}


def test_missing_tool_skips_but_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install"):
        require_tool("rais-no-such-tool", "nothing")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_tool("rais-no-such-tool", "nothing")


# --- the MIB ---


@pytest.fixture
def mibs(tmp_path: Path) -> str:
    return mib_path(tmp_path)


def test_mib_passes_smilint(mibs: str) -> None:
    """smilint at its strictest level reports nothing for RAIS-MIB (it exits 0
    even with errors: the output is what counts)."""
    smilint = require_tool("smilint", "smitools")
    result = subprocess.run(
        [smilint, "-l", "6", "-s", str(MIB_FILE)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "SMIPATH": mibs},
        check=False,
    )
    own = [line for line in (result.stdout + result.stderr).splitlines() if "RAIS-MIB" in line]
    assert own == [], "\n".join(own)
    assert "failed to locate" not in result.stderr


def test_smilint_finds_errors(mibs: str, tmp_path: Path) -> None:
    """The check above can fail: a broken copy of the MIB is reported."""
    smilint = require_tool("smilint", "smitools")
    broken = tmp_path / "RAIS-MIB.txt"
    text = MIB_FILE.read_text().replace("raisReason }", "raisReasonX }", 1)
    broken.write_text(text)
    result = subprocess.run(
        [smilint, "-l", "3", str(broken)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "SMIPATH": mibs},
        check=False,
    )
    assert "raisReasonX" in result.stdout + result.stderr


# What net-snmp's MIB parser says about a module it cannot take (parse.c): a
# position ("At line 12 in FILE", "near line 12 of FILE"), an unresolved parent
# ("Unlinked OID", "Cannot adopt OID"), a missing import or symbol, an unknown
# name. Anything else on stderr is the tool's own housekeeping (the first run on
# a machine prints "Created directory: .../cert_indexes"), not a judgement of
# the MIB.
MIB_DIAGNOSTIC = re.compile(
    r"\b(?:at|near) line \d+|Unlinked OID|Cannot adopt OID|Cannot find module|"
    r"Did not find|Undefined|Unknown Object Identifier|Bad |Expected|Warning",
    re.IGNORECASE,
)


def mib_diagnostics(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if MIB_DIAGNOSTIC.search(line)]


def run_snmptranslate(mibs: str, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """snmptranslate with a configuration and persistent directory of its own
    (under ``workdir``), so that nothing a previous run or the package left
    in /var/lib/snmp or ~/.snmp changes what it prints."""
    tool = require_tool("snmptranslate", "snmp")
    state = workdir / "snmp-state"
    state.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MIBS", "MIBDIRS", "SNMPCONFPATH")}
    env |= {"SNMP_PERSISTENT_DIR": str(state), "SNMPCONFPATH": str(state), "HOME": str(state)}
    return subprocess.run(
        [tool, "-M", mibs, "-m", "RAIS-MIB", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def snmptranslate(mibs: str, workdir: Path, *args: str) -> str:
    result = run_snmptranslate(mibs, workdir, *args)
    problems = mib_diagnostics(result.stderr)
    assert result.returncode == 0 and problems == [], result.stderr
    return result.stdout


def test_mib_matches_the_code(mibs: str, tmp_path: Path) -> None:
    """net-snmp parses RAIS-MIB cleanly, and every OID in rais.snmp is the one
    the MIB defines, with each notification's objects in the order sent."""
    names = ["raisMIB", *(mib_name(k) for k in NOTIFICATIONS), *OBJECTS]
    out = snmptranslate(mibs, tmp_path, "-On", *(f"RAIS-MIB::{n}" for n in names)).split()
    expected = [
        DEFAULT_ENTERPRISE,
        *(notification_oid(k) for k in NOTIFICATIONS),
        *(object_oid(n).removesuffix(".0") for n in OBJECTS),
    ]
    assert out == ["." + oid for oid in expected]
    for kind in NOTIFICATIONS:
        detail = snmptranslate(mibs, tmp_path, "-Td", f"RAIS-MIB::{mib_name(kind)}")
        objects = re.search(r"OBJECTS\s*\{([^}]*)\}", detail)
        assert objects is not None, detail
        assert [o.strip() for o in objects[1].split(",")] == list(OBJECTS)


def test_mib_check_ignores_first_run_housekeeping(mibs: str, tmp_path: Path) -> None:
    """A fresh persistent directory makes net-snmp announce the directories it
    creates (what a brand-new machine prints once); the MIB is still judged
    clean, because only parser diagnostics count."""
    result = run_snmptranslate(mibs, tmp_path, "-On", "RAIS-MIB::raisMIB")
    assert result.returncode == 0
    assert "Created directory" in result.stderr  # the first run in this state dir
    assert mib_diagnostics(result.stderr) == []
    assert result.stdout.strip() == "." + DEFAULT_ENTERPRISE


BREAKAGES = {
    "unknown parent": ("::= { raisObjects 1 }", "::= { raisObjectz 1 }"),
    "undefined object": ("raisHostId OBJECT-TYPE", "raisHostIdd OBJECT-TYPE"),
    "missing import": ("FROM NET-SNMP-MIB", "FROM NET-SNMP-MIBX"),
    "unknown import": ("OBJECT-TYPE,", "OBJECT-TYP,"),
    "truncated": ("", ""),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_mib_check_finds_errors(breakage: str, mibs: str, tmp_path: Path) -> None:
    """The net-snmp check can fail: each broken copy of the MIB is reported."""
    old, new = BREAKAGES[breakage]
    text = MIB_FILE.read_text()
    assert old in text
    broken = tmp_path / "broken"
    broken.mkdir()
    text = text.replace(old, new, 1) if old else text[: len(text) // 2]
    (broken / "RAIS-MIB.txt").write_text(text)
    path = mibs.replace(str(MIB_DIR), str(broken))
    result = run_snmptranslate(path, tmp_path, "-On", "RAIS-MIB::raisMIB", "RAIS-MIB::raisHostId")
    assert result.returncode != 0 or mib_diagnostics(result.stderr), result.stderr


def test_mib_display_hints(mibs: str, tmp_path: Path) -> None:
    detail = snmptranslate(mibs, tmp_path, "-Td", "RAIS-MIB::raisHostId")
    assert 'DISPLAY-HINT\t"45a"' in detail or '"45a"' in detail
    assert "accessible-for-notify" in detail


# --- sending to a real snmptrapd ---

MODES = {
    "v2c-trap": TrapReceiver("127.0.0.1", version="2c", community=COMMUNITY),
    "v2c-inform": TrapReceiver("127.0.0.1", version="2c", community=COMMUNITY, inform=True),
    "v3-trap-sha": TrapReceiver(
        "127.0.0.1", version="3", user=USER, auth_key=AUTH_KEY, priv_key=PRIV_KEY
    ),
    "v3-trap-sha256": TrapReceiver(
        "127.0.0.1",
        version="3",
        user=USER256,
        auth_key=AUTH_KEY,
        priv_key=PRIV_KEY,
        auth_protocol="SHA256",
    ),
    "v3-inform-sha": TrapReceiver(
        "127.0.0.1", version="3", user=USER, auth_key=AUTH_KEY, priv_key=PRIV_KEY, inform=True
    ),
    "v3-inform-sha256": TrapReceiver(
        "127.0.0.1",
        version="3",
        user=USER256,
        auth_key=AUTH_KEY,
        priv_key=PRIV_KEY,
        auth_protocol="SHA256",
        inform=True,
    ),
}


def interleaved() -> Iterator[Event]:
    """The eleven trapped events with every untrapped kind around them."""
    others = iter(NOT_TRAPPED)
    for event in sample_events():
        yield event
        for kind in (next(others, None), next(others, None)):
            if kind is not None:
                yield Event(event.time, kind, event.group, event.host, event.address, "x")


@pytest.mark.parametrize("mode", list(MODES))
async def test_every_trapped_kind_arrives(trapd: TrapDaemon, mode: str) -> None:
    receiver = dataclasses.replace(MODES[mode], port=trapd.port)
    sender = TrapSender(
        SnmpConfig(receivers=(receiver,), engine_id=ENGINE_ID),
        uptime=lambda: UPTIME,
        engine_boots=1,
    )
    async with running(sender):
        for event in interleaved():
            sender.submit(event)
        async with asyncio.timeout(10):
            await sender.flush()
        traps = await trapd.wait_for(11)
    events = sample_events()
    assert len(traps) == len(events)
    for trap, event in zip(traps, events, strict=True):
        check_trap(trap, event)
        assert trap.pdu == ("INFORM" if receiver.inform else "TRAP2")
        assert trap.version == receiver.version
        assert trap.security == (receiver.user if receiver.version == "3" else COMMUNITY)
    assert sender.stats[receiver.name] == ReceiverStats(sent=11, failed=0, dropped=0, queued=0)
    assert trapd.mib_errors() == []
    assert len(trapd.traps) == 11  # nothing else arrived: untrapped kinds were not sent


async def test_custom_enterprise(trapd: TrapDaemon) -> None:
    enterprise = "1.3.6.1.4.1.99999.42"
    receiver = TrapReceiver("127.0.0.1", trapd.port, community=COMMUNITY)
    sender = TrapSender(
        SnmpConfig(receivers=(receiver,), enterprise=enterprise), uptime=lambda: 0.0
    )
    async with running(sender):
        sender.submit(sample_events()[3])
        (trap,) = await trapd.wait_for(1)
    assert trap.trap_oid == enterprise + ".0.4"
    assert trap.value(enterprise + ".1.1.0").strip('"') == "mail"
    assert trap.uptime == 0


async def test_ipv6_receiver() -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    async with snmptrapd(ipv6=True) as trapd:
        receiver = TrapReceiver("::1", trapd.port, community=COMMUNITY, inform=True)
        sender = TrapSender(SnmpConfig(receivers=(receiver,)), uptime=lambda: UPTIME)
        async with running(sender):
            sender.submit(sample_events()[0])
            (trap,) = await trapd.wait_for(1)
            await sender.flush()
        check_trap(trap, sample_events()[0])
        assert sender.stats[f"[::1]:{trapd.port}"].sent == 1


async def test_wrong_v3_key_fails_informs(trapd: TrapDaemon) -> None:
    """An INFORM the receiver rejects counts as failed (a TRAP would be lost
    silently: that is why informs exist)."""
    receiver = dataclasses.replace(
        MODES["v3-inform-sha"], port=trapd.port, auth_key="wrong-passphrase", timeout=0.2
    )
    receiver = dataclasses.replace(receiver, retries=0)
    sender = TrapSender(SnmpConfig(receivers=(receiver,)), uptime=lambda: 0.0)
    async with running(sender):
        sender.submit(sample_events()[0])
        async with asyncio.timeout(5):
            await sender.flush()
    assert sender.stats[receiver.name] == ReceiverStats(sent=0, failed=1, dropped=0, queued=0)
    assert trapd.traps == []


async def test_dead_receiver_does_not_hold_up_the_live_one(trapd: TrapDaemon) -> None:
    """A receiver that never answers (INFORMs to a port with nothing on it)
    holds up only its own queue, which stays bounded: the live receiver gets
    every notification, and the dead one's overflow is counted as dropped."""
    queue_size = 10
    dead = TrapReceiver(
        "127.0.0.1", free_udp_port(), community=COMMUNITY, inform=True, timeout=30.0, retries=0
    )
    live = TrapReceiver("127.0.0.1", trapd.port, community=COMMUNITY)
    sender = TrapSender(
        SnmpConfig(receivers=(dead, live), queue_size=queue_size), uptime=lambda: UPTIME
    )
    total = 300
    async with running(sender):
        for i in range(total):
            sender.submit(
                Event(float(i), EventKind.TEST_FAILED, "www", pack("192.0.2.11"), None, f"n{i}")
            )
            while sender.stats[live.name].queued:  # let the live lane keep up
                await asyncio.sleep(0)
            assert sender.stats[dead.name].queued <= queue_size
        traps = await trapd.wait_for(total)
        stuck = sender.stats[dead.name]
    assert [t.value(object_oid("raisReason")) for t in traps] == [f"n{i}" for i in range(total)]
    assert sender.stats[live.name] == ReceiverStats(sent=total, failed=0, dropped=0, queued=0)
    # The dead lane took the first event and is still waiting for its answer
    # (30 s): queue_size more wait, everything else was dropped and counted.
    assert stuck == ReceiverStats(
        sent=0, failed=0, dropped=total - queue_size - 1, queued=queue_size
    )


async def test_unanswered_informs_count_as_failed(trapd: TrapDaemon) -> None:
    """Unanswered INFORMs are counted as failed once their timeout passes."""
    dead = TrapReceiver(
        "127.0.0.1", free_udp_port(), community=COMMUNITY, inform=True, timeout=0.05, retries=1
    )
    sender = TrapSender(SnmpConfig(receivers=(dead,)), uptime=lambda: 0.0)
    async with running(sender):
        for event in sample_events()[:3]:
            sender.submit(event)
        async with asyncio.timeout(5):
            await sender.flush()
    assert sender.stats[dead.name] == ReceiverStats(sent=0, failed=3, dropped=0, queued=0)


def test_v3_traps_need_engine_boots() -> None:
    config = SnmpConfig(receivers=(V3,), engine_id=ENGINE_ID)
    with pytest.raises(ValueError, match="engine_boots"):
        TrapSender(config, uptime=lambda: 0.0)
    for bad in (0, 2**31 - 1):
        with pytest.raises(ValueError, match="engine_boots"):
            TrapSender(config, uptime=lambda: 0.0, engine_boots=bad)
    TrapSender(config, uptime=lambda: 0.0, engine_boots=2**31 - 2)
    informs = SnmpConfig(receivers=(dataclasses.replace(V3, inform=True),))
    TrapSender(informs, uptime=lambda: 0.0)


async def test_engine_boots_reach_the_receiver(trapd: TrapDaemon) -> None:
    """snmptrapd drops a v3 TRAP whose engine boots went backwards: so the
    boots rais passes must be one that only grows (the agent's boot epoch)."""
    receiver = dataclasses.replace(MODES["v3-trap-sha"], port=trapd.port)
    config = SnmpConfig(receivers=(receiver,), engine_id=ENGINE_ID)
    for boots in (5, 4, 6):
        sender = TrapSender(config, uptime=lambda: 0.0, engine_boots=boots)
        event = Event(0.0, EventKind.ACQUIRED, "g", pack("192.0.2.1"), None, f"boots {boots}")
        async with running(sender):
            sender.submit(event)
            await sender.flush()
        assert sender.stats[receiver.name].sent == 1  # a TRAP: sent, not acknowledged
    traps = await trapd.wait_for(2)
    # in order over loopback: had "boots 4" been accepted it would come second
    assert [t.value(object_oid("raisReason")) for t in traps] == ["boots 5", "boots 6"]


async def test_unresolvable_receiver_counts_failures(trapd: TrapDaemon) -> None:
    """A receiver name that does not resolve fails each send (within the
    deadline) and does not stop the sender."""
    bad = TrapReceiver("rais-no-such-host.invalid", community=COMMUNITY)
    live = TrapReceiver("127.0.0.1", trapd.port, community=COMMUNITY)
    sender = TrapSender(SnmpConfig(receivers=(bad, live)), uptime=lambda: UPTIME)
    async with running(sender) as task:
        sender.submit(sample_events()[0])
        async with asyncio.timeout(5):
            await sender.flush()
        assert not task.done()
    assert sender.stats[bad.name] == ReceiverStats(sent=0, failed=1, dropped=0, queued=0)
    assert sender.stats[live.name].sent == 1


async def test_run_twice_is_refused() -> None:
    sender = TrapSender(SnmpConfig(receivers=(V2,)), uptime=lambda: 0.0)
    async with running(sender):
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            await sender.run()


async def test_restart_after_cancel(trapd: TrapDaemon) -> None:
    """run() can be started again after it was cancelled (a new engine)."""
    receiver = TrapReceiver("127.0.0.1", trapd.port, community=COMMUNITY)
    sender = TrapSender(SnmpConfig(receivers=(receiver,)), uptime=lambda: UPTIME)
    events = sample_events()
    async with running(sender):
        sender.submit(events[0])
        await trapd.wait_for(1)
    sender.submit(events[1])  # queued while stopped
    async with running(sender):
        traps = await trapd.wait_for(2)
    check_trap(traps[1], events[1])
    assert sender.stats[receiver.name].sent == 2
