"""Test objects, load objects and operator moves on real hosts (issue 4).

Three host namespaces run ``rais agent`` with two groups each: "www" (tested
by an HTTP check of a server on 127.0.0.1:8080 inside the host's namespace,
failback after a delay, CPU load object) and "db" (tested by a maintenance
file). h3 is the hot spare of both. A watcher samples ``ip addr`` all along to
prove that the other group's addresses never move.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from netlab import Lab, LabFactory, lab_fixture, wait_for  # noqa: F401
from traffic import AddrMonitor

pytestmark = pytest.mark.e2e

WWW = {"h1": "198.51.100.1", "h2": "198.51.100.2"}
DB = {"h1": "198.51.100.11", "h2": "198.51.100.12"}
INTERVAL, RISE, FALL = 0.2, 3, 2
DELAY = 1.0  # failback_delay of www


def hosts(net: Lab) -> list[str]:
    return [m for m in net.members() if m.startswith("h")]


def holders(net: Lab, vip: str) -> list[str]:
    ip = ipaddress.ip_address(vip)
    return [h for h in hosts(net) if ip in net.addresses(h)]


class Site:
    def __init__(self, net: Lab, tmp: Path) -> None:
        self.net = net
        self.tmp = tmp
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.web: dict[str, subprocess.Popen[bytes]] = {}
        (tmp / "key").write_text("e2e-secret-key\n")
        (tmp / "www").mkdir()
        (tmp / "www" / "health").write_text("ok\n")
        for h in hosts(net):
            www = f'preferred = "{WWW[h]}/24"\n' if h in WWW else ""
            db = f'preferred = "{DB[h]}/24"\n' if h in DB else ""
            (tmp / f"{h}.toml").write_text(
                f'[host]\ncontrol = ["{net.ipv4(h)}"]\nstate_dir = "{tmp / h}"\n'
                f'[auth]\nkey_file = "{tmp / "key"}"\n'
                f'[test.web]\nkind = "http"\nurl = "http://127.0.0.1:8080/health"\n'
                f'interval = "{INTERVAL}s"\ntimeout = "{INTERVAL}s"\nrise = {RISE}\nfall = {FALL}\n'
                f'[test.maint]\nkind = "file"\npath = "{tmp / (h + "-down")}"\n'
                f'interval = "{INTERVAL}s"\ntimeout = "{INTERVAL}s"\nrise = 1\nfall = 1\n'
                f'[load.cpu]\nkind = "cpu"\ninterval = "500ms"\n'
                f'[[group]]\nname = "www"\naddress = "239.192.0.1:7401"\ninterface = "eth0"\n'
                f'{www}heartbeat = "100ms"\ntimeout = "300ms"\ntests = ["web"]\n'
                f'loads = ["cpu"]\nfailback_delay = "{DELAY}s"\n'
                f'[[group]]\nname = "db"\naddress = "239.192.0.2:7402"\ninterface = "eth0"\n'
                f'{db}heartbeat = "100ms"\ntimeout = "300ms"\ntests = ["maint"]\n'
            )

    def start_agent(self, h: str) -> None:
        argv = [*self._exec(h), "-m", "rais", "agent", "--config", str(self.tmp / f"{h}.toml")]
        with open(self.tmp / f"{h}.log", "ab") as log:
            self.agents[h] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def start_web(self, h: str) -> None:
        argv = [*self._exec(h), "-m", "http.server", "8080", "--bind", "127.0.0.1"]
        argv += ["--directory", str(self.tmp / "www")]
        self.web[h] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_web(self, h: str) -> None:
        self.web[h].send_signal(signal.SIGKILL)
        self.web[h].wait(5)

    def _exec(self, h: str) -> list[str]:
        return ["ip", "netns", "exec", self.net.ns(h), sys.executable]

    def cli(self, h: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._exec(h), "-m", "rais", *argv], capture_output=True, text=True, timeout=10
        )

    def status(self, h: str, group: str) -> dict[str, Any]:
        data = json.loads(self.cli(h, "status", "--json").stdout)
        return next(g for g in data["groups"] if g["name"] == group)

    def log(self, h: str) -> str:
        return (self.tmp / f"{h}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in [*self.agents.values(), *self.web.values()]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
async def site(make_lab: LabFactory, tmp_path: Path) -> AsyncIterator[Site]:
    net = make_lab(3)
    s = Site(net, tmp_path)
    try:
        for h in hosts(net):
            s.start_web(h)
            s.start_agent(h)
        yield s
    finally:
        s.stop_all()


async def settle(s: Site) -> None:
    def done() -> bool:
        return all(holders(s.net, v) == [h] for m in (WWW, DB) for h, v in m.items())

    ok, took = await wait_for(done, 15.0)
    assert ok, f"not settled after {took:.1f}s:\n{s.log('h1')}\n{s.log('h2')}"


class Watch:
    """Samples the holders of some addresses until stopped."""

    def __init__(self, net: Lab, vips: list[str]) -> None:
        self.samples: list[dict[str, list[str]]] = []
        self._task = asyncio.create_task(self._run(net, vips))

    async def _run(self, net: Lab, vips: list[str]) -> None:
        while True:
            self.samples.append({v: holders(net, v) for v in vips})
            await asyncio.sleep(0.01)

    async def stop(self) -> list[dict[str, list[str]]]:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.samples


async def test_http_test_moves_only_its_group_and_brings_it_back(site: Site) -> None:
    net = site.net
    await settle(site)
    watch = Watch(net, [DB["h1"], DB["h2"], WWW["h2"]])
    start = time.monotonic()
    site.stop_web("h1")
    moved, took = await wait_for(lambda: holders(net, WWW["h1"]) == ["h3"], 5.0)
    assert moved, f"{holders(net, WWW['h1'])}\n{site.log('h1')}"
    print(f"http test failed -> address on the spare after {time.monotonic() - start:.2f}s")
    # fall x interval to notice, then release before acquire
    assert took >= (FALL - 1) * INTERVAL
    g = site.status("h1", "www")
    assert not g["ok"] and g["tests"][0]["name"] == "web" and g["tests"][0]["ok"] is False
    assert site.status("h1", "db")["ok"]  # the other group on the same host is untouched
    assert "FAILING" in site.cli("h1", "status").stdout

    restart = time.monotonic()
    site.start_web("h1")
    back, _ = await wait_for(lambda: holders(net, WWW["h1"]) == ["h1"], 10.0)
    took = time.monotonic() - restart
    assert back, holders(net, WWW["h1"])
    print(f"http test passing again -> address back after {took:.2f}s")
    # rise x interval of passes, then failback_delay, then release before acquire
    assert took >= (RISE - 1) * INTERVAL + DELAY, took
    assert took < RISE * INTERVAL + DELAY + 2.0, took
    samples = await watch.stop()
    assert all(
        s[DB["h1"]] == ["h1"] and s[DB["h2"]] == ["h2"] and s[WWW["h2"]] == ["h2"] for s in samples
    ), [s for s in samples if s[DB["h1"]] != ["h1"]][:3]
    print(f"{len(samples)} samples: db and the other www address never moved")
    events = site.log("h1")
    assert events.count("test-failed") == 1 and events.count("test-recovered") >= 1


async def test_maintenance_file_moves_db_only(site: Site) -> None:
    net = site.net
    await settle(site)
    watch = Watch(net, [WWW["h1"], WWW["h2"], DB["h1"]])
    flag = site.tmp / "h2-down"
    flag.write_text("")
    moved, took = await wait_for(lambda: holders(net, DB["h2"]) == ["h3"], 5.0)
    assert moved, holders(net, DB["h2"])
    print(f"maintenance flag -> db address on the spare after {took:.2f}s")
    flag.unlink()
    back, took = await wait_for(lambda: holders(net, DB["h2"]) == ["h2"], 5.0)
    assert back, holders(net, DB["h2"])
    print(f"flag removed -> back after {took:.2f}s")
    samples = await watch.stop()
    assert all(
        s[WWW["h1"]] == ["h1"] and s[WWW["h2"]] == ["h2"] and s[DB["h1"]] == ["h1"] for s in samples
    )


async def test_move_and_failback_commands(site: Site) -> None:
    net = site.net
    await settle(site)
    # Every change, stamped by ``ip`` itself: reading each host's addresses in
    # turn could see the old holder before its release and the new one after
    # its add (a false overlap), or miss a short real one.
    monitor = AddrMonitor(net, [f"h{n}" for n in (1, 2, 3)], stamped=True)
    monitor.start()

    def on(h: str) -> bool:
        return holders(net, WWW["h2"]) == [h]

    # asked on the spare: pin h2's www address to it
    out = site.cli("h3", "move", WWW["h2"], str(net.ipv4("h3")))
    assert out.returncode == 0, out.stderr
    assert f"{WWW['h2']} pinned to {net.ipv4('h3')}" in out.stdout
    moved, _ = await wait_for(lambda: on("h3"), 5.0, interval=0.005)
    assert moved, holders(net, WWW["h2"])
    await asyncio.sleep(DELAY + 1.0)
    assert holders(net, WWW["h2"]) == ["h3"]  # pinned, no failback
    out = site.cli("h1", "failback", WWW["h2"])
    assert out.returncode == 0, out.stderr
    back, _ = await wait_for(lambda: on("h2"), 5.0, interval=0.005)
    assert back, holders(net, WWW["h2"])
    await asyncio.sleep(0.2)  # the last changes reach the monitors
    monitor.stop()
    assert monitor.seen(WWW["h2"]) >= 4  # moved there and back: two adds, two deletions
    assert monitor.overlaps(WWW["h2"]) == []
    bad = site.cli("h1", "move", "198.51.100.99", str(net.ipv4("h3")))
    assert bad.returncode != 0 and "not a service address" in bad.stderr


async def test_cpu_load_object_reports_rising_utilization(site: Site) -> None:
    net = site.net
    await settle(site)

    def util() -> int | None:
        hosts_ = site.status("h2", "www")["hosts"]
        h1 = next(h for h in hosts_ if h["id"] == str(net.ipv4("h1")))
        value = h1["utilization"]
        return None if value is None else int(value)

    ok, _ = await wait_for(lambda: util() is not None, 5.0)
    assert ok
    # The cpu load is the whole machine's (/proc/stat): it must be idle enough
    # to show a rise at all.
    idle, _ = await wait_for(lambda: (util() or 1000) < 600, 15.0, interval=0.25)
    assert idle, f"the machine is busy ({util()}/1000 before the test): cannot show a rise"
    before = util()
    assert before is not None
    busy = [
        subprocess.Popen([*site._exec("h1"), "-c", "while True: pass"])
        for _ in range(2)  # both cores of the test machine
    ]
    try:
        risen, _ = await wait_for(lambda: (util() or 0) >= before + 300, 5.0, interval=0.2)
        print(f"utilization of h1 before {before}, with two busy loops {util()}")
        assert risen, (before, util())
    finally:
        for p in busy:
            p.kill()
            p.wait()
