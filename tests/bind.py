"""A real BIND 9 ``named`` for tests of the DNS publishers.

``BindServer.start()`` (or ``with bind_server() as b`` / ``async with
async_bind_server() as b``, or the module-scoped ``bind`` fixture: import
``bind_fixture`` into the test module) runs ``named -g -n 1 -c named.conf`` in the
foreground, as the current user (no ``-u``: as root named simply stays root,
so the directory needs no chown), in its own temporary directory, listening
on 127.0.0.1 on a free port, with:

- ``rais.test.``: a dynamic zone, ``allow-update { key rais-key; }``, TSIG key
  ``rais-key`` (hmac-sha256, fresh random secret);
- ``static.test.``: a static zone loaded from ``static.test.zone``, for the
  zone-file publisher, reloaded with ``rndc -c rndc.conf reload static.test``
  (``controls`` on 127.0.0.1 with another free port and its own rndc key).

Both zones have SOA and ``NS localhost.`` (out of zone: no glue needed).
``start`` returns once named answers NOERROR to SOA for both zones (it
answers SERVFAIL while zones load). On exit named gets SIGTERM, then SIGKILL,
and the directory is removed, also when the start failed.

Without ``named`` (or ``rndc``) tests skip, except with ``CI=true``, where
they fail: a skip there would hide that the BIND tests never ran.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import dns.asyncquery
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from rais.base.ip import IP as IP  # re-exported for the e2e tests

HOST = "127.0.0.1"
DYNAMIC_ZONE = "rais.test."
STATIC_ZONE = "static.test."
KEY_NAME = "rais-key"
RNDC_KEY_NAME = "rndc-key"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_tool(name: str) -> str | None:
    """Path of a BIND tool: on PATH or in the sbin directories."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_bind() -> tuple[str, str]:
    """(named, rndc) paths; skip without them, fail instead with CI=true."""
    named, rndc = find_tool("named"), find_tool("rndc")
    if named and rndc:
        return named, rndc
    missing = " and ".join(n for n, p in (("named", named), ("rndc", rndc)) if not p)
    if os.environ.get("CI") == "true":
        pytest.fail(f"BIND: {missing} not found; CI=true, so this is a failure, not a skip")
    pytest.skip(f"BIND: {missing} not found (Debian: apt-get install bind9 bind9-dnsutils)")


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a server still running, then SIGKILL it after ``timeout`` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (at the time of asking)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((HOST, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for both UDP and TCP")


def _secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def zone_text(origin: str, serial: int = 1) -> str:
    return (
        "$TTL 60\n"
        f"{origin} IN SOA localhost. hostmaster.{origin} {serial} 3600 600 86400 60\n"
        f"{origin} IN NS localhost.\n"
    )


@dataclass
class BindServer:
    """One named process and its directory; see the module docstring."""

    directory: Path
    named: str
    rndc: str
    port: int
    control_port: int
    tsig_secret: str
    rndc_secret: str
    host: str = HOST
    dynamic_zone: str = DYNAMIC_ZONE
    static_zone: str = STATIC_ZONE
    key_name: str = KEY_NAME
    netns: str | None = None
    """Run named in this network namespace (``ip netns exec``), listening on
    ``host`` there; readiness is then checked with ``dig`` in that namespace."""
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, *, netns: str | None = None, host: str = HOST) -> BindServer:
        named, rndc = require_bind()
        return cls(
            netns=netns,
            host=host,
            directory=Path(tempfile.mkdtemp(prefix="rais-bind-")),
            named=named,
            rndc=rndc,
            port=free_port(),
            control_port=free_port(),
            tsig_secret=_secret(),
            rndc_secret=_secret(),
        )

    @property
    def server(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def static_zone_file(self) -> Path:
        return self.directory / "static.test.zone"

    @property
    def rndc_conf(self) -> Path:
        return self.directory / "rndc.conf"

    @property
    def log_file(self) -> Path:
        return self.directory / "named.log"

    def reload_command(self, zone: str | None = None) -> str:
        """Shell command that makes named reload ``zone`` (default: the static zone)."""
        name = (zone or self.static_zone).rstrip(".")
        return f"{self.rndc} -c {self.rndc_conf} reload {name}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _write_config(self) -> None:
        d = self.directory
        (d / "rais.test.zone").write_text(zone_text(self.dynamic_zone))
        self.static_zone_file.write_text(zone_text(self.static_zone))
        rndc_key = f'key "{RNDC_KEY_NAME}" {{ algorithm hmac-sha256; '
        rndc_key += f'secret "{self.rndc_secret}"; }};\n'
        (d / "named.conf").write_text(
            f"options {{\n"
            f'    directory "{d}";\n'
            f'    pid-file "{d}/named.pid";\n'
            f'    session-keyfile "{d}/session.key";\n'
            f'    managed-keys-directory "{d}";\n'
            f"    listen-on port {self.port} {{ {self.host}; }};\n"
            f"    listen-on-v6 {{ none; }};\n"
            f"    recursion no;\n"
            f"    dnssec-validation no;\n"
            f"    notify no;\n"
            f"}};\n"
            f'key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{self.tsig_secret}"; }};\n'
            f"{rndc_key}"
            f"controls {{\n"
            f"    inet {self.host} port {self.control_port} allow {{ {self.host}; }} "
            f"keys {{ {RNDC_KEY_NAME}; }};\n"
            f"}};\n"
            f'zone "{self.dynamic_zone}" {{\n'
            f'    type primary; file "{d}/rais.test.zone";\n'
            f"    allow-update {{ key {KEY_NAME}; }};\n"
            f"}};\n"
            f'zone "{self.static_zone}" {{ type primary; file "{self.static_zone_file}"; }};\n'
        )
        self.rndc_conf.write_text(
            f"{rndc_key}"
            f"options {{ default-server {self.host}; default-port {self.control_port}; "
            f"default-key {RNDC_KEY_NAME}; }};\n"
        )

    def start(self) -> None:
        """Write the config, start named, wait until both zones answer SOA."""
        try:
            self._write_config()
            with self.log_file.open("wb") as log:
                wrap = ["ip", "netns", "exec", self.netns] if self.netns else []
                self.process = subprocess.Popen(
                    [*wrap, self.named, "-g", "-n", "1", "-c", str(self.directory / "named.conf")],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        pending = [self.dynamic_zone, self.static_zone]
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"named exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"named not ready after {START_TIMEOUT} s:\n{self.log_tail()}")
            if self.netns is not None:
                if self._soa_in_netns(pending[0]):
                    pending.pop(0)
                    continue
            else:
                query = dns.message.make_query(pending[0], "SOA")
                try:
                    answer = dns.query.udp(query, self.host, timeout=0.2, port=self.port)
                except (dns.exception.DNSException, OSError):
                    continue
                if answer.rcode() == dns.rcode.NOERROR:
                    pending.pop(0)
                    continue
            # SERVFAIL while the zones load: wait a little for named to exit
            # (checked at the top of the loop) before asking again.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.02)

    def _soa_in_netns(self, zone: str) -> bool:
        assert self.netns is not None
        out = subprocess.run(
            [
                *("ip", "netns", "exec", self.netns, "dig", "+tries=1", "+time=1"),
                *(f"@{self.host}", "-p", str(self.port), zone, "SOA"),
            ],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        return "status: NOERROR" in out

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; remove the directory."""
        try:
            terminate(self.process, STOP_TIMEOUT)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def bind_server() -> Iterator[BindServer]:
    server = BindServer.create()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def async_bind_server() -> AsyncIterator[BindServer]:
    server = BindServer.create()
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture(scope="module", name="bind")
def bind_fixture() -> Iterator[BindServer]:
    with bind_server() as server:
        yield server


class Runnable(Protocol):
    async def run(self) -> None: ...


# -- asking the server --------------------------------------------------------


async def lookup(server: tuple[str, int], name: str) -> tuple[int, set[IP]]:
    """(rcode of the A query, A and AAAA addresses) of ``name`` at ``server``."""
    found: set[IP] = set()
    rcode = dns.rcode.NOERROR
    for rdtype in ("A", "AAAA"):
        query = dns.message.make_query(name, rdtype)
        answer = await dns.asyncquery.udp(query, server[0], timeout=0.5, port=server[1])
        if rdtype == "A":
            rcode = answer.rcode()
        for rrset in answer.answer:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                found |= {ipaddress.ip_address(rd.address) for rd in rrset}
    return rcode, found


async def wait_addresses(
    server: tuple[str, int], name: str, expected: Iterable[IP], deadline: float = 2.0
) -> int:
    """Poll until ``name`` has exactly ``expected`` as A+AAAA; return the rcode.
    Fails with what the server last answered when ``deadline`` passes."""
    want = set(expected)
    last: tuple[int, set[IP]] | None = None

    async def matches() -> bool:
        nonlocal last
        last = await lookup(server, name)
        return last[1] == want

    if not await eventually(matches, deadline):
        pytest.fail(f"{name}: wanted {sorted(map(str, want))}, server answered {last}")
    assert last is not None
    return last[0]


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], deadline: float = 2.0, step: float = 0.01
) -> bool:
    """Poll ``check`` (plain or async) until true or ``deadline`` seconds pass."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return True
        if loop.time() > end:
            return False
        await asyncio.sleep(step)


@contextlib.asynccontextmanager
async def running(publisher: Runnable) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``publisher.run()`` as a task; on exit check it is still running
    (it must never end by itself), then cancel it."""
    task = asyncio.create_task(publisher.run())
    try:
        yield task
    finally:
        ended = task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not ended, "run() ended by itself"
