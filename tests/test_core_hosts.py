"""rais.core.hosts: fit, eligible and can-lead, and the views that read them."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools

import pytest

from rais.core.addr import pack
from rais.core.hosts import can_lead, eligible, fit
from rais.core.messages import AddrState, HostEntry
from rais.dns.views import view
from rais.sim.engine import SimHost

HOST = pack("192.0.2.1")
SERVICE = pack("198.51.100.1")
FLAGS = list(itertools.product([False, True], repeat=5))


def entry(ok: bool, quiesced: bool, observer: bool, leaving: bool, settled: bool) -> HostEntry:
    return HostEntry(
        id=HOST,
        control=(HOST,),
        ok=ok,
        quiesced=quiesced,
        observer=observer,
        leaving=leaving,
        settled=settled,
        load=0,
        capacity=0,
        preferred=SERVICE,
        prefixlen=24,
        served=((SERVICE, AddrState.ONLINE),),
    )


@pytest.mark.parametrize(("ok", "quiesced", "observer", "leaving", "settled"), FLAGS)
def test_the_predicates_read_the_entry_flags(
    ok: bool, quiesced: bool, observer: bool, leaving: bool, settled: bool
) -> None:
    e = entry(ok, quiesced, observer, leaving, settled)
    assert fit(e) == (ok and not quiesced and not leaving)
    assert eligible(e) == (fit(e) and not observer)
    assert can_lead(e) == (settled and not observer and not leaving)


@pytest.mark.parametrize(("ok", "quiesced", "observer", "live"), [f[:4] for f in FLAGS[::2]])
def test_the_dns_view_advertises_an_eligible_live_host_serving_its_address(
    ok: bool, quiesced: bool, observer: bool, live: bool
) -> None:
    e = entry(ok, quiesced, observer, False, True)
    v = view(e, live)
    assert v.leaving == (not live)
    assert v.eligible == (live and eligible(e))


@pytest.mark.parametrize(("ok", "quiesced", "observer", "up"), [f[:4] for f in FLAGS[::2]])
def test_the_simulator_judges_its_ground_truth_with_the_same_predicates(
    ok: bool, quiesced: bool, observer: bool, up: bool
) -> None:
    h = SimHost(0, HOST, (HOST,), SERVICE, observer, up=up, test_ok=ok, quiesced=quiesced)
    assert fit(h) == (up and ok and not quiesced)
    assert eligible(h) == (up and ok and not quiesced and not observer)
    # a link down (or in its hold-down) is as not OK as a failed test
    linked = SimHost(0, HOST, (HOST,), SERVICE, observer, up=up, link_fit=ok, quiesced=quiesced)
    assert (fit(linked), eligible(linked)) == (fit(h), eligible(h))


def test_a_view_not_serving_its_preferred_address_is_not_advertised() -> None:
    e = entry(True, False, False, False, True)
    served = dataclasses.replace(e, served=())
    assert eligible(served)
    assert not view(served, True).eligible
    assert view(e, True).preferred == ipaddress.ip_address("198.51.100.1")
