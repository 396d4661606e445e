"""ZoneFilePublisher: whole-zone atomic writes, RFC 1982 serials, the reload
command, and BIND serving the new addresses after ``rndc reload``."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import bind as bind_helper
import dns.name
import dns.rdatatype
import dns.zone
import pytest
from bind import (  # noqa: F401
    IP,
    BindServer,
    bind_fixture,
    eventually,
    lookup,
    running,
    wait_addresses,
    zone_text,
)

from rais.dns.zone import serial_gt
from rais.dns.zonefile import ZoneFilePublisher, atomic_write, read_serial

V4 = [ipaddress.IPv4Address(f"198.51.100.{i}") for i in range(1, 60)]
V6 = [ipaddress.IPv6Address(f"2001:db8:1::{i:x}") for i in range(1, 60)]
ORIGIN = dns.name.from_text("static.test.")
T0 = 1_800_000_000


def make(
    path: Path, clock: float | Callable[[], float] | None = None, **kw: object
) -> ZoneFilePublisher:
    args: dict[str, object] = {
        "path": path,
        "origin": "static.test.",
        "name": "www",
        "ttl": 30,
        "backoff": (0.01, 0.02),
    }
    if isinstance(clock, int | float):
        args["clock"] = lambda: clock
    elif clock is not None:
        args["clock"] = clock
    args.update(kw)
    return ZoneFilePublisher(**args)  # type: ignore[arg-type]


async def settle(p: ZoneFilePublisher, addresses: Iterable[IP]) -> None:
    p.publish(addresses)
    assert await eventually(lambda: p.settled, step=0.002), p.stats


def leftovers(directory: Path) -> list[str]:
    return sorted(f.name for f in directory.iterdir() if f.name.endswith(".tmp"))


async def test_file_parses_with_the_records(tmp_path: Path) -> None:
    path = tmp_path / "static.test.zone"
    p = make(path, clock=T0 + 0.7)
    async with running(p):
        p.publish([V4[1], V6[0], V4[0]])
        assert await eventually(lambda: p.settled)
    zone = dns.zone.from_file(str(path), origin=ORIGIN, relativize=False)
    www = dns.name.from_text("www.static.test.")
    a = zone.get_rdataset(www, dns.rdatatype.A)
    aaaa = zone.get_rdataset(www, dns.rdatatype.AAAA)
    assert a is not None and aaaa is not None
    assert {r.to_text() for r in a} == {"198.51.100.1", "198.51.100.2"}
    assert {r.to_text() for r in aaaa} == {"2001:db8:1::1"}
    assert a.ttl == 30
    soa = zone.get_rdataset(ORIGIN, dns.rdatatype.SOA)
    ns = zone.get_rdataset(ORIGIN, dns.rdatatype.NS)
    assert soa is not None and ns is not None
    assert soa[0].serial == T0 == p.serial == read_serial(path, ORIGIN)
    assert (
        soa[0].mname.to_text() == "localhost."
        and soa[0].rname.to_text() == "hostmaster.static.test."
    )
    assert [r.to_text() for r in ns] == ["localhost."]
    assert os.stat(path).st_mode & 0o777 == 0o644


async def test_empty_set_leaves_soa_and_ns_only(tmp_path: Path) -> None:
    path = tmp_path / "z"
    p = make(path, clock=T0, ns=["ns1.example.", "ns2"], mname="primary.example.")
    async with running(p):
        await settle(p, [])
    zone = dns.zone.from_file(str(path), origin=ORIGIN, relativize=False)
    assert sorted(str(n) for n in zone.nodes) == ["static.test."]
    ns = zone.get_rdataset(ORIGIN, dns.rdatatype.NS)
    assert ns is not None and {r.to_text() for r in ns} == {"ns1.example.", "ns2.static.test."}


async def test_serial_increases_with_a_stopped_clock_and_follows_a_later_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "z"
    now = [float(T0)]
    p = make(path, clock=lambda: now[0])
    serials = []
    async with running(p):
        for i in range(3):
            await settle(p, [V4[i]])
            serials.append(read_serial(path, ORIGIN))
        now[0] = T0 + 100
        await settle(p, [V4[9]])
        serials.append(read_serial(path, ORIGIN))
        now[0] = T0 - 500  # the clock steps back: the serial still increases
        await settle(p, [V4[10]])
        serials.append(read_serial(path, ORIGIN))
    assert serials == [T0, T0 + 1, T0 + 2, T0 + 100, T0 + 101]


async def test_serial_read_from_the_existing_file_wraps_past_2_32(tmp_path: Path) -> None:
    path = tmp_path / "z"
    path.write_text(zone_text("static.test.", serial=2**32 - 2))
    p = make(path, clock=2**32 - 100)  # the clock is behind the file's serial
    serials = []
    async with running(p):
        for i in range(3):
            await settle(p, [V4[i]])
            serials.append(read_serial(path, ORIGIN))
    assert serials == [2**32 - 1, 0, 1]
    assert serial_gt(0, 2**32 - 1) and serial_gt(1, 0)

    # Near 2**32 with the real clock: the clock (about 1.8e9) is greater in
    # serial arithmetic, so it is taken.
    path.write_text(zone_text("static.test.", serial=4294967290))
    q = make(path)
    async with running(q):
        await settle(q, [V4[5]])
    new = read_serial(path, ORIGIN)
    assert new is not None and new < 4294967290 and serial_gt(new, 4294967290)


async def test_unreadable_old_file_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "z"
    path.write_text("this is not a zone\n")
    path.chmod(0o640)
    p = make(path, clock=T0)
    async with running(p):
        await settle(p, [V4[0]])
    assert read_serial(path, ORIGIN) == T0
    assert "cannot read the old serial" in caplog.text
    assert os.stat(path).st_mode & 0o777 == 0o640  # the mode of the file it replaced


async def test_readers_never_see_a_partial_file_and_no_temp_file_stays(tmp_path: Path) -> None:
    path = tmp_path / "z"
    big = [ipaddress.IPv6Address(f"2001:db8:2::{i:x}") for i in range(1, 200)]
    p = make(path, clock=T0)
    stop = threading.Event()
    seen: list[int] = []

    def reader() -> None:  # reads as fast as it can while the files are replaced
        while not stop.is_set():
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            seen.append(len(text))
            assert text.startswith("; zone static.test.") and text.endswith("\n"), text[-80:]
            assert text.count(" IN SOA ") == 1
            stop.wait(0.0002)  # lets the writer have the GIL

    thread = asyncio.to_thread(reader)
    task = asyncio.ensure_future(thread)
    try:
        async with running(p):
            for i in range(20):
                await settle(p, big[: 50 + i * 5] if i % 2 else [V4[i]])
    finally:
        stop.set()
        await task  # re-raises a failed assertion of the reader
    assert seen
    assert leftovers(tmp_path) == []
    assert sorted(f.name for f in tmp_path.iterdir()) == ["z"]


async def test_failed_write_removes_the_temp_file_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "z"
    atomic_write(path, zone_text("static.test.", serial=7))
    before = path.read_text()
    failures = [2]
    real_replace = os.replace

    def flaky_replace(src: str, dst: Path) -> None:
        if failures[0] > 0:
            failures[0] -= 1
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr("rais.dns.zonefile.os.replace", flaky_replace)
    on_failure: list[tuple[str, list[str]]] = []

    def hook(ok: bool, detail: str) -> None:
        if not ok:
            on_failure.append((path.read_text(), leftovers(tmp_path)))

    p = make(path, clock=5, on_result=hook)  # behind serial 7: the serial comes from the file
    async with running(p):
        p.publish([V4[0]])
        assert await eventually(lambda: p.settled)
    assert on_failure == [(before, []), (before, [])]  # old file intact, temp file gone
    assert dict(p.stats.failed) == {"write": 2}
    assert leftovers(tmp_path) == []
    assert read_serial(path, ORIGIN) == 8
    assert (p.stats.sent, p.stats.ok) == (3, 1)


async def test_reload_failures_retry_the_command_without_rewriting(tmp_path: Path) -> None:
    path = tmp_path / "z"
    count = tmp_path / "count"
    command = f'n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}; [ "$n" -ge 2 ]'
    results: list[tuple[bool, str]] = []
    p = make(
        path,
        clock=T0,
        reload_command=command,
        on_result=lambda ok, detail: results.append((ok, detail)),
    )
    async with running(p):
        await settle(p, [V4[0]])
    assert count.read_text().strip() == "3"
    assert dict(p.stats.failed) == {"reload-failed": 2}
    assert read_serial(path, ORIGIN) == T0  # written once: a rewrite would make it T0 + 1
    assert [ok for ok, _ in results] == [False, False, True]
    assert results[-1][1] == f"serial {T0}, written before, reloaded"


async def test_reload_timeout_kills_the_command(tmp_path: Path) -> None:
    path = tmp_path / "z"
    pidfile = tmp_path / "pid"
    p = make(
        path, clock=T0, reload_command=f"sleep 30 & echo $! > {pidfile}; wait", reload_timeout=0.1
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with running(p):
        p.publish([V4[0]])
        assert await eventually(lambda: p.stats.failed["reload-timeout"] >= 1)
    assert loop.time() - start < 2
    pid = int(pidfile.read_text())

    def gone() -> bool:  # killed with its process group (a zombie counts as gone)
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
        except (FileNotFoundError, ProcessLookupError):
            return True

    assert await eventually(gone)


@pytest.mark.parametrize(
    "kw", [{"ttl": -1}, {"ns": []}, {"name": "x.other."}, {"reload_timeout": 0}, {"expire": 2**31}]
)
def test_bad_arguments_are_rejected(tmp_path: Path, kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make(tmp_path / "z", **kw)


async def test_bind_serves_the_new_addresses_after_rndc_reload(bind: BindServer) -> None:
    p = make(bind.static_zone_file, reload_command=bind.reload_command())
    name = "www.static.test."
    async with running(p):
        p.publish([V4[0], V6[0]])
        await wait_addresses(bind.server, name, {V4[0], V6[0]})
        first = p.serial
        p.publish([V4[1], V6[0], V6[1]])
        await wait_addresses(bind.server, name, {V4[1], V6[0], V6[1]})
        p.publish([])
        await wait_addresses(bind.server, name, set())
        assert await eventually(lambda: p.settled)
    assert first is not None and p.serial is not None and serial_gt(p.serial, first)
    assert p.stats.failed_total == 0 and p.stats.ok == 3
    rcode, _ = await lookup(bind.server, name)
    assert rcode == 3  # NXDOMAIN: nothing else at www
    assert leftovers(bind.directory) == []


# -- the BIND helper itself ------------------------------------------------------------


def test_missing_bind_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bind_helper, "find_tool", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="named and rndc not found"):
        bind_helper.require_bind()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        bind_helper.require_bind()


def test_failed_start_cleans_up() -> None:
    server = bind_helper.BindServer.create()
    server.named = "/bin/false"
    with pytest.raises(RuntimeError, match="named exited with 1"):
        server.start()
    assert not server.directory.exists()


async def test_per_host_names_are_written_and_a_change_of_them_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "z"
    host = dns.name.from_text("host-192-0-2-1.www.static.test.")
    p = make(path, clock=T0)
    async with running(p):
        p.publish([V4[0], V4[1]], {host: [V4[0]]})
        assert await eventually(lambda: p.settled)
        p.publish([V4[0], V4[1]], {})  # the same addresses, the host name gone
        assert await eventually(lambda: p.settled)
        first = dns.zone.from_text(p.render(p.zone_content(V4[:2], {host: [V4[0]]}), 1))
    zone = dns.zone.from_file(str(path), origin=ORIGIN, relativize=False)
    assert zone.get_rdataset(host, dns.rdatatype.A) is None
    assert read_serial(path, ORIGIN) == T0 + 1  # rewritten
    a = first.get_rdataset(host, dns.rdatatype.A)
    assert a is not None and [r.to_text() for r in a] == ["198.51.100.1"] and a.ttl == 30
    with pytest.raises(ValueError, match="not a name below"):
        p.publish([], {dns.name.from_text("other.static.test."): [V4[0]]})
