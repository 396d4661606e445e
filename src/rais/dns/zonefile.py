"""Publishing a group's addresses as a whole zone file, for a DNS server that
loads its zones from files (BIND, NSD, Knot...).

``publish(addresses, hosts)`` records the name's addresses (and the per-host
names, ``host-192-0-2-11.NAME``, with theirs) and returns; ``run()`` (same
pattern as ``UpdatePublisher``: one attempt in flight, latest content wins,
unchanged content skipped, failures logged on ``rais.dns.zonefile``, counted
and retried with exponential backoff) then:

1. writes the zone, rendered by :func:`rais.dns.render.zone_text` from a
   :class:`~rais.dns.server.ZoneData` (the data the embedded server answers
   from: the same SOA timers, TTLs and names): SOA, NS and the A/AAAA records
   of ``name`` and of the per-host names, to a temporary
   file in the same directory (``.NAME.*.tmp``), fsyncs it, gives it the mode
   of the file it replaces (0644 for a new one), ``os.replace``-s it over
   ``path`` and fsyncs the directory, so a reader sees the old or the new
   file, never a partial one. The SOA serial is ``serial_next(old, now)``
   (RFC 1982: the Unix time if that is greater than the old serial, otherwise
   old + 1, modulo 2**32); the old serial is read from the existing file, or
   the one written last if greater in serial arithmetic or the file is
   unreadable.
2. runs ``reload_command`` (if any) with ``/bin/sh -c``, in its own process
   group, killed after ``reload_timeout``. A non-zero exit is a failure. When
   only the reload failed, the retry runs the command again without
   rewriting the file (so a failing reload does not keep bumping the serial).

Names in the file are relative to its ``$ORIGIN`` line; every record carries
its TTL (the zone's ``ttl``, as the embedded server answers). ``ns``
defaults to ``localhost.``, an
out-of-zone name that needs no glue; give the real name servers in
production. The SOA MNAME defaults to the first NS, RNAME to
``hostmaster`` in the zone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone

from rais.base.ip import IP, sorted_ips
from rais.dns.render import zone_text
from rais.dns.server import SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, ZoneData
from rais.dns.update import Clock, CoalescingPublisher, PublishError, ResultHook, Sleep, describe
from rais.dns.zone import serial_gt, serial_next

log = logging.getLogger("rais.dns.zonefile")

OUTPUT_LIMIT = 2000


def read_serial(path: Path, origin: dns.name.Name) -> int | None:
    """The SOA serial of the zone file at ``path``; None if there is no file.

    Raises ``ValueError`` if the file exists but is not a zone with an SOA."""
    try:
        zone = dns.zone.from_file(str(path), origin=origin, relativize=False)
    except FileNotFoundError:
        return None
    except Exception as e:
        raise ValueError(f"{path}: {type(e).__name__}: {e}") from e
    soa = zone.get_rdataset(origin, dns.rdatatype.SOA)
    if soa is None:
        raise ValueError(f"{path}: no SOA at {origin}")
    return int(soa[0].serial)


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` by a file holding ``text``: temp file in the same
    directory, fsync, chmod to the old file's mode (0644 if new), rename,
    fsync of the directory. The temp file is removed on any failure."""
    directory = path.parent
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass(frozen=True, slots=True)
class ZoneContent:
    """What a zone file holds below its apex: the name's addresses and the
    per-host names (absolute, below the name) with theirs."""

    addresses: frozenset[IP]
    hosts: tuple[tuple[dns.name.Name, tuple[IP, ...]], ...] = ()

    def names(self, name: dns.name.Name) -> dict[dns.name.Name, tuple[IP, ...]]:
        """The ``ZoneData.names`` of the zone, ``name`` first."""
        return {name: sorted_ips(self.addresses), **dict(self.hosts)}


class ZoneFilePublisher(CoalescingPublisher[ZoneContent]):
    """Keeps the zone file at ``path`` (zone ``origin``) holding the published
    addresses as the A/AAAA records of ``name`` (and the per-host names given
    with them) and has the server reload it. The SOA timers default to the
    embedded server's; ``minimum`` is the SOA MINIMUM (the negative TTL)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        origin: str,
        name: str,
        ttl: int,
        reload_command: str | None = None,
        *,
        ns: Sequence[str] = ("localhost.",),
        mname: str | None = None,
        rname: str = "hostmaster",
        refresh: int = SOA_REFRESH,
        retry: int = SOA_RETRY,
        expire: int = SOA_EXPIRE,
        minimum: int = 5,
        reload_timeout: float = 10.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        on_result: ResultHook | None = None,
    ) -> None:
        super().__init__(logger=log, backoff=backoff, clock=clock, sleep=sleep, on_result=on_result)
        for label, value in (
            ("ttl", ttl),
            ("refresh", refresh),
            ("retry", retry),
            ("expire", expire),
            ("minimum", minimum),
        ):
            if not 0 <= value < 2**31:
                raise ValueError(f"bad {label} {value}")
        if not ns:
            raise ValueError("a zone needs at least one NS")
        if reload_timeout <= 0:
            raise ValueError(f"bad reload_timeout {reload_timeout}")
        self.path = Path(path)
        self.origin = dns.name.from_text(origin)
        self.name = dns.name.from_text(name, origin=self.origin)
        if not self.name.is_subdomain(self.origin):
            raise ValueError(f"{self.name} is not in zone {self.origin}")
        self.ttl = ttl
        self.reload_command = reload_command
        self.ns = [dns.name.from_text(n, origin=self.origin) for n in ns]
        self.mname = dns.name.from_text(mname, origin=self.origin) if mname else self.ns[0]
        self.rname = dns.name.from_text(rname, origin=self.origin)
        self.timers = (refresh, retry, expire, minimum)
        self.reload_timeout = reload_timeout
        self.serial: int | None = None
        self._written: ZoneContent | None = None

    def __str__(self) -> str:
        return f"zone file {self.path} ({self.name})"

    def publish(
        self,
        addresses: Iterable[IP],
        hosts: Mapping[dns.name.Name, Iterable[IP]] | None = None,
    ) -> None:
        """Record the name's ``addresses`` and the per-host names ``hosts``
        (absolute, below ``name``) to be written; ``run()`` writes them."""
        self._offer(self.zone_content(addresses, hosts))

    def zone_content(
        self,
        addresses: Iterable[IP],
        hosts: Mapping[dns.name.Name, Iterable[IP]] | None = None,
    ) -> ZoneContent:
        """What ``publish(addresses, hosts)`` records."""
        for host in hosts or {}:
            if not host.is_subdomain(self.name) or host == self.name:
                raise ValueError(f"{host} is not a name below {self.name}")
        listed = sorted((h, sorted_ips(a)) for h, a in (hosts or {}).items())
        return ZoneContent(frozenset(addresses), tuple(listed))

    def _describe(self, target: ZoneContent) -> str:
        names = f" and {len(target.hosts)} host names" if target.hosts else ""
        return describe(target.addresses) + names

    def zone(self, content: ZoneContent, serial: int) -> ZoneData:
        """The zone the file holds for ``content``, with SOA serial ``serial``."""
        refresh, retry, expire, minimum = self.timers
        return ZoneData(
            self.origin,
            serial,
            tuple(self.ns),
            content.names(self.name),
            ttl=self.ttl,
            negative_ttl=minimum,
            rname=self.rname,
            mname=self.mname,
            refresh=refresh,
            retry=retry,
            expire=expire,
        )

    def render(self, content: ZoneContent, serial: int) -> str:
        """The whole zone file for ``content`` with SOA serial ``serial``."""
        comment = f"zone {self.origin}: written by rais, rewritten on every change; do not edit"
        return zone_text(self.zone(content, serial), comment=comment)

    def _next_serial(self) -> int:
        try:
            old = read_serial(self.path, self.origin)
        except ValueError as e:
            log.warning("%s: cannot read the old serial: %s", self, e)
            old = None
        if old is None or (self.serial is not None and serial_gt(self.serial, old)):
            old = self.serial
        now = int(self._clock())
        return now % 2**32 if old is None else serial_next(old, now)

    def _write(self, content: ZoneContent) -> int:
        serial = self._next_serial()
        atomic_write(self.path, self.render(content, serial))
        self.serial = serial
        return serial

    async def _send(self, content: ZoneContent) -> str:
        if self._written != content:
            self._written = None
            try:
                serial = await asyncio.to_thread(self._write, content)
            except OSError as e:
                raise PublishError("write", f"{type(e).__name__}: {e}") from e
            self._written = content
            detail = f"serial {serial}"
        else:
            detail = f"serial {self.serial}, written before"
        if self.reload_command is not None:
            await self._reload(self.reload_command)
            detail += ", reloaded"
        return detail

    async def _reload(self, command: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            raise PublishError("reload-spawn", f"{type(e).__name__}: {e}") from e
        try:
            async with asyncio.timeout(self.reload_timeout):
                output, _ = await proc.communicate()
        except TimeoutError:
            raise PublishError(
                "reload-timeout", f"{command!r} still running after {self.reload_timeout} s"
            ) from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        text = output.decode(errors="replace").strip()[-OUTPUT_LIMIT:]
        if proc.returncode != 0:
            raise PublishError("reload-failed", f"{command!r} exited {proc.returncode}: {text}")
        if text:
            log.debug("%s: %s: %s", self, command, text)
