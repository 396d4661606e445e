"""A real net-snmp ``snmptrapd`` for tests of the SNMP notifications.

``async with snmptrapd() as trapd`` runs, in its own temporary directory::

    snmptrapd -f -C -c snmptrapd.conf -Lo -M MIBDIRS -m RAIS-MIB -On -Ot \\
        -F 'RAISTRAP %P|~|%V|~|%v\\n' udp:127.0.0.1:PORT

on a free port (``udp6:[::1]:PORT`` with ``ipv6=True``) and returns once it
has said it is ready. The config accepts:

- SNMPv2c TRAPs and INFORMs with community ``COMMUNITY``;
- SNMPv3 authPriv as ``USER`` (HMAC-SHA-96, AES-128) and ``USER256``
  (HMAC-SHA-256, AES-128), keys ``AUTH_KEY``/``PRIV_KEY``. Each user exists
  twice: with ``-e ENGINE_ID`` for TRAPs (a v3 TRAP is authenticated with the
  *sender's* engine id, so the sender must use ``SnmpConfig.engine_id =
  ENGINE_ID``) and without, for INFORMs (the receiver's own engine id, which
  the sender discovers).

``-m RAIS-MIB`` (not ``+RAIS-MIB``: ``-C`` skips snmp.conf, so the default
list would be loaded, and Debian ships none of those MIBs) loads
mibs/RAIS-MIB.txt with its imports from ``mib_path()``: so snmptrapd prints
raisGroup and the other objects through their DISPLAY-HINTs, unquoted
(``STRING: www``). Without the MIB it would print ``STRING: "www"``: the
tests compare exact values, so they also check that net-snmp loads the MIB.

Each received notification is one line; ``trapd.traps`` holds them parsed
(``Trap``), in arrival order, and ``await trapd.wait_for(n)`` waits for the
n-th. On exit snmptrapd gets SIGTERM (then SIGKILL) and the directory is
removed, also when the start failed.

Without ``snmptrapd`` (or ``smilint``/``snmptranslate`` for the MIB checks)
tests skip, except with ``CI=true``, where they fail.

Debian's snmp packages ship no IETF MIBs (they are non-free there), and
RAIS-MIB imports SNMPv2-SMI, SNMPv2-TC and SNMPv2-CONF. ``mib_path()`` uses
real copies when it finds them (``$RAIS_MIBDIRS``, or where
snmp-mibs-downloader or libsmi put them); otherwise it writes minimal
stand-ins that declare just the macros and nodes RAIS-MIB and NET-SNMP-MIB
import (``write_base_mibs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rais.snmp import text_engine_id

REPO = Path(__file__).resolve().parent.parent
MIB_DIR = REPO / "mibs"
COMMUNITY = "rais-test-community"
USER = "raistest"
USER256 = "raistest256"
AUTH_KEY = "rais-auth-passphrase"
PRIV_KEY = "rais-priv-passphrase"
ENGINE_ID = text_engine_id("rais-test")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
SEPARATOR = "|~|"
PREFIX = "RAISTRAP "
FORMAT = f"{PREFIX}%P{SEPARATOR}%V{SEPARATOR}%v\\n"
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin")
_BASE = ("SNMPv2-SMI", "SNMPv2-TC", "SNMPv2-CONF")
_SYSTEM_MIB_DIRS = (
    "/usr/share/snmp/mibs/ietf",
    "/var/lib/mibs/ietf",
    "/usr/share/mibs/ietf",
    "/usr/local/share/snmp/mibs",
    "/usr/share/snmp/mibs",
)
_NET_SNMP_MIB_DIRS = ("/usr/share/snmp/mibs", "/usr/local/share/snmp/mibs")


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require_tool(name: str, package: str) -> str:
    """Path of a net-snmp/libsmi tool; skip without it, fail instead with CI=true."""
    found = shutil.which(name)
    if found is None:
        for directory in _SBIN:
            candidate = os.path.join(directory, name)
            if os.access(candidate, os.X_OK):
                found = candidate
                break
    if found:
        return found
    if _ci():
        pytest.fail(f"{name} not found; CI=true, so this is a failure, not a skip")
    pytest.skip(f"{name} not found (Debian: apt-get install {package})")


def _has_module(directory: Path, module: str) -> bool:
    return any((directory / f"{module}{ext}").is_file() for ext in ("", ".txt", ".mib", ".my"))


_STUBS = {
    "SNMPv2-SMI": """
org            OBJECT IDENTIFIER ::= { iso 3 }
dod            OBJECT IDENTIFIER ::= { org 6 }
internet       OBJECT IDENTIFIER ::= { dod 1 }
private        OBJECT IDENTIFIER ::= { internet 4 }
enterprises    OBJECT IDENTIFIER ::= { private 1 }

MODULE-IDENTITY MACRO ::=
BEGIN
    TYPE NOTATION ::= "LAST-UPDATED" value(Update ExtUTCTime)
    VALUE NOTATION ::= value(VALUE OBJECT IDENTIFIER)
END

OBJECT-TYPE MACRO ::=
BEGIN
    TYPE NOTATION ::= "SYNTAX" Syntax
    VALUE NOTATION ::= value(VALUE ObjectName)
END

NOTIFICATION-TYPE MACRO ::=
BEGIN
    TYPE NOTATION ::= ObjectsPart
    VALUE NOTATION ::= value(VALUE NotificationName)
END
""",
    "SNMPv2-TC": """
TEXTUAL-CONVENTION MACRO ::=
BEGIN
    TYPE NOTATION ::= "STATUS" Status "DESCRIPTION" Text "SYNTAX" Syntax
    VALUE NOTATION ::= value(VALUE Syntax)
END
""",
    "SNMPv2-CONF": """
OBJECT-GROUP MACRO ::=
BEGIN
    TYPE NOTATION ::= "OBJECTS" "{" Objects "}"
    VALUE NOTATION ::= value(VALUE OBJECT IDENTIFIER)
END

NOTIFICATION-GROUP MACRO ::=
BEGIN
    TYPE NOTATION ::= "NOTIFICATIONS" "{" Notifications "}"
    VALUE NOTATION ::= value(VALUE OBJECT IDENTIFIER)
END

MODULE-COMPLIANCE MACRO ::=
BEGIN
    TYPE NOTATION ::= "STATUS" Status
    VALUE NOTATION ::= value(VALUE OBJECT IDENTIFIER)
END
""",
    "NET-SNMP-MIB": """
IMPORTS enterprises FROM SNMPv2-SMI;

netSnmp             OBJECT IDENTIFIER ::= { enterprises 8072 }
netSnmpExperimental OBJECT IDENTIFIER ::= { netSnmp 9999 }
netSnmpPlaypen      OBJECT IDENTIFIER ::= { netSnmpExperimental 9999 }
""",
}


def write_base_mibs(directory: Path, modules: tuple[str, ...] = (*_BASE, "NET-SNMP-MIB")) -> None:
    """Minimal stand-ins for the modules RAIS-MIB imports (written for these
    tests, not copies): only the macros and nodes that are imported."""
    directory.mkdir(parents=True, exist_ok=True)
    for module in modules:
        text = (
            f"{module} DEFINITIONS ::= BEGIN\n\n"
            f"-- A minimal stand-in for {module}, written for rais's tests.\n"
            f"{_STUBS[module]}\nEND\n"
        )
        (directory / f"{module}.txt").write_text(text)


def mib_path(workdir: Path) -> str:
    """A MIB search path (``:``-separated, for ``-M`` and ``SMIPATH``) that
    resolves RAIS-MIB and everything it imports, writing stand-ins for the
    base modules into ``workdir`` when no real copies are found."""
    dirs: list[Path] = []
    candidates = [Path(d) for d in os.environ.get("RAIS_MIBDIRS", "").split(":") if d]
    candidates += [Path(d) for d in _SYSTEM_MIB_DIRS]
    base = next((d for d in candidates if all(_has_module(d, m) for m in _BASE)), None)
    if base is None:
        base = workdir / "base-mibs"
        write_base_mibs(base, _BASE)
    dirs.append(base)
    net_snmp = next(
        (Path(d) for d in _NET_SNMP_MIB_DIRS if _has_module(Path(d), "NET-SNMP-MIB")), None
    )
    if net_snmp is None:
        net_snmp = workdir / "net-snmp-mibs"
        write_base_mibs(net_snmp, ("NET-SNMP-MIB",))
    dirs.append(net_snmp)
    dirs.append(MIB_DIR)
    return ":".join(str(d) for d in dirs)


@dataclass(frozen=True, slots=True)
class Varbind:
    oid: str
    """Numeric, without the leading dot."""
    type: str | None
    """net-snmp's type label (``STRING``, ``OID``...); None when it printed
    only the value (TimeTicks with ``-Ot``)."""
    value: str


@dataclass(frozen=True, slots=True)
class Trap:
    """One notification as snmptrapd printed it."""

    pdu: str
    """``TRAP2`` or ``INFORM``."""
    version: str
    """``2c`` or ``3``."""
    security: str
    """The community (v2c) or user (v3)."""
    varbinds: tuple[Varbind, ...]

    def value(self, oid: str) -> str:
        for vb in self.varbinds:
            if vb.oid == oid:
                return vb.value
        raise KeyError(oid)

    @property
    def trap_oid(self) -> str:
        return self.value("1.3.6.1.6.3.1.1.4.1.0").lstrip(".")

    @property
    def uptime(self) -> int:
        return int(self.value("1.3.6.1.2.1.1.3.0"))


_VARBIND = re.compile(r"\.?(?P<oid>[0-9.]+) = (?:(?P<type>[A-Za-z0-9-]+): )?(?P<value>.*)", re.S)


def parse_line(line: str) -> Trap:
    """Parse one line printed with ``FORMAT``."""
    security, *binds = line.removeprefix(PREFIX).split(SEPARATOR)
    pdu, version, who, *_ = [*security.split(", "), ""]
    out: list[Varbind] = []
    for text in binds:
        m = _VARBIND.fullmatch(text)
        if m is None:
            raise ValueError(f"cannot parse varbind {text!r} in {line!r}")
        out.append(Varbind(m["oid"], m["type"], m["value"]))
    return Trap(
        pdu=pdu,
        version=version.removeprefix("SNMP v"),
        security=who.split(" ", 1)[1] if " " in who else who,
        varbinds=tuple(out),
    )


def free_udp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _conf() -> str:
    lines = [f"authCommunity log {COMMUNITY}"]
    for user, auth in ((USER, "SHA"), (USER256, "SHA-256")):
        lines.append(f"createUser -e 0x{ENGINE_ID} {user} {auth} {AUTH_KEY} AES {PRIV_KEY}")
        lines.append(f"createUser {user} {auth} {AUTH_KEY} AES {PRIV_KEY}")
        lines.append(f"authUser log {user} priv")
    return "\n".join(lines) + "\n"


class TrapDaemon:
    """A running snmptrapd; see the module docstring."""

    def __init__(self, host: str, port: int, workdir: Path) -> None:
        self.host = host
        self.port = port
        self.workdir = workdir
        self.traps: list[Trap] = []
        self.output: list[str] = []
        """Every other line snmptrapd printed (stdout and stderr)."""
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line_bytes := await stream.readline():
            line = line_bytes.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(PREFIX):
                self.traps.append(parse_line(line))
                self._changed.set()
            else:
                self.output.append(line)
                if "NET-SNMP version" in line:
                    self._ready.set()

    async def start(self, snmptrapd: str, mibs: str, conf: Path) -> bool:
        """Start; True once ready, False if snmptrapd exited (port taken)."""
        listen = (
            f"udp6:[{self.host}]:{self.port}"
            if ":" in self.host
            else f"udp:{self.host}:{self.port}"
        )
        env = dict(os.environ)
        env["SNMP_PERSISTENT_DIR"] = str(self.workdir / "persist")
        env["SNMPCONFPATH"] = str(self.workdir)
        env.pop("MIBS", None)
        env.pop("MIBDIRS", None)
        self.process = await asyncio.create_subprocess_exec(
            snmptrapd, "-f", "-C", "-c", str(conf), "-Lo",
            "-M", mibs, "-m", "RAIS-MIB", "-On", "-Ot", "-F", FORMAT, listen,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.process.stdout)),
            asyncio.create_task(self._read(self.process.stderr)),
        ]
        ready = asyncio.create_task(self._ready.wait())
        exited = asyncio.create_task(self.process.wait())
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            exited.cancel()
        return self._ready.is_set() and self.process.returncode is None

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, STOP_TIMEOUT)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Trap]:
        """The first ``count`` notifications, waiting up to ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.traps) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"snmptrapd got {len(self.traps)} of {count} notifications in {timeout} s; "
                f"its output: {self.output[-20:]}"
            ) from None
        return self.traps[:count]

    def mib_errors(self) -> list[str]:
        """Lines where net-snmp complained about loading the MIBs."""
        bad = ("Cannot find module", "Did not find", "Unlinked OID", "Bad ", "Expected ")
        return [line for line in self.output if any(b in line for b in bad)]


@contextlib.asynccontextmanager
async def snmptrapd(*, ipv6: bool = False) -> AsyncIterator[TrapDaemon]:
    """A running snmptrapd on a free port of 127.0.0.1 (or ::1); see the module docstring."""
    binary = require_tool("snmptrapd", "snmptrapd")
    host = "::1" if ipv6 else "127.0.0.1"
    workdir = Path(tempfile.mkdtemp(prefix="rais-snmptrapd-"))
    daemon: TrapDaemon | None = None
    try:
        conf = workdir / "snmptrapd.conf"
        conf.write_text(_conf())
        mibs = mib_path(workdir)
        for _ in range(5):
            daemon = TrapDaemon(host, free_udp_port(host), workdir)
            if await daemon.start(binary, mibs, conf):
                break
            await daemon.stop()
        else:
            output = daemon.output if daemon else []
            raise RuntimeError(f"snmptrapd did not start: {output[-20:]}")
        yield daemon
    finally:
        if daemon is not None:
            await daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
