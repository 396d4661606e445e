"""Service addresses: the in-memory fake (no root) and the netlink driver in a
namespace lab, held to the same contract."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv6Address

import netlab
import pytest
from netlab import Lab, LabFactory, lab_fixture  # noqa: F401

from rais.drivers.base import Addresses
from rais.drivers.fake_addresses import AddressCall, FakeAddresses
from rais.drivers.netlink import AddressError, NetlinkAddresses

V4 = IPv4Address("198.51.100.7")
V6 = IPv6Address("2001:db8:1::7")


async def contract(addresses: Addresses, interface: str) -> None:
    """What every ``Addresses`` must do (base.py): idempotent add and remove,
    present() listing with prefix lengths, AddressError naming an unknown
    interface."""
    for _ in range(2):
        await addresses.add(interface, V4, 24)
        await addresses.add(interface, V6, 64)
    present = await addresses.present(interface)
    assert (V4, 24) in present and (V6, 64) in present
    assert len([ip for ip, _ in present if ip in (V4, V6)]) == 2
    for _ in range(2):
        await addresses.remove(interface, V4, 24)
        await addresses.remove(interface, V6, 64)
    assert not {ip for ip, _ in await addresses.present(interface)} & {V4, V6}

    # removing with another prefix length still removes the address
    await addresses.add(interface, V4, 24)
    await addresses.remove(interface, V4, 32)
    assert V4 not in {ip for ip, _ in await addresses.present(interface)}

    with pytest.raises(AddressError, match=r"'nope0'.*not found"):
        await addresses.add("nope0", V4, 24)
    with pytest.raises(AddressError, match=r"'nope0'.*not found"):
        await addresses.remove("nope0", V4, 24)
    with pytest.raises(AddressError, match=r"'nope0'.*not found"):
        await addresses.present("nope0")


async def secondaries(addresses: Addresses, interface: str) -> None:
    """After ``prepare``, removing the first IPv4 address of a subnet (the
    kernel's primary) leaves the others of that subnet in place."""
    a, b, c = (IPv4Address(f"198.51.100.{n}") for n in (21, 22, 23))
    await addresses.prepare(interface)
    for ip in (a, b, c):
        await addresses.add(interface, ip, 24)
    await addresses.remove(interface, a, 24)
    left = {ip for ip, _ in await addresses.present(interface)}
    assert {b, c} <= left and a not in left
    for ip in (b, c):
        await addresses.remove(interface, ip, 24)


# -- the fake -------------------------------------------------------------------


async def test_fake_contract() -> None:
    fake = FakeAddresses(interfaces=["eth0"])
    await contract(fake, "eth0")
    assert fake.calls[0] == AddressCall("add", "eth0", V4, 24)
    assert fake.calls[-1] == AddressCall("present", "nope0")
    await secondaries(fake, "eth0")


async def test_fake_any_interface_and_injected_failures() -> None:
    fake = FakeAddresses()
    assert fake.snapshot("demo0") == set()
    fake.fail_next_add(V4)
    with pytest.raises(AddressError, match="injected"):
        await fake.add("demo0", V4, 24)
    assert fake.snapshot("demo0") == set()
    await fake.add("demo0", V4, 24)
    assert fake.snapshot("demo0") == {(V4, 24)} and fake.holds("demo0", V4)
    fake.fail_next_remove(V4, OSError("boom"))
    with pytest.raises(OSError, match="boom"):
        await fake.remove("demo0", V4, 24)
    assert fake.holds("demo0", V4)
    await fake.remove("demo0", V4, 24)
    assert [c.op for c in fake.calls] == ["add", "add", "remove", "remove"]
    fake.close()
    assert fake.closed


# -- the lab helpers ---------------------------------------------------------------


def test_require_root_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: skip. Root with something missing: skip, but fail with CI=true."""
    monkeypatch.setattr(netlab, "_lab_problem", lambda: "iproute2 'ip' not found")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.skip.Exception, match="root"):
        netlab.require_root()
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        netlab.require_root()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="iproute2"):
        netlab.require_root()
    monkeypatch.setattr(netlab, "_lab_problem", lambda: None)
    netlab.require_root()


@pytest.mark.e2e
def test_lab_cleans_up_after_failure_and_stale_runs() -> None:
    netlab.require_root()
    proc = subprocess.Popen(["true"])
    proc.wait()
    stale = f"{netlab.PREFIX}-{proc.pid}-1-h1"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    made: list[str] = []
    with pytest.raises(RuntimeError, match="inside the lab"), netlab.lab(2, client=True) as net:
        assert stale not in netlab.namespaces()
        made = list(net.made)
        assert set(made) == {net.ns(h) for h in ("br", "h1", "h2", "c")}
        assert set(made) <= set(netlab.namespaces())
        raise RuntimeError("inside the lab")
    assert not set(made) & set(netlab.namespaces())


# -- the netlink driver in a lab -------------------------------------------------------


@pytest.fixture
async def h1(make_lab: LabFactory) -> AsyncIterator[tuple[Lab, NetlinkAddresses]]:
    net = make_lab(1)
    addresses = NetlinkAddresses(netns=net.ns("h1"))
    yield net, addresses
    addresses.close()


@pytest.mark.e2e
async def test_netlink_contract(h1: tuple[Lab, NetlinkAddresses]) -> None:
    net, addresses = h1
    await contract(addresses, "eth0")
    assert not net.addresses("h1") & {V4, V6}
    await secondaries(addresses, "eth0")
    value = net.run("h1", "cat", "/proc/sys/net/ipv4/conf/eth0/promote_secondaries").stdout
    assert value.strip() == "1"
    with pytest.raises(AddressError, match="nope0"):
        await addresses.prepare("nope0")


@pytest.mark.e2e
async def test_add_remove_seen_by_iproute2(h1: tuple[Lab, NetlinkAddresses]) -> None:
    net, addresses = h1
    for address, prefixlen in ((V4, 24), (V6, 64)):
        await addresses.add("eth0", address, prefixlen)
        assert address in net.addresses("h1")
        await addresses.add("eth0", address, prefixlen)
    present = await addresses.present("eth0")
    assert set(present) >= {
        (net.ipv4("h1"), 24),
        (net.ipv6("h1"), 64),
        (V4, 24),
        (V6, 64),
    }
    assert any(ip.version == 6 and ip.is_link_local for ip, _ in present)
    for address, prefixlen in ((V4, 24), (V6, 64)):
        await addresses.remove("eth0", address, prefixlen)
        assert address not in net.addresses("h1")
        await addresses.remove("eth0", address, prefixlen)
    # the lab's own addresses were left alone
    assert {net.ipv4("h1"), net.ipv6("h1")} <= net.addresses("h1")


@pytest.mark.e2e
async def test_ipv6_not_tentative(h1: tuple[Lab, NetlinkAddresses]) -> None:
    """Added without DAD: usable at once. Control: the same interface runs DAD
    for an address added the ordinary way."""
    net, addresses = h1
    await addresses.add("eth0", V6, 64)
    info = {i["local"]: i for i in net.address_info("h1")}[str(V6)]
    assert info.get("nodad") and not info.get("tentative")
    net.ip("h1", "addr", "add", "2001:db8:1::8/64", "dev", "eth0")
    control = {i["local"]: i for i in net.address_info("h1")}["2001:db8:1::8"]
    assert control.get("tentative")


@pytest.mark.e2e
async def test_concurrent_calls_and_reopen(h1: tuple[Lab, NetlinkAddresses]) -> None:
    net, addresses = h1
    many = [IPv4Address(f"198.51.100.{i}") for i in range(20, 40)]
    await asyncio.gather(*(addresses.add("eth0", ip, 24) for ip in many))
    assert set(many) <= net.addresses("h1")
    addresses.close()
    addresses.close()
    await asyncio.gather(*(addresses.remove("eth0", ip, 24) for ip in many))
    assert not set(many) & net.addresses("h1")


@pytest.mark.e2e
async def test_unknown_namespace(make_lab: LabFactory) -> None:
    net = make_lab(1)
    missing = net.ns("missing")
    addresses = NetlinkAddresses(netns=missing)
    with pytest.raises(AddressError, match=f"namespace '{missing}' not found"):
        await addresses.add("eth0", V4, 24)
    addresses.close()
    assert missing not in netlab.namespaces()


@pytest.mark.e2e
async def test_add_latency(h1: tuple[Lab, NetlinkAddresses]) -> None:
    """Not a pass/fail figure: printed for the record (``pytest -s``)."""
    _, addresses = h1
    start = time.perf_counter()
    await addresses.present("eth0")
    first = time.perf_counter() - start
    adds, removes = [], []
    for i in range(20):
        ip = IPv6Address(f"2001:db8:2::{i + 1}")
        start = time.perf_counter()
        await addresses.add("eth0", ip, 64)
        adds.append(time.perf_counter() - start)
        start = time.perf_counter()
        await addresses.remove("eth0", ip, 64)
        removes.append(time.perf_counter() - start)
    print(
        f"\nfirst call (opens the socket in the namespace) {first * 1e3:.1f} ms; "
        f"add median {statistics.median(adds) * 1e3:.2f} ms (max {max(adds) * 1e3:.2f}), "
        f"remove median {statistics.median(removes) * 1e3:.2f} ms"
    )
