"""The fast refresh of an address's kernel lifetime (rais.drivers.nlrefresh):
one RTM_NEWADDR without an acknowledgement, in a namespace lab (root), checked
with iproute2. The driver runs in a child process inside the host namespace
(its socket and interface index belong to the namespace it was made in)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from netlab import Lab, LabFactory, lab_fixture  # noqa: F401

pytestmark = pytest.mark.e2e

SCRIPT = textwrap.dedent(
    """
    import asyncio, ipaddress, json, subprocess, sys
    from rais.drivers.nlrefresh import FastRefresh

    def lifetimes(address):
        out = json.loads(subprocess.run(["ip", "-j", "addr", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout)
        for link in out:
            for a in link["addr_info"]:
                if a["local"] == address:
                    return [a["valid_life_time"], a["preferred_life_time"]]
        return None

    async def main():
        fast = FastRefresh()
        v4, v6 = ipaddress.ip_address("198.51.100.9"), ipaddress.ip_address("2001:db8:5::9")
        r = {}
        r["add"] = fast.refresh("eth0", v4, 24, 3)
        r["after_add"] = lifetimes("198.51.100.9")
        r["refresh"] = fast.refresh("eth0", v4, 24, 7)
        r["after_refresh"] = lifetimes("198.51.100.9")
        r["v6"] = fast.refresh("eth0", v6, 64, 5)
        r["after_v6"] = lifetimes("2001:db8:5::9")
        r["no_such_interface"] = fast.refresh("nope0", v4, 24, 3)
        r["bad_prefix"] = fast.refresh("eth0", v4, 33, 3)  # the kernel refuses: EINVAL
        await asyncio.sleep(0.2)  # its error answer arrives through the event loop
        r["failed"] = sorted(map(str, fast.failed))
        r["then"] = fast.refresh("eth0", v4, 33, 3)  # once the slow way
        r["and_then"] = fast.refresh("eth0", v4, 24, 3)
        fast.close()
        print(json.dumps(r))

    asyncio.run(main())
    """
)


def test_refresh_sets_lifetimes_and_reports_refusals(make_lab: LabFactory) -> None:
    net: Lab = make_lab(1)
    out = subprocess.run(
        ["ip", "netns", "exec", net.ns("h1"), sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    r: dict[str, Any] = json.loads(out.stdout)
    assert r["add"] is True and r["after_add"] == [3, 3]
    assert r["refresh"] is True and r["after_refresh"] == [7, 7]
    assert r["v6"] is True and r["after_v6"] == [5, 5]
    assert r["no_such_interface"] is False
    assert r["bad_prefix"] is True  # sent: the refusal comes later
    assert r["failed"] == ["198.51.100.9"]
    assert r["then"] is False and r["and_then"] is True
