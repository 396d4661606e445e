"""One check of a test object: ``(ok, reason)``, never raising, within ``spec.timeout``.

``run_check(spec)`` picks the check for ``spec.kind``. ``run_shell`` (also
used by the command load sampler) runs a /bin/sh -c command in its own
process group and kills the whole group on timeout or cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass

import aiohttp

from rais.probes.spec import TestSpec

Result = tuple[bool, str]

BODY_LIMIT = 1 << 20
"""body_contains is searched in the first MiB of the body."""


def _secs(seconds: float) -> str:
    return f"{seconds:g}s"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class ShellResult:
    returncode: int | None
    """None: killed because it ran out of time."""
    stdout: bytes
    stderr: bytes


async def run_shell(command: str, timeout: float, *, stdout: bool = False) -> ShellResult:
    """Runs ``command`` with /bin/sh -c; raises OSError when it cannot start.

    The command gets its own session (process group): on timeout, and when the
    caller is cancelled, the whole group is killed and reaped.
    """
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    )
    try:
        proc = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Cancelled while asyncio was still setting up the pipes: the command
        # may be running already. Let the start finish, then kill its group.
        with contextlib.suppress(OSError):
            started = await starting
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(started.pid, signal.SIGKILL)
            await started.wait()
        raise
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        return ShellResult(None, b"", b"")
    finally:
        if proc.returncode is None:  # timed out or cancelled
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return ShellResult(proc.returncode, out or b"", err or b"")


def _tail(err: bytes) -> str:
    lines = err.decode(errors="replace").strip().splitlines()
    return f": {_short(lines[-1].strip(), 200)}" if lines else ""


def _os_reason(exc: OSError) -> str:
    """ "Connection refused" rather than asyncio's "Connect call failed (...)"."""
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def _status(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


async def check_tcp(spec: TestSpec) -> Result:
    """Passes when a TCP connection to host:port opens within the timeout."""
    host = spec.host or ""
    where = f"[{host}]:{spec.port}" if ":" in host else f"{host}:{spec.port}"
    try:
        async with asyncio.timeout(spec.timeout):
            _, writer = await asyncio.open_connection(host, spec.port)
    except TimeoutError:
        return False, f"TCP connect to {where}: timed out after {_secs(spec.timeout)}"
    except OSError as exc:
        return False, f"TCP connect to {where}: {_os_reason(exc)}"
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(spec.timeout):
            await writer.wait_closed()
    return True, f"TCP connect to {where}: ok"


async def _body_has(response: aiohttp.ClientResponse, needle: bytes) -> bool:
    body = bytearray()
    while len(body) < BODY_LIMIT:
        chunk = await response.content.read(BODY_LIMIT - len(body))
        if not chunk:
            break
        body += chunk
        if needle in body:
            return True
    return needle in body


async def check_http(spec: TestSpec) -> Result:
    """A GET of ``url`` (redirects not followed): passes on an expected status,
    and, with ``body_contains``, when the body holds that text."""
    url = spec.url or ""
    try:
        async with (
            asyncio.timeout(spec.timeout),
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=spec.timeout),
                connector=aiohttp.TCPConnector(force_close=True),
            ) as session,
            session.get(url, allow_redirects=False, ssl=spec.tls_verify) as response,
        ):
            status = response.status
            if status not in spec.expect_status:
                return False, f"HTTP {status} from {url}"
            needle = spec.body_contains
            if needle is not None and not await _body_has(response, needle.encode()):
                return False, f"HTTP {status} from {url}, body lacks {_short(needle)!r}"
            return True, f"HTTP {status} from {url}"
    except TimeoutError:
        return False, f"HTTP GET {url}: timed out after {_secs(spec.timeout)}"
    except aiohttp.ClientSSLError as exc:
        return False, f"HTTP GET {url}: TLS error: {_short(str(exc), 200)}"
    except aiohttp.ClientConnectorError as exc:
        return False, f"HTTP GET {url}: cannot connect: {_os_reason(exc.os_error)}"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return False, f"HTTP GET {url}: {type(exc).__name__}: {_short(str(exc), 200)}"


async def check_command(spec: TestSpec) -> Result:
    """Runs the command with /bin/sh -c: exit status 0 passes."""
    command = spec.command or ""
    what = f"command {_short(command)!r}"
    try:
        result = await run_shell(command, spec.timeout)
    except OSError as exc:
        return False, f"{what}: cannot run: {exc.strerror or exc}"
    if result.returncode is None:
        return False, f"{what}: killed after timeout {_secs(spec.timeout)}"
    if result.returncode != 0:
        return False, f"{what}: {_status(result.returncode)}{_tail(result.stderr)}"
    return True, f"{what}: exit status 0"


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


async def check_file(spec: TestSpec) -> Result:
    """Fails when ``path`` exists (``fail_if = "exists"``) or when it is missing."""
    path = spec.path or ""
    try:
        async with asyncio.timeout(spec.timeout):
            exists = await asyncio.to_thread(_exists, path)
    except TimeoutError:
        return False, f"file {path}: no answer after {_secs(spec.timeout)}"
    except OSError as exc:
        return False, f"file {path}: {exc.strerror or exc}"
    ok = not exists if spec.fail_if == "exists" else exists
    return ok, f"file {path} {'exists' if exists else 'is missing'}"


_CHECKS = {"tcp": check_tcp, "http": check_http, "command": check_command, "file": check_file}


async def run_check(spec: TestSpec) -> Result:
    """The check for ``spec.kind``; any unexpected error is a failure, never raised."""
    try:
        return await _CHECKS[spec.kind](spec)
    except Exception as exc:
        return False, f"check error: {type(exc).__name__}: {_short(str(exc), 200)}"
