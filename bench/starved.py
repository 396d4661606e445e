"""False failovers on a starved machine, rais against keepalived, in one run.

Needs root (network namespaces), iproute2 and Debian's ``stress-ng`` and
``keepalived`` (installed with apt-get when missing). Run::

    .venv/bin/python bench/starved.py [--heartbeats-ms 100,50,30,20,10]
        [--seconds 60,30,30,40,30] [--systems rais,keepalived] [--src DIR]
        [--realtime] [--no-readme]

For every heartbeat H and every system a fresh lab from ``tests/netlab.py``:
hosts h1, h2, h3 on a bridge, ``ip -o monitor address`` in each from before
the daemons start. rais: one ``rais agent`` per host (the tree ``--src``),
multicast control, heartbeat H, timeout 3 H, everything else at its default;
h1 prefers 198.51.100.1/24, h2 198.51.100.2/24, h3 is the spare. keepalived:
VRRPv3, advert_int H, two instances per host, 198.51.100.1 (h1 150, h3 100,
h2 50) and 198.51.100.2 (h2 150, h3 100, h1 50), defaults otherwise. Once
settled + 2 s: a quiet window, then ``stress-ng --cpu 64 --timeout Ns`` in the
root namespace; a *false failover* is a service address added on a host other
than its steady holder (h1 for .1, h2 for .2) from the start of stress-ng to
1 s after it ended. See METHOD for the rest.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import labkit  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from benchkit import add_to_readme, interruptible, machine  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from failover import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    Procs,
    cpu_ticks,
    ensure_keepalived,
    keepalived_version,
)
from labkit import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    HOSTS,
    STEADY,
    Rais,
    System,
    check_alive,
    cpu_pct,
    describe_src,
    ensure_stress_ng,
    event_count,
    lateness_table,
    loadavg,
    started,
    steady,
    summed_lateness,
)

PREFIX = "rais-starved"
KEEPALIVED_PRIORITY = {
    "198.51.100.1": {"h1": 150, "h3": 100, "h2": 50},
    "198.51.100.2": {"h2": 150, "h3": 100, "h1": 50},
}
HEADING = "## Starved machine: false failovers, rais vs keepalived (netns lab)"
DEFAULT_HEARTBEATS = "100,50,30,20,10"
DEFAULT_SECONDS = "60,30,30,40,30"


class Keepalived(System):
    name = "keepalived"

    def start(self) -> None:
        for host in HOSTS:
            conf = f"global_defs {{\n  router_id {host}\n  vrrp_version 3\n}}\n"
            for i, (addr, prio) in enumerate(KEEPALIVED_PRIORITY.items(), start=1):
                conf += (
                    f"vrrp_instance VI_{i} {{\n"
                    f"  state {'MASTER' if STEADY[addr] == host else 'BACKUP'}\n"
                    f"  interface eth0\n  virtual_router_id {50 + i}\n"
                    f"  priority {prio[host]}\n  advert_int {self.hb_ms / 1000:g}\n"
                    f"  virtual_ipaddress {{\n    {addr}/24 dev eth0\n  }}\n}}\n"
                )
            path = self.tmp / f"{host}.conf"
            path.write_text(conf)
            argv = ["ip", "netns", "exec", self.net.ns(host), "keepalived", "-n", "-l", "-P"]
            argv += ["-f", str(path), "-p", str(self.tmp / f"{host}.pid")]
            argv += ["-r", str(self.tmp / f"{host}.vrrp.pid")]
            self.daemons[host] = self.procs.start(argv, self.tmp / f"{host}.log")

    def ready(self) -> bool:
        return steady(self.net) and all((self.tmp / f"{h}.vrrp.pid").exists() for h in HOSTS)

    def pids(self, host: str) -> list[int]:
        child = int((self.tmp / f"{host}.vrrp.pid").read_text().split()[0])
        return [self.daemons[host].pid, child]

    def snapshot(self) -> dict[str, dict[str, float]]:
        """'transitions': the "Entering ... STATE" lines of its log so far."""
        pattern = re.compile(r"Entering \w+ STATE")
        return {h: {"transitions": float(len(pattern.findall(self.log_all(h))))} for h in HOSTS}

    def log_all(self, host: str) -> str:
        path = self.tmp / f"{host}.log"
        return path.read_text(errors="replace") if path.exists() else ""


# -- shared by the bench scripts ---------------------------------------------------


# -- one window ---------------------------------------------------------------------


@dataclass
class Window:
    hb_ms: int
    system: str
    requested: int
    seconds: float
    false: dict[str, int]
    drops: int
    counts: dict[str, float]
    """rais: host-lost, leader-changed, acquired (all agents); keepalived: transitions."""
    cpu_quiet: float
    cpu_stress: float
    late_quiet: list[float] = field(default_factory=list)
    late_stress: list[float] = field(default_factory=list)
    notes: str = ""


def counted(
    system: System, after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]
) -> dict[str, float]:
    if isinstance(system, Keepalived):
        return {
            "transitions": sum(after[h]["transitions"] - before[h]["transitions"] for h in HOSTS)
        }
    kinds = ("host-lost", "leader-changed", "acquired")
    return {k: sum(event_count(after[h], before[h], k) for h in HOSTS) for k in kinds}


def one_window(kind: type[System], tmp: Path, hb_ms: int, seconds: int, quiet: float) -> Window:
    with started(kind, tmp, hb_ms, PREFIX) as (_net, procs, system, log):
        pids = {h: system.pids(h) for h in HOSTS}
        q0 = system.snapshot()
        c0 = {h: cpu_ticks(pids[h]) for h in HOSTS}
        t = time.monotonic()
        time.sleep(quiet)
        cpu_q = cpu_pct(system, c0, time.monotonic() - t)
        s0 = system.snapshot()
        c0 = {h: cpu_ticks(pids[h]) for h in HOSTS}
        t0 = time.monotonic()
        stress = procs.start(["stress-ng", "--cpu", "64", "--timeout", f"{seconds}s", "--quiet"])
        try:
            stress.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            Procs.kill(stress)
        t1 = time.monotonic()
        cpu_s = cpu_pct(system, c0, t1 - t0)
        time.sleep(1.0)
        dead = check_alive(system)
        s1 = system.snapshot()
        return Window(
            hb_ms=hb_ms,
            system=kind.name,
            requested=seconds,
            seconds=t1 - t0,
            false=log.false_failovers(t0, t1 + 1.0),
            drops=log.holder_drops(t0, t1 + 1.0),
            counts=counted(system, s1, s0),
            cpu_quiet=sum(cpu_q.values()) / len(HOSTS),
            cpu_stress=sum(cpu_s.values()) / len(HOSTS),
            late_quiet=summed_lateness(s0, q0),
            late_stress=summed_lateness(s1, s0),
            notes=f"daemon exited on {', '.join(dead)}" if dead else "",
        )


# -- report -------------------------------------------------------------------------


def tables(windows: list[Window]) -> str:
    by = {(w.hb_ms, w.system): w for w in windows}
    lines = ["| heartbeat | keepalived false failovers | rais false failovers |", "|---|---|---|"]
    for hb in dict.fromkeys(w.hb_ms for w in windows):
        cells = []
        for name in ("keepalived", "rais"):
            w = by.get((hb, name))
            cells.append("-" if w is None else str(sum(w.false.values())))
        secs = max(by[k].requested for k in by if k[0] == hb)
        lines.append(f"| {hb} ms ({secs} s) | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "| heartbeat | system | stress s | false failovers .1 / .2 | steady holder lost it "
        "| host-lost / leader-changed / acquired (rais); state transitions (keepalived) "
        "| daemon CPU % quiet; under stress (mean of hosts) | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in windows:
        ev = " / ".join(f"{v:.0f}" for v in w.counts.values())
        ff = " / ".join(str(v) for v in w.false.values())
        lines.append(
            f"| {w.hb_ms} ms | {w.system} | {w.seconds:.1f} | {ff} | {w.drops} | {ev} "
            f"| {w.cpu_quiet:.2f}; {w.cpu_stress:.2f} | {w.notes} |"
        )
    rais = [w for w in windows if w.system == "rais"]
    if rais:
        lines += [
            "",
            "rais heartbeat lateness, all three agents, ms:",
            "",
            lateness_table([(f"{w.hb_ms} ms", w.late_quiet, w.late_stress) for w in rais]),
        ]
    return "\n".join(lines)


METHOD = """\
`bench/starved.py` (run as root: `.venv/bin/python bench/starved.py`) builds,
for every heartbeat H and each system in turn (rais, keepalived), a fresh lab
from `tests/netlab.py`: hosts h1, h2, h3 on a Linux bridge (eth0
192.0.2.11-13/24), `ip -o monitor address` in every host from before the
daemons start (every change, not a sampled view).

* **rais**: `rais agent` in each host (the tree given by `--src`), multicast
  control on eth0 (239.192.0.1:7401), heartbeat H, timeout 3 x H, every other
  setting at its default; h1 prefers 198.51.100.1/24, h2 198.51.100.2/24, h3
  is the hot spare. `--realtime` adds `realtime = true` under `[host]`.
* **keepalived**: `keepalived -n -l -P` in each host, VRRPv3, multicast,
  advert_int H, two instances per host so that the steady holders match
  rais's: 198.51.100.1/24 (h1 priority 150, h3 100, h2 50) and
  198.51.100.2/24 (h2 150, h3 100, h1 50); defaults otherwise (preemption
  on, no `vrrp_rt_priority` / `max_auto_priority`).

Once .1 is on h1 alone and .2 on h2 alone, plus 2 s: a quiet window (5 s),
then `stress-ng --cpu 64 --timeout Ns` in the root namespace. Every process
(daemons, `ip monitor`, stress-ng) stays in the script's session, each in a
process group of its own: with the kernel's autogroup scheduling
(`kernel.sched_autogroup_enabled = 1`, the default here) they share one
scheduling group, so the 64 workers compete with the daemons at equal
weight. With `--own-sessions` each starts in a session, hence an autogroup,
of its own, and the group of 64 workers gets no more CPU than one daemon:
the machine is then not starved for them (nothing moved for either system
at 20 and 10 ms in 10 s trials).

Nothing fails, so every move is false: **false failovers** counts the times a
service address was added on a host other than its steady holder, from the
start of stress-ng to 1 s after it ended; **steady holder lost it** counts
its deletions on the steady holder in the same span. For rais, the agents'
`rais_events_total` (host-lost, leader-changed, acquired; all three agents
summed) and `rais_heartbeat_lateness_seconds` (how late the heartbeat timer
fired; the delta over each window, all three agents summed, bucket counts,
not cumulative) from each agent's `/metrics`, read before and after each
window; for keepalived the "Entering ... STATE" lines of its logs. **Daemon
CPU %** is utime+stime from `/proc/PID/stat` (keepalived: parent and VRRP
child) over the quiet window and over the stress, the mean of the hosts. A
fresh lab per heartbeat and system; everything is removed at the end, also
on failure and Ctrl-C."""


def report(windows: list[Window], args: argparse.Namespace, failures: list[str]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"### {now}, {machine(keepalived_version())}\n\n"
    command = f"bench/starved.py --heartbeats-ms {args.heartbeats_ms} --seconds {args.seconds}"
    command += f" --systems {args.systems}" + (" --realtime" if args.realtime else "")
    command += " --own-sessions" if args.own_sessions else ""
    text += (
        f"`{command}`, src {describe_src(args.src)}, load average at the start {args.load}.\n\n"
        + tables(windows)
        + "\n"
    )
    if failures:
        text += "\nWindows that failed (not in the table):\n\n" + "".join(
            f"* {f}\n" for f in failures
        )
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--heartbeats-ms", default=DEFAULT_HEARTBEATS)
    parser.add_argument("--seconds", default=DEFAULT_SECONDS, help="stress per heartbeat")
    parser.add_argument("--systems", default="rais,keepalived")
    parser.add_argument("--quiet-seconds", type=float, default=5.0)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the rais tree to run")
    parser.add_argument(
        "--own-sessions",
        action="store_true",
        help="start the daemons and stress-ng each in a session (autogroup) of its own",
    )
    parser.add_argument("--realtime", action="store_true", help="[host] realtime = true")
    parser.add_argument("--readme", type=Path, default=ROOT / "bench" / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only print the tables")
    args = parser.parse_args()
    hbs = [int(x) for x in args.heartbeats_ms.split(",")]
    secs = [int(x) for x in args.seconds.split(",")]
    if len(secs) == 1:
        secs *= len(hbs)
    if len(secs) != len(hbs):
        parser.error("--seconds: one value, or one per heartbeat")
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    ensure_stress_ng()
    ensure_keepalived()
    args.src = args.src.resolve()
    args.load = loadavg()
    Rais.src, Rais.realtime = args.src, args.realtime
    labkit.OWN_SESSIONS[0] = args.own_sessions
    kinds = {"rais": Rais, "keepalived": Keepalived}
    chosen: list[type[System]] = [kinds[s] for s in args.systems.split(",")]
    windows: list[Window] = []
    failures: list[str] = []
    with interruptible(), tempfile.TemporaryDirectory(prefix="rais-starved-") as tmp:
        os.chmod(tmp, 0o755)
        for hb, sec in zip(hbs, secs, strict=True):
            for kind in chosen:
                try:
                    w = one_window(
                        kind, Path(tmp) / f"{kind.name}-{hb}", hb, sec, args.quiet_seconds
                    )
                except RuntimeError as exc:
                    failures.append(f"{hb} ms, {kind.name}: {exc}".splitlines()[0])
                    print(f"{hb} ms {kind.name}: FAILED: {exc}", file=sys.stderr, flush=True)
                    continue
                windows.append(w)
                print(
                    f"{hb} ms {kind.name}: false failovers {w.false}, drops {w.drops}, "
                    f"{w.counts}, CPU {w.cpu_quiet:.2f}% / {w.cpu_stress:.2f}%",
                    file=sys.stderr,
                    flush=True,
                )
    section = report(windows, args, failures)
    print(section)
    if not args.no_readme and windows:
        add_to_readme(args.readme, HEADING, METHOD, section)
        print(f"appended to {args.readme}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
