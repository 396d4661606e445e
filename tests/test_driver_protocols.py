"""Every driver and its fake is a ``rais.drivers.base`` protocol (checked by
mypy through the annotated assignments) and has what the runtime reads."""

from __future__ import annotations

import ipaddress

from rais.drivers.announce import LinkAnnouncer
from rais.drivers.base import Addresses, Announcer, Arbiter, Scripts, Transport
from rais.drivers.etcd import EtcdClient
from rais.drivers.fake_addresses import FakeAddresses, FakeAnnouncer
from rais.drivers.fake_etcd import FakeEtcd
from rais.drivers.fake_transport import FakeNetwork
from rais.drivers.netlink import NetlinkAddresses
from rais.drivers.scripts import FakeScripts, ScriptRunner
from rais.drivers.transport import UdpTransport

GROUP = ipaddress.ip_address("239.192.0.1")
CONTROL = (ipaddress.ip_address("192.0.2.11"),)


def test_transports_are_transports_with_counters() -> None:
    real: Transport = UdpTransport(CONTROL, GROUP, 7401)
    fake: Transport = FakeNetwork().transport("a")
    for transport in (real, fake):
        assert dict(transport.counters) == {}
        transport.close()


def test_addresses_announcers_and_scripts_are_drivers() -> None:
    addresses: list[Addresses] = [NetlinkAddresses(), FakeAddresses()]
    announcers: list[Announcer] = [LinkAnnouncer(), FakeAnnouncer()]
    scripts: list[Scripts] = [ScriptRunner(1.0), FakeScripts()]
    assert len(addresses) == len(announcers) == len(scripts) == 2


async def test_the_etcd_client_and_its_fake_are_arbiters() -> None:
    arbiters: list[Arbiter] = [EtcdClient(["http://127.0.0.1:1"]), FakeEtcd().client()]
    for arbiter in arbiters:
        await arbiter.close()
    assert len(arbiters) == 2
