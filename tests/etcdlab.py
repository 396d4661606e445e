"""A real etcd (Debian's ``etcd-server``) on loopback for the etcd client tests.

``async with etcd_cluster(3) as lab`` starts three members (``--initial-cluster``
on 127.0.0.1, free ports, fast elections: 50 ms heartbeat, 500 ms election
timeout) in one temporary directory, waits until every member answers
``GET /health``, and on exit (also on failure) kills them all and removes the
directory. ``lab.urls`` are the client URLs, ``lab.kill(i)`` SIGKILLs member i.

``netns="NAME"`` runs the members inside that network namespace instead
(``ip netns exec``), their client URLs on ``host`` (an address of that
namespace; the peer URLs stay on its loopback), health checked from inside
it; ``lab.restart(i)`` starts a killed member again on its data directory.

``tls=True`` serves the client URLs over https with a fresh CA
(``lab.certs``) and requires a client certificate signed by it;
``lab.enable_auth(user, password)`` adds a user with the root role and turns
authentication on (through the JSON gateway: no ``etcdctl`` needed).

Without ``etcd`` the tests skip, except as root with ``CI=true``, where they
fail: the test command installs it there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from bind import find_tool, free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rais.drivers.etcd import ssl_context

HOST = "127.0.0.1"
START_TIMEOUT = 15.0


def require_etcd() -> str:
    found = find_tool("etcd")
    if found:
        return found
    if os.environ.get("CI") == "true" and os.geteuid() == 0:
        pytest.fail("etcd not found; CI=true as root, so this is a failure, not a skip")
    pytest.skip("etcd not found (Debian: apt-get install etcd-server)")


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl_context(str(self.ca), str(self.client_cert), str(self.client_key))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_certs(directory: Path) -> Certs:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rais test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths = []
    for name, usage in (
        # etcd's gateway dials its own gRPC port with the server certificate
        ("server", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH]),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rais {name}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(directory / f"{name}-key.pem", key)
        paths += [directory / f"{name}.pem", directory / f"{name}-key.pem"]
    return Certs(directory / "ca.pem", *paths)


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    scheme: str
    process: subprocess.Popen[bytes] | None = None
    host: str = HOST

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"


@dataclass
class EtcdLab:
    directory: Path
    binary: str
    members: list[Member]
    certs: Certs | None = None
    token: str = field(default_factory=lambda: "rais-" + secrets.token_hex(4))
    netns: str | None = None

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    def client_ssl(self) -> ssl.SSLContext | None:
        return self.certs.client_context() if self.certs is not None else None

    def start(self) -> None:
        for m in self.members:
            self._spawn(m)

    def restart(self, index: int) -> None:
        """Start member ``index`` again (after ``kill``) on its data directory."""
        self._spawn(self.members[index])

    def _spawn(self, m: Member) -> None:
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        wrap = ["ip", "netns", "exec", self.netns] if self.netns else []
        args = [
            *wrap,
            self.binary,
            f"--name={m.name}",
            f"--data-dir={self.directory / m.name}",
            f"--listen-client-urls={m.url}",
            f"--advertise-client-urls={m.url}",
            f"--listen-peer-urls={m.peer_url}",
            f"--initial-advertise-peer-urls={m.peer_url}",
            f"--initial-cluster={cluster}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token={self.token}",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if self.certs is not None:
            c = self.certs
            args += [
                f"--cert-file={c.server_cert}",
                f"--key-file={c.server_key}",
                f"--trusted-ca-file={c.ca}",
                "--client-cert-auth",
            ]
        with (self.directory / f"{m.name}.log").open("ab") as log:
            m.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    async def wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        connector = aiohttp.TCPConnector(ssl=self.client_ssl() or True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for m in self.members:
                while not await self._healthy(session, m):
                    assert m.process is not None
                    if m.process.poll() is not None:
                        raise RuntimeError(f"{m.name} exited:\n{self.log_tail(m)}")
                    if loop.time() > deadline:
                        raise RuntimeError(f"{m.name} not ready:\n{self.log_tail(m)}")
                    await asyncio.sleep(0.05)

    async def _healthy(self, session: aiohttp.ClientSession, m: Member) -> bool:
        if self.netns is not None:
            url = m.url + "/health"
            check = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=1).read())"
            proc = await asyncio.create_subprocess_exec(
                *("ip", "netns", "exec", self.netns, sys.executable, "-c", check),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await proc.communicate()
            return proc.returncode == 0 and b'"true"' in out
        try:
            async with session.get(m.url + "/health", timeout=aiohttp.ClientTimeout(1)) as r:
                return r.status == 200 and '"true"' in await r.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def leader(self) -> int:
        """The index of the member that is the raft leader now."""
        connector = aiohttp.TCPConnector(ssl=self.client_ssl() or True)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(self.urls[0] + "/v3/maintenance/status", json={}) as r:
                status = await r.json()
            ids = []
            for url in self.urls:
                async with session.post(url + "/v3/maintenance/status", json={}) as r:
                    ids.append((await r.json())["header"]["member_id"])
        return ids.index(status["leader"])

    def kill(self, index: int) -> None:
        proc = self.members[index].process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        for i in range(len(self.members)):
            self.kill(i)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, m: Member, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / f"{m.name}.log").read_text(errors="replace")[-chars:]
        return ""

    async def enable_auth(self, user: str, password: str, prefix: str = "/rais/") -> None:
        """Add ``user`` with read and write access to ``prefix`` only (and a
        root user, which etcd needs) and turn authentication on."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        perm = {"permType": "READWRITE", "key": _b64(prefix), "range_end": _b64(end)}
        connector = aiohttp.TCPConnector(ssl=self.client_ssl() or True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for path, body in (
                ("/v3/auth/user/add", {"name": "root", "password": secrets.token_hex(8)}),
                ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                ("/v3/auth/role/add", {"name": "rais"}),
                ("/v3/auth/role/grant", {"name": "rais", "perm": perm}),
                ("/v3/auth/user/add", {"name": user, "password": password}),
                ("/v3/auth/user/grant", {"user": user, "role": "rais"}),
                ("/v3/auth/enable", {}),
            ):
                async with session.post(self.urls[0] + path, json=body) as r:
                    assert r.status == 200, (path, r.status, await r.text())


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@contextlib.asynccontextmanager
async def etcd_cluster(
    size: int = 1, *, tls: bool = False, netns: str | None = None, host: str = HOST
) -> AsyncIterator[EtcdLab]:
    binary = require_etcd()
    directory = Path(tempfile.mkdtemp(prefix="rais-etcd-"))
    scheme = "https" if tls else "http"
    if netns is None:
        members = [Member(f"m{i}", free_port(), free_port(), scheme) for i in range(size)]
    else:  # a namespace of the caller's: every port is free there
        members = [
            Member(f"m{i}", 2379 + 2 * i, 2380 + 2 * i, scheme, host=host) for i in range(size)
        ]
    lab = EtcdLab(directory, binary, members, netns=netns)
    try:
        if tls:
            lab.certs = make_certs(directory)
        lab.start()
        await lab.wait_ready()
        yield lab
    finally:
        lab.stop()
