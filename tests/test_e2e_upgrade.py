"""Rolling upgrade and downgrade between the release operators run (commit
1c67e61, wire version 1, built from this repository's history by
tests/oldrelease.py) and this tree, on four network namespaces (h1-h3 with
198.51.100.1-3, h4 the spare), multicast control, 100 ms heartbeat and 300 ms
timeout, one config file per host read by both versions.

Every host's kernel is watched with ``ip -ts monitor address`` from before the
first agent starts, and the checks replay those changes, not samples:

* an address has at most one holder at every instant (the one exception: the
  copy a SIGKILLed agent leaves on its host, whose link is down from before
  the kill until that copy's kernel lifetime has removed it, so it is no
  duplicate on the wire; it is measured and reported on its own);
* an address is unheld only inside the window of a planned step that
  concerns it: its holder being restarted, or its holder killed;
* no agent logs ``host-lost`` for a host other than the one killed in that
  step (a graceful restart gives ``host-left``, never ``host-lost``).

Scenarios, one lab, in order: (a) all old, then h1, h2, h3, h4 upgraded one at
a time (SIGTERM, the new code started, the group settled); (b) h2 downgraded;
(c) an old holder (h2) killed, the new spare takes its address; the spare
downgraded, then a new holder (h1, the leader) killed and the old spare takes
its address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from netlab import Lab, LabFactory, lab_fixture, wait_for  # noqa: F401
from oldrelease import Release, current_module_file, export_release, repository_root
from traffic import AddrMonitor

pytestmark = pytest.mark.e2e

Version = Literal["old", "new"]
HOSTS = ("h1", "h2", "h3", "h4")
VIPS = {"h1": "198.51.100.1", "h2": "198.51.100.2", "h3": "198.51.100.3"}
SPARE = "h4"
TIMEOUT = 0.3
TAKEOVER_BOUND = TIMEOUT + 0.4
"""A killed holder's address is on another host within timeout + margin."""
LEFTOVER_BOUND = 4.0
"""The killed agent's copy is gone by then (its lifetime runs out)."""
SETTLE_BOUND = 20.0
QUIET = 0.5
"""After a step settled, how long to wait before the next: spurious
``host-lost`` events (300 ms timeout) would surface within it."""
MARK = "198.51.100.250"

_LOST = re.compile(r"^(\S+) group \S+: host-lost: host (\S+?)(?:: |$)")
"""The log line of a host-lost event (both releases): reporter, lost host."""


def rais(*argv: str) -> list[str]:
    """``python -m rais ARGV``: which release runs is the environment's choice."""
    return [sys.executable, "-m", "rais", *argv]


def host_id(host: str) -> str:
    return str(Lab.ipv4(host))


@dataclass
class Run:
    host: str
    version: Version
    log: Path
    proc: subprocess.Popen[bytes]


@dataclass
class Step:
    """A planned step: ``host`` stopped (or killed) at ``start``, the group
    settled again at ``end`` (monotonic)."""

    scenario: str
    name: str
    host: str
    start: float
    end: float = 0.0
    killed: bool = False
    excused: tuple[float, float] | None = None
    """While the killed host's link was down: its leftover copy is no duplicate."""
    lost: Counter[tuple[str, str]] = field(default_factory=Counter)
    """host-lost events logged during the step: (reporter, lost host id)."""


class Group:
    """Old and new ``rais agent`` processes, one per host namespace."""

    def __init__(self, net: Lab, tmp: Path, old: Release) -> None:
        self.net, self.tmp, self.old = net, tmp, old
        self.runs: list[Run] = []
        self.current: dict[str, Run] = {}
        self._lost_seen: Counter[tuple[str, str]] = Counter()
        (tmp / "key").write_text("e2e-upgrade-key\n")
        for host in HOSTS:
            pref = f'preferred = "{VIPS[host]}/24"\n' if host in VIPS else ""
            self.config(host).write_text(
                f'[host]\ncontrol = ["{host_id(host)}"]\napi = "127.0.0.1:7400"\n'
                f'state_dir = "{tmp / host}"\nlog_format = "json"\n'
                f'[auth]\nkey_file = "{tmp / "key"}"\n'
                f'[[group]]\nname = "www"\naddress = "239.192.0.1:7401"\n'
                f'interface = "eth0"\n{pref}heartbeat = "100ms"\ntimeout = "300ms"\n'
                f'orphan_timeout = "60s"\n'
            )

    def config(self, host: str) -> Path:
        return self.tmp / f"{host}.toml"

    def env(self, version: Version) -> dict[str, str]:
        if version == "old":
            return self.old.env()
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        return env

    def cli(self, host: str, version: Version, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.net.ns(host), *rais(*argv)],
            env=self.env(version),
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=20,
        )

    def start(self, host: str, version: Version) -> None:
        assert host not in self.current, host
        log = self.tmp / f"{host}.{len(self.runs)}.{version}.log"
        argv = ["ip", "netns", "exec", self.net.ns(host)]
        argv += rais("agent", "--config", str(self.config(host)))
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=self.env(version), cwd=self.tmp
            )
        run = Run(host, version, log, proc)
        self.runs.append(run)
        self.current[host] = run

    def stop(self, host: str) -> None:
        run = self.current.pop(host)
        run.proc.send_signal(signal.SIGTERM)
        code = run.proc.wait(10)
        assert code == 0, f"{host} ({run.version}) exit {code}:\n{run.log.read_text()}"

    def kill(self, host: str) -> None:
        run = self.current.pop(host)
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(10)

    def stop_all(self) -> None:
        for run in self.runs:
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGKILL)
                run.proc.wait(10)

    def versions(self) -> str:
        return " ".join(f"{h}={self.current[h].version}" for h in HOSTS if h in self.current)

    def live_ids(self, host: str) -> set[str]:
        """The live hosts ``host``'s agent knows, asked with its own version's CLI."""
        proc = self.cli(host, self.current[host].version, "status", "--json")
        if proc.returncode != 0:
            return set()
        groups = json.loads(proc.stdout)["groups"]
        return {str(h["id"]) for g in groups for h in g["hosts"] if h["live"]}

    def wire(self, host: str) -> tuple[int, list[str], dict[str, list[int]]] | None:
        """What a new agent says of the wire: the version it sends, the group's
        common features and every live host's versions (None: an old agent)."""
        if self.current[host].version != "new":
            return None
        proc = self.cli(host, "new", "status", "--json")
        assert proc.returncode == 0, proc.stderr
        (g,) = json.loads(proc.stdout)["groups"]
        hosts = {str(h["id"]): list(h["wire_versions"]) for h in g["hosts"] if h["live"]}
        return int(g["wire_version"]), list(g["common_features"]), hosts

    def new_lost(self) -> Counter[tuple[str, str]]:
        """host-lost events logged by any agent since the last call."""
        now: Counter[tuple[str, str]] = Counter()
        for run in self.runs:
            for line in run.log.read_text(errors="replace").splitlines():
                record = _json(line)
                if record is None:
                    continue
                m = _LOST.match(str(record.get("message", "")))
                if m:
                    assert m.group(1) == host_id(run.host), line
                    now[(m.group(1), m.group(2))] += 1
        fresh = now - self._lost_seen
        self._lost_seen = now
        return fresh

    def logs(self) -> str:
        return "\n".join(
            f"--- {r.log.name}\n{r.log.read_text(errors='replace')}" for r in self.runs
        )


def _json(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- the kernels' record ------------------------------------------------------


@dataclass
class Span:
    start: float
    end: float
    holders: frozenset[str]


def spans(monitor: AddrMonitor, address: str, end: float) -> list[Span]:
    """Who held ``address`` over time, from every change ``ip monitor`` saw
    (no holder before the first change: the monitors started before any agent)."""
    ip = str(ipaddress.ip_address(address))
    changes = sorted((c for c in list(monitor.changes) if c.address == ip), key=lambda c: c.time)
    out: list[Span] = []
    held: frozenset[str] = frozenset()
    since = changes[0].time if changes else end
    for c in changes:
        after = held | {c.host} if c.added else held - {c.host}
        if after == held:
            continue  # a lifetime refresh, or a repeat
        if c.time > since or len(held) > 1:  # two holders count even for no time
            out.append(Span(since, c.time, held))
        since, held = max(since, c.time), after
    out.append(Span(since, max(since, end), held))
    return out


def _split(parts: list[Span], at: list[float]) -> list[Span]:
    """``parts`` cut at each instant of ``at`` that falls inside one."""
    out = []
    for s in parts:
        start = s.start
        for t in at:
            if start < t < s.end:
                out.append(Span(start, t, s.holders))
                start = t
        out.append(Span(start, s.end, s.holders))
    return out


@dataclass
class Findings:
    longest_unheld: dict[str, float] = field(default_factory=dict)
    overlap: dict[str, float] = field(default_factory=dict)
    leftover: dict[str, float] = field(default_factory=dict)
    """How long a killed agent's copy stayed on its cut-off host, next to the holder."""
    problems: list[str] = field(default_factory=list)


def judge(monitor: AddrMonitor, steps: list[Step], since: float, until: float) -> Findings:
    """Every instant from ``since`` to ``until``, every address. A killed
    host's copy while its link is down counts as no holder (it is not on the
    wire); the time it sat next to the real holder is ``leftover``."""
    found = Findings()
    t0 = steps[0].start
    cuts = sorted({t for st in steps if st.excused for t in st.excused})
    for owner, vip in VIPS.items():
        found.longest_unheld[vip] = found.overlap[vip] = found.leftover[vip] = 0.0
        for s in _split(spans(monitor, vip, until), cuts):
            start, end = max(s.start, since), min(s.end, until)
            if end < start or (end == start and s.start != s.end):
                continue
            cut = {
                st.host
                for st in steps
                if st.excused and st.excused[0] <= start and end <= st.excused[1]
            }
            on_wire = s.holders - cut
            where = f"{start - t0:.3f}s..{end - t0:.3f}s ({(end - start) * 1000:.1f} ms)"
            if not on_wire:
                found.longest_unheld[vip] = max(found.longest_unheld[vip], end - start)
                planned = [
                    st for st in steps if st.host == owner and st.start <= start <= end <= st.end
                ]
                if not planned:
                    found.problems.append(f"{vip} unheld {where}, not in a step of {owner}")
            elif len(on_wire) > 1:
                found.overlap[vip] += end - start
                found.problems.append(f"{vip} held by {sorted(on_wire)} at {where}")
            elif s.holders != on_wire:
                found.leftover[vip] += end - start
    return found


# -- the test -----------------------------------------------------------------


@pytest.fixture
def old_release(tmp_path: Path) -> Iterator[Release]:
    """The old release, exported for this test and deleted after it."""
    started = time.monotonic()
    release = export_release(tmp_path)
    print(f"old release {release.commit[:8]} exported in {time.monotonic() - started:.2f}s")
    try:
        yield release
    finally:
        shutil.rmtree(release.tree, ignore_errors=True)


@pytest.fixture
def group(make_lab: LabFactory, tmp_path: Path, old_release: Release) -> Iterator[Group]:
    net = make_lab(len(HOSTS))
    g = Group(net, tmp_path, old_release)
    try:
        yield g
    finally:
        g.stop_all()


def holders(net: Lab, vip: str) -> list[str]:
    ip = ipaddress.ip_address(vip)
    return [h for h in HOSTS if ip in net.addresses(h)]


async def test_rolling_upgrade_downgrade_and_mixed_failover(group: Group) -> None:
    net, g = group.net, group
    began = time.monotonic()
    new_file = current_module_file()
    assert new_file.is_relative_to(repository_root() / "src"), new_file
    assert not new_file.is_relative_to(g.old.tree.resolve())
    for host in HOSTS:
        for version in ("old", "new"):
            proc = g.cli(host, version, "check-config", str(g.config(host)))
            assert proc.returncode == 0, (version, host, proc.stdout, proc.stderr)

    monitor = AddrMonitor(net, list(HOSTS), stamped=True)
    monitor.start()
    steps: list[Step] = []
    try:
        await _monitors_ready(net, monitor)

        async def settled(step: Step, restarted: str) -> None:
            everyone = {host_id(h) for h in HOSTS}

            def done() -> bool:
                return all(holders(net, v) == [h] for h, v in VIPS.items()) and (
                    g.live_ids(restarted) == everyone
                )

            ok, took = await wait_for(done, SETTLE_BOUND, interval=0.05)
            assert ok, f"{step.name}: not settled after {took:.1f}s ({g.versions()})\n{g.logs()}"
            step.end = time.monotonic()
            await asyncio.sleep(QUIET)
            step.lost = g.new_lost()
            # the new agents talk version 2 only once every host is new
            all_new = all(g.current[h].version == "new" for h in HOSTS)
            for h in HOSTS:
                seen = g.wire(h)
                if seen is None:
                    continue
                version, common, versions = seen
                want = {host_id(o): [1, 2] if g.current[o].version == "new" else [1] for o in HOSTS}
                assert versions == want, (step.name, h, versions)
                assert version == (2 if all_new else 1), (step.name, h, version)
                assert (common == ["pause", "sets"]) == all_new, (step.name, h, common)

        # (a) all old, settled
        first = Step("a", "all old start", "*", time.monotonic())
        steps.append(first)
        for host in HOSTS:
            g.start(host, "old")
        await settled(first, SPARE)
        for host in HOSTS:
            step = Step("a", f"upgrade {host}", host, time.monotonic())
            steps.append(step)
            g.stop(host)
            g.start(host, "new")
            await settled(step, host)

        # (b) one host back to the old code
        step = Step("b", "downgrade h2", "h2", time.monotonic())
        steps.append(step)
        g.stop("h2")
        g.start("h2", "old")
        await settled(step, "h2")

        # (c) an old holder dies, the new spare takes its address ...
        await _kill_and_return(g, monitor, steps, "c", "h2", SPARE, settled)
        # ... and, with the spare back on the old code, a new holder (the
        # leader) dies and the old spare takes its address
        step = Step("c", "downgrade h4", SPARE, time.monotonic())
        steps.append(step)
        g.stop(SPARE)
        g.start(SPARE, "old")
        await settled(step, SPARE)
        await _kill_and_return(g, monitor, steps, "c", "h1", SPARE, settled)
    finally:
        monitor.stop()
        group.stop_all()
    end = time.monotonic()

    problems: list[str] = []
    for scenario in ("a", "b", "c"):
        mine = [s for s in steps if s.scenario == scenario]
        found = judge(monitor, steps, mine[0].start, mine[-1].end)
        lost = sum((s.lost for s in mine), Counter[tuple[str, str]]())
        print(
            f"scenario {scenario}: "
            + ", ".join(
                f"{v} longest unheld {found.longest_unheld[v] * 1000:.0f} ms, "
                f"overlap {found.overlap[v] * 1000:.0f} ms"
                + (
                    f", dead host's leftover {found.leftover[v] * 1000:.0f} ms"
                    if found.leftover[v]
                    else ""
                )
                for v in VIPS.values()
            )
            + f"; host-lost {sum(lost.values())} {dict(lost) or ''}"
        )
    first_held = min((c.time for c in monitor.changes if c.address in VIPS.values()), default=end)
    whole = judge(monitor, steps, first_held, end)
    problems += whole.problems
    for step in steps:
        killed = host_id(step.host) if step.killed else None
        for (reporter, who), n in step.lost.items():
            if who != killed:
                problems.append(f"{step.name}: {reporter} logged host-lost {who} x{n}")
        if killed:
            reporters = {r for (r, who) in step.lost if who == killed}
            want = {host_id(h) for h in HOSTS if h != step.host}
            if reporters != want:
                problems.append(f"{step.name}: host-lost {killed} from {reporters}, not {want}")
    for run in g.runs:
        if "Traceback" in run.log.read_text(errors="replace"):
            problems.append(f"{run.log.name}: a traceback")
    print(f"test body {end - began:.1f}s, {len(monitor.changes)} address changes seen")
    assert problems == [], "\n".join(problems) + "\n" + g.logs()


async def _monitors_ready(net: Lab, monitor: AddrMonitor) -> None:
    """Every monitor has subscribed: a marker address on each host's lo, seen
    added and deleted by that host's monitor, before any agent starts."""
    for host in HOSTS:
        net.ip(host, "addr", "add", f"{MARK}/32", "dev", "lo")
        net.ip(host, "addr", "del", f"{MARK}/32", "dev", "lo")

    def seen() -> bool:
        gone = {c.host for c in list(monitor.changes) if c.address == MARK and not c.added}
        if gone == set(HOSTS):
            return True
        for host in set(HOSTS) - gone:
            net.ip(host, "addr", "add", f"{MARK}/32", "dev", "lo")
            net.ip(host, "addr", "del", f"{MARK}/32", "dev", "lo")
        return False

    ok, _ = await wait_for(seen, 5.0, interval=0.1)
    assert ok, "ip monitor address did not start in every host"


async def _kill_and_return(
    g: Group,
    monitor: AddrMonitor,
    steps: list[Step],
    scenario: str,
    host: str,
    taker: str,
    settled: Callable[[Step, str], Awaitable[None]],
) -> None:
    """``host``'s link goes down and its agent is SIGKILLed; its address must
    be on ``taker`` within TAKEOVER_BOUND; once the dead agent's copy is gone
    (its lifetime) the link comes back and the same version restarts."""
    net, vip, version = g.net, VIPS[host], g.current[host].version
    step = Step(scenario, f"kill {host} ({version})", host, time.monotonic(), killed=True)
    steps.append(step)
    net.ip(host, "link", "set", "eth0", "down")
    g.kill(host)
    moved, took = await wait_for(lambda: holders(net, vip) in ([taker], [host, taker]), 3.0)
    assert moved, f"{vip} on {holders(net, vip)} {took:.2f}s after the kill\n{g.logs()}"
    gone, _ = await wait_for(lambda: host not in holders(net, vip), LEFTOVER_BOUND)
    assert gone, f"the killed agent's copy of {vip} still on {host}"
    step.excused = (step.start, time.monotonic())
    net.ip(host, "link", "set", "eth0", "up")
    taken = (
        min(
            (
                c.time
                for c in list(monitor.changes)
                if c.address == vip and c.host == taker and c.added and c.time > step.start
            ),
            default=float("inf"),
        )
        - step.start
    )
    print(f"{step.name}: {vip} on {taker} ({g.current[taker].version}) {taken * 1000:.0f} ms after")
    assert taken <= TAKEOVER_BOUND, taken
    g.start(host, version)
    await settled(step, host)


def test_the_judge_sees_what_it_must() -> None:
    """Without root: ``judge`` on made-up monitor records finds a second holder,
    an unplanned outage and a killed host's copy seen as a second holder after
    its link came back, and passes a planned handover and a cut-off copy."""
    from traffic import Change

    net = Lab("judge", len(HOSTS), client=False)
    vip = VIPS["h1"]

    def verdict(changes: list[tuple[float, str, bool]], steps: list[Step]) -> Findings:
        monitor = AddrMonitor(net, list(HOSTS))
        monitor.changes = [Change(t, h, vip, added) for t, h, added in changes]
        for other in ("h2", "h3"):
            monitor.changes.append(Change(0.0, other, VIPS[other], True))
        return judge(monitor, steps, 0.0, 10.0)

    handover = [(0.0, "h1", True), (2.0, "h1", False), (2.01, "h4", True)]
    handover += [(3.0, "h4", False), (3.02, "h1", True)]
    planned = [Step("a", "s", "*", 0.0, 0.0), Step("a", "upgrade h1", "h1", 1.9, 3.5)]
    ok = verdict(handover, planned)
    assert ok.problems == [] and round(ok.longest_unheld[vip], 3) == 0.02
    unplanned = verdict(handover, [planned[0], Step("a", "upgrade h2", "h2", 1.9, 3.5)])
    assert len(unplanned.problems) == 2 and "unheld" in unplanned.problems[0]
    both = verdict([(0.0, "h1", True), (2.0, "h4", True), (2.5, "h1", False)], planned)
    assert both.problems and "held by ['h1', 'h4']" in both.problems[0]
    assert round(both.overlap[vip], 3) == 0.5

    # h1 killed at 2.0 with its link down until 3.5: its copy (gone at 3.0)
    # is no holder on the wire; the same copy still there at 4.0 is one.
    kill = Step("c", "kill h1", "h1", 2.0, 6.0, killed=True, excused=(2.0, 3.5))
    crash = [(0.0, "h1", True), (2.25, "h4", True), (3.0, "h1", False)]
    crash += [(5.0, "h4", False), (5.01, "h1", True)]
    cut = verdict(crash, [planned[0], kill])
    assert cut.problems == [], cut.problems
    assert round(cut.longest_unheld[vip], 3) == 0.25 and round(cut.leftover[vip], 3) == 0.75
    late = [(0.0, "h1", True), (2.25, "h4", True), (4.0, "h1", False)]
    assert "held by ['h1', 'h4']" in verdict(late, [planned[0], kill]).problems[0]
