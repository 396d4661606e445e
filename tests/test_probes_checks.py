"""Tests of the health checks (src/rais/probes/checks.py) against real local
servers, commands and files."""

from __future__ import annotations

import asyncio
import datetime
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rais.probes.checks import (
    check_command,
    check_file,
    check_http,
    check_tcp,
    run_check,
    run_shell,
)
from rais.probes.spec import TestSpec


@dataclass
class Server:
    url: str
    release: asyncio.Event
    """Set to let the slow handler finish."""


def http_spec(url: str, **kw: Any) -> TestSpec:
    return TestSpec("web", "http", url=url, **kw)


def make_app(release: asyncio.Event) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="hello, the service is UP")

    async def down(request: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance")

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 4096)
        await response.write(b"NEEDLE at the end")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/down", down)
    app.router.add_get("/slow", slow)
    app.router.add_get("/moved", moved)
    app.router.add_get("/big", big)
    return app


async def serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    release = asyncio.Event()
    runner = web.AppRunner(make_app(release), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    host, port = runner.addresses[0][:2]
    scheme = "https" if ssl_context else "http"
    try:
        yield Server(f"{scheme}://{host}:{port}", release)
    finally:
        release.set()
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async for s in serve():
        yield s


def openssl_cert(cert: Path, key: Path) -> None:
    """A self-signed certificate for 127.0.0.1 from the openssl command line."""
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *subject,
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )


def cryptography_cert(cert: Path, key: Path) -> None:
    """The same with the cryptography package (skips the test when it is not installed)."""
    pytest.importorskip("cryptography")
    import ipaddress

    from cryptography import x509  # type: ignore[import-not-found, unused-ignore]
    from cryptography.hazmat.primitives import (  # type: ignore[import-not-found, unused-ignore]
        hashes,
        serialization,
    )
    from cryptography.hazmat.primitives.asymmetric import (  # type: ignore[import-not-found, unused-ignore]
        ec,
    )
    from cryptography.x509.oid import NameOID  # type: ignore[import-not-found, unused-ignore]

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(params=["cryptography", "openssl"])
async def tls_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if request.param == "cryptography":
        cryptography_cert(cert, key)
    elif shutil.which("openssl"):
        openssl_cert(cert, key)
    else:
        pytest.skip("no openssl command")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async for s in serve(context):
        yield s


def closed_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ---------------------------------------------------------------- http


async def test_http_ok(server: Server) -> None:
    assert await check_http(http_spec(server.url + "/")) == (True, f"HTTP 200 from {server.url}/")


async def test_http_unexpected_status(server: Server) -> None:
    url = server.url + "/down"
    assert await check_http(http_spec(url)) == (False, f"HTTP 503 from {url}")
    assert await check_http(http_spec(url, expect_status=(200, 503))) == (
        True,
        f"HTTP 503 from {url}",
    )


async def test_http_redirects_are_not_followed(server: Server) -> None:
    url = server.url + "/moved"
    assert await check_http(http_spec(url)) == (False, f"HTTP 302 from {url}")
    assert (await check_http(http_spec(url, expect_status=(302,))))[0]


async def test_http_body_contains(server: Server) -> None:
    url = server.url + "/"
    assert await check_http(http_spec(url, body_contains="service is UP")) == (
        True,
        f"HTTP 200 from {url}",
    )
    assert await check_http(http_spec(url, body_contains="DOWN")) == (
        False,
        f"HTTP 200 from {url}, body lacks 'DOWN'",
    )
    # Found after 256 KiB of streamed chunks.
    assert (await check_http(http_spec(server.url + "/big", body_contains="NEEDLE")))[0]


async def test_http_timeout(server: Server) -> None:
    url = server.url + "/slow"
    start = time.monotonic()
    result = await check_http(http_spec(url, timeout=0.2))
    assert result == (False, f"HTTP GET {url}: timed out after 0.2s")
    assert time.monotonic() - start < 1.0


async def test_http_connection_refused() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    assert await check_http(http_spec(url)) == (
        False,
        f"HTTP GET {url}: cannot connect: Connection refused",
    )


async def test_https_without_verification(tls_server: Server) -> None:
    url = tls_server.url + "/"
    assert url.startswith("https://")
    assert await check_http(http_spec(url, tls_verify=False)) == (True, f"HTTP 200 from {url}")


async def test_https_with_verification_refuses_a_self_signed_certificate(
    tls_server: Server,
) -> None:
    url = tls_server.url + "/"
    ok, reason = await check_http(http_spec(url, tls_verify=True))
    assert not ok
    assert reason.startswith(f"HTTP GET {url}: TLS error"), reason
    assert "certificate verify failed" in reason, reason


# ---------------------------------------------------------------- tcp


async def test_tcp_listener() -> None:
    accepted: list[int] = []

    def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    listener = await asyncio.start_server(on_client, "127.0.0.1", 0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        spec = TestSpec("db", "tcp", host="127.0.0.1", port=port)
        assert await check_tcp(spec) == (True, f"TCP connect to 127.0.0.1:{port}: ok")
        await asyncio.sleep(0.01)
    assert accepted == [1]


async def test_tcp_closed_port() -> None:
    port = closed_port()
    spec = TestSpec("db", "tcp", host="127.0.0.1", port=port)
    assert await check_tcp(spec) == (False, f"TCP connect to 127.0.0.1:{port}: Connection refused")


async def test_tcp_ipv6_is_shown_in_brackets() -> None:
    port = closed_port()
    ok, reason = await check_tcp(TestSpec("db", "tcp", host="::1", port=port))
    assert not ok
    # "Connection refused", or "Cannot assign requested address" without IPv6.
    assert reason.startswith(f"TCP connect to [::1]:{port}: "), reason
    assert "Connect call failed" not in reason


# ---------------------------------------------------------------- command


def command_spec(command: str, timeout: float = 1.0) -> TestSpec:
    return TestSpec("cmd", "command", command=command, timeout=timeout)


async def test_command_exit_status() -> None:
    assert await check_command(command_spec("true")) == (True, "command 'true': exit status 0")
    assert await check_command(command_spec("false")) == (False, "command 'false': exit status 1")


async def test_command_failure_shows_the_last_stderr_line() -> None:
    result = await check_command(command_spec("echo one >&2; echo two >&2; exit 3"))
    assert result == (False, "command 'echo one >&2; echo two >&2; exit 3': exit status 3: two")


async def test_command_killed_by_a_signal() -> None:
    result = await check_command(command_spec("kill -TERM $$"))
    assert result == (False, "command 'kill -TERM $$': killed by SIGTERM")


async def test_command_timeout() -> None:
    start = time.monotonic()
    result = await check_command(command_spec("sleep 5", timeout=0.3))
    assert result == (False, "command 'sleep 5': killed after timeout 0.3s")
    assert time.monotonic() - start < 2.0


def gone(pid: int) -> bool:
    """The process has exited (no such process, or a zombie not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def wait_gone(pid: int, limit: float = 10.0) -> bool:
    """Whether ``pid`` exits within ``limit`` seconds (generous: a loaded
    machine may take a while to deliver the kill and reap)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while loop.time() < end:
        if gone(pid):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_command_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    child = tmp_path / "child"
    result = await check_command(command_spec(f"sleep 30 & echo $! > {child}; wait", 0.5))
    assert not result[0]
    assert "killed after timeout 0.5s" in result[1]
    assert await wait_gone(int(child.read_text()))


async def test_cancelling_a_command_kills_it(tmp_path: Path) -> None:
    child = tmp_path / "child"
    task = asyncio.create_task(run_shell(f"sleep 30 & echo $! > {child}; wait", 30.0))
    loop = asyncio.get_running_loop()
    end = loop.time() + 10.0
    while not (child.exists() and child.read_text().strip()) and loop.time() < end:
        await asyncio.sleep(0.01)
    pid = int(child.read_text())
    assert not gone(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(pid)


async def test_run_shell_captures_stdout() -> None:
    result = await run_shell("echo 12 34", 1.0, stdout=True)
    assert (result.returncode, result.stdout) == (0, b"12 34\n")


# ---------------------------------------------------------------- file


async def test_file_exists_and_missing(tmp_path: Path) -> None:
    flag = tmp_path / "maintenance"
    maint = TestSpec("maint", "file", path=str(flag))
    up = TestSpec("up", "file", path=str(flag), fail_if="missing")
    assert await check_file(maint) == (True, f"file {flag} is missing")
    assert await check_file(up) == (False, f"file {flag} is missing")
    flag.touch()
    assert await check_file(maint) == (False, f"file {flag} exists")
    assert await check_file(up) == (True, f"file {flag} exists")


async def test_file_under_a_regular_file_is_missing(tmp_path: Path) -> None:
    (tmp_path / "f").touch()
    path = str(tmp_path / "f" / "x")
    assert await check_file(TestSpec("t", "file", path=path)) == (True, f"file {path} is missing")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
async def test_file_unreadable_directory_fails(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    path = str(locked / "x")
    ok, reason = await check_file(TestSpec("t", "file", path=path))
    assert (ok, reason) == (False, f"file {path}: Permission denied")


# ---------------------------------------------------------------- dispatch


async def test_run_check_dispatches_and_never_raises(tmp_path: Path) -> None:
    assert await run_check(command_spec("true")) == (True, "command 'true': exit status 0")
    path = str(tmp_path / "nothing")
    assert await run_check(TestSpec("f", "file", path=path)) == (True, f"file {path} is missing")
    bogus: Any = "gopher"
    ok, reason = await run_check(TestSpec("x", bogus))
    assert (ok, reason) == (False, "check error: KeyError: 'gopher'")
