"""DNS on real hosts (issue 5): a real BIND 9 in the client namespace takes
RFC 2136 updates from the group's leader; an observer host runs the embedded
server. Both are asked from the client namespace, with dig and with dnspython.

h1 and h2 prefer 198.51.100.1 and .2, h3 is the hot spare, h4 an observer
with ``[dns] listen``. Each host's load comes from a command load object that
reads a file the test writes ("LOAD 1000"); the water marks are 800 / 600.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bind import BindServer
from netlab import Lab, LabFactory, lab_fixture, wait_for  # noqa: F401

pytestmark = pytest.mark.e2e

VIP = {"h1": "198.51.100.1", "h2": "198.51.100.2"}
NAME = "www.rais.test"
EMBEDDED = ("192.0.2.14", 5353)

DNSPYTHON = r"""
import sys, dns.message, dns.query, dns.rdatatype
q = dns.message.make_query(sys.argv[3], dns.rdatatype.A)
r = dns.query.udp(q, sys.argv[1], port=int(sys.argv[2]), timeout=1.0)
print(" ".join(sorted(rd.address for rrset in r.answer for rd in rrset)))
"""


def hosts(net: Lab) -> list[str]:
    return [m for m in net.members() if m.startswith("h")]


class Site:
    def __init__(self, net: Lab, tmp: Path, bind: BindServer) -> None:
        self.net = net
        self.tmp = tmp
        self.bind = bind
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        (tmp / "key").write_text("e2e-secret-key\n")
        (tmp / "tsig").write_text(bind.tsig_secret + "\n")
        for h in hosts(net):
            self.set_load(h, 100)
            if h == "h4":
                role = "observer = true\n"
            else:
                role = f'preferred = "{VIP[h]}/24"\n' if h in VIP else ""
            top = f'[dns]\nlisten = "{EMBEDDED[0]}:{EMBEDDED[1]}"\n' if h == "h4" else ""
            (tmp / f"{h}.toml").write_text(
                f'[host]\ncontrol = ["{net.ipv4(h)}"]\nstate_dir = "{tmp / h}"\n'
                f'[auth]\nkey_file = "{tmp / "key"}"\n{top}'
                f'[load.file]\nkind = "command"\ncommand = "cat {tmp / (h + "-load")}"\n'
                f'interval = "200ms"\n'
                f'[[group]]\nname = "www"\naddress = "239.192.0.1:7401"\ninterface = "eth0"\n'
                f'{role}heartbeat = "100ms"\ntimeout = "300ms"\nloads = ["file"]\n'
                f'[group.dns]\nname = "{NAME}"\nhigh = 800\nlow = 600\n'
                f"[group.dns.update]\n"
                f'server = "{bind.host}:{bind.port}"\nkey_name = "{bind.key_name}"\n'
                f'key_file = "{tmp / "tsig"}"\n'
            )

    def set_load(self, h: str, load: int) -> None:
        (self.tmp / f"{h}-load").write_text(f"{load} 1000\n")

    def start(self, h: str) -> None:
        argv = ["ip", "netns", "exec", self.net.ns(h), sys.executable, "-m", "rais", "agent"]
        argv += ["--config", str(self.tmp / f"{h}.toml")]
        with open(self.tmp / f"{h}.log", "ab") as log:
            self.procs[h] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def log(self, h: str) -> str:
        return (self.tmp / f"{h}.log").read_text(errors="replace")

    def dig(self, server: tuple[str, int]) -> set[str]:
        out = self.net.run(
            "c",
            *("dig", "+short", "+tries=1", "+time=1", f"@{server[0]}", "-p", str(server[1])),
            *(NAME, "A"),
            check=False,
        ).stdout
        return {line.strip() for line in out.splitlines() if line.strip()}

    def dnspython(self, server: tuple[str, int]) -> set[str]:
        out = self.net.run(
            "c", sys.executable, "-c", DNSPYTHON, server[0], str(server[1]), NAME, check=False
        ).stdout
        return set(out.split())

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def site(make_lab: LabFactory, tmp_path: Path) -> Iterator[Site]:
    net = make_lab(4, client=True)
    bind = BindServer.create(netns=net.ns("c"), host="192.0.2.200")
    bind.start()
    s = Site(net, tmp_path, bind)
    try:
        for h in hosts(net):
            s.start(h)
        yield s
    finally:
        s.stop_all()
        bind.stop()


async def until(s: Site, want: set[str], limit: float = 5.0) -> float:
    """Seconds until BIND answers exactly ``want`` (fails after ``limit``)."""
    start = time.monotonic()
    ok, _ = await wait_for(lambda: s.dig(s.bind.server) == want, limit, interval=0.01)
    took = time.monotonic() - start
    assert ok, f"BIND says {s.dig(s.bind.server)}, want {want}:\n{s.log('h1')[-3000:]}"
    return took


async def test_bind_and_embedded_follow_deaths_and_load(site: Site) -> None:
    both = set(VIP.values())
    await until(site, both, 15.0)
    ok, _ = await wait_for(lambda: site.dig(EMBEDDED) == both, 5.0)
    assert ok, (site.dig(EMBEDDED), site.log("h4")[-2000:])
    assert site.dnspython(EMBEDDED) == both
    assert site.dnspython(site.bind.server) == both

    # h2 dies: its address leaves the answer (the spare's orphan is not advertised)
    site.net.ip("h2", "link", "set", "eth0", "down")
    site.procs["h2"].send_signal(signal.SIGKILL)
    took = await until(site, {VIP["h1"]})
    print(f"host killed -> gone from BIND after {took:.2f}s")
    assert took < 1.0, took
    ok, _ = await wait_for(lambda: site.dig(EMBEDDED) == {VIP["h1"]}, 1.0)
    assert ok, site.dig(EMBEDDED)

    # h2 comes back: its address returns
    site.procs["h2"].wait(5)
    site.net.ip("h2", "link", "set", "eth0", "up")
    site.start("h2")
    took = await until(site, both, 10.0)
    print(f"host back -> in BIND after {took:.2f}s")

    # h1's load rises above the high mark: out; between the marks: still out;
    # below the low mark: back
    site.set_load("h1", 900)
    took = await until(site, {VIP["h2"]})
    print(f"load 900/1000 -> shed from BIND after {took:.2f}s")
    ok, _ = await wait_for(lambda: site.dig(EMBEDDED) == {VIP["h2"]}, 1.0)
    assert ok, site.dig(EMBEDDED)
    site.set_load("h1", 700)
    await until(site, {VIP["h2"]})
    stays, _ = await wait_for(lambda: site.dig(site.bind.server) != {VIP["h2"]}, 1.0)
    assert not stays, "a load between the marks brought it back"
    site.set_load("h1", 500)
    took = await until(site, both)
    print(f"load 500/1000 -> back in BIND after {took:.2f}s")
    assert site.dnspython(EMBEDDED) == both
