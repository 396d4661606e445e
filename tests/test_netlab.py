"""The lab's own helpers, where a test's precondition depends on them."""

from __future__ import annotations

import time
from ipaddress import IPv6Address

import pytest
from netlab import Lab, LabFactory, lab_fixture  # noqa: F401


@pytest.mark.e2e
def test_reaches_answers_for_a_host_and_gives_up_on_nobody(make_lab: LabFactory) -> None:
    net: Lab = make_lab(1, client=True)
    assert net.reaches("c", net.ipv6("h1"))
    start = time.monotonic()
    assert not net.reaches("c", IPv6Address("2001:db8::99"), timeout=1.5)
    assert 1.5 <= time.monotonic() - start < 5.0
