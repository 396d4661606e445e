"""Failover on host death, rais against keepalived, in one run on one machine.

Needs root (network namespaces) and iproute2; installs Debian's ``keepalived``
with apt-get when it is missing. Run::

    .venv/bin/python bench/failover.py [--runs 5] [--no-readme]

For every run and every system (alternating, rais first) a fresh lab from
``tests/netlab.py`` is built: hosts h1, h2, h3 on a bridge (eth0 192.0.2.1N/24)
and a client c (192.0.2.200) with the route ``198.51.100.0/24 dev eth0``.

* rais: one ``rais agent`` per host (multicast control on eth0, heartbeat
  100 ms, timeout 300 ms); h1 prefers 198.51.100.1/24, h2 198.51.100.2/24,
  h3 is the hot spare.
* keepalived: ``keepalived -n -l -P`` per host, VRRPv3, advert_int 0.1,
  multicast, one instance for 198.51.100.2/24: h2 MASTER priority 150, h3
  BACKUP 100, h1 BACKUP 50.

Once settled, steady state is measured with no probe traffic: tx_bytes of eth0
per host over 5 s (``/sys/class/net/eth0/statistics/tx_bytes`` read inside
each namespace) and utime+stime of the daemon processes per host over 10 s
(``/proc/PID/stat``; for keepalived the parent and its VRRP child together).
Then a UDP echo server (port 9, bound to 0.0.0.0) runs in every host, and a
prober in c sends a numbered datagram to 198.51.100.2:9 every 5 ms and logs
the receive time of every answer. After 1.5 s of answers and a random
0-100 ms, the holder h2 dies: ``ip link set eth0 down`` in h2, then SIGKILL of
its daemon's process group. The outage is the longest gap between two
consecutive answers from the last answer before the failure on; "spare holds"
is the time from the failure to the address appearing on another host (``ip
monitor address`` in h1 and h3). Everything the script makes (namespaces,
processes, the temp directory) is removed at the end, also on failure and
Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchkit import add_to_readme, interruptible, machine  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from netlab import Lab, lab  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from traffic import ECHO, PROBER  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

PREFIX = "rais-bench"
HOSTS = ("h1", "h2", "h3")
VIP1, VIP2 = "198.51.100.1", "198.51.100.2"
HEARTBEAT_MS = [100]
"""The heartbeat (rais) and advert_int (keepalived) in ms; timeout = 3 x (set by --heartbeat-ms)."""
ECHO_PORT = 9
PROBE_INTERVAL = 0.005
HEADING = "## Failover on host death: rais vs keepalived (netns lab)"
KEEPALIVED_PRIORITY = {"h1": 50, "h2": 150, "h3": 100}

# -- processes ----------------------------------------------------------------


class Procs:
    """Every process this script starts; ``kill_all`` SIGKILLs each one's
    process group (each is started in a session of its own, or with
    ``own_session`` False in a process group of its own in this session:
    then it shares this session's scheduler autogroup) and reaps it."""

    own_session = True

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], log: Path | None = None, *, pipe: bool = False
    ) -> subprocess.Popen[bytes]:
        out: int | IO[bytes]
        if pipe:
            out = subprocess.PIPE
        elif log is not None:
            out = open(log, "ab")  # noqa: SIM115 (closed below, the child keeps its copy)
        else:
            out = subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
                process_group=None if self.own_session else 0,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    def kill_all(self) -> None:
        while self.procs:
            self.kill(self.procs.pop())


class AddressWatch:
    """``ip -o monitor address`` in one namespace; remembers (monotonic time,
    line) of every line as it arrives."""

    def __init__(self, procs: Procs, net: Lab, host: str) -> None:
        self.host = host
        self.lines: list[tuple[float, str]] = []
        self.proc = procs.start(["ip", "-n", net.ns(host), "-o", "monitor", "address"], pipe=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic(), raw.decode(errors="replace")))

    def added(self, address: str, after: float) -> float | None:
        """When ``address`` was first added after ``after``, else None."""
        for when, line in list(self.lines):
            if when >= after and not line.startswith("Deleted") and f" {address}/" in line:
                return when
        return None


# -- lab helpers --------------------------------------------------------------


def holders(net: Lab, address: str) -> list[str]:
    ip = ipaddress.ip_address(address)
    return [h for h in HOSTS if ip in net.addresses(h)]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def tx_bytes(net: Lab, host: str) -> int:
    out = net.run(host, "cat", "/sys/class/net/eth0/statistics/tx_bytes").stdout
    return int(out.strip())


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total


# -- the two systems ----------------------------------------------------------


class System:
    name = ""

    def __init__(self, net: Lab, procs: Procs, tmp: Path) -> None:
        self.net = net
        self.procs = procs
        self.tmp = tmp
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        raise NotImplementedError

    def settled(self) -> bool:
        raise NotImplementedError

    def pids(self, host: str) -> list[int]:
        return [self.daemons[host].pid]

    def log(self, host: str) -> str:
        path = self.tmp / f"{host}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class Rais(System):
    name = "rais"

    def start(self) -> None:
        key = self.tmp / "key"
        key.write_text("bench-secret-key\n")
        for n, host in enumerate(HOSTS, start=1):
            pref = f'preferred = "198.51.100.{n}/24"\n' if n <= 2 else ""
            conf = self.tmp / f"{host}.toml"
            conf.write_text(
                f'[host]\ncontrol = ["{self.net.ipv4(host)}"]\n'
                f'state_dir = "{self.tmp / host}"\n'
                f'[auth]\nkey_file = "{key}"\n'
                f'[[group]]\nname = "www"\naddress = "239.192.0.1:7401"\n'
                f'interface = "eth0"\n{pref}heartbeat = "{HEARTBEAT_MS[0]}ms"\n'
                f'timeout = "{3 * HEARTBEAT_MS[0]}ms"\n'
                f'orphan_timeout = "60s"\n'
            )
            argv = ["ip", "netns", "exec", self.net.ns(host), sys.executable, "-m", "rais"]
            argv += ["agent", "--config", str(conf)]
            self.daemons[host] = self.procs.start(argv, self.tmp / f"{host}.log")

    def settled(self) -> bool:
        return holders(self.net, VIP1) == ["h1"] and holders(self.net, VIP2) == ["h2"]


class Keepalived(System):
    name = "keepalived"

    def start(self) -> None:
        for host in HOSTS:
            conf = self.tmp / f"{host}.conf"
            conf.write_text(
                f"global_defs {{\n  router_id {host}\n  vrrp_version 3\n}}\n"
                f"vrrp_instance VI_1 {{\n"
                f"  state {'MASTER' if host == 'h2' else 'BACKUP'}\n"
                f"  interface eth0\n  virtual_router_id 51\n"
                f"  priority {KEEPALIVED_PRIORITY[host]}\n  advert_int {HEARTBEAT_MS[0] / 1000:g}\n"
                f"  virtual_ipaddress {{\n    {VIP2}/24 dev eth0\n  }}\n}}\n"
            )
            argv = ["ip", "netns", "exec", self.net.ns(host), "keepalived", "-n", "-l", "-P"]
            argv += ["-f", str(conf), "-p", str(self.tmp / f"{host}.pid")]
            argv += ["-r", str(self.tmp / f"{host}.vrrp.pid")]
            self.daemons[host] = self.procs.start(argv, self.tmp / f"{host}.log")

    def settled(self) -> bool:
        if holders(self.net, VIP2) != ["h2"]:
            return False
        return all((self.tmp / f"{h}.vrrp.pid").exists() for h in HOSTS)

    def pids(self, host: str) -> list[int]:
        child = int((self.tmp / f"{host}.vrrp.pid").read_text().split()[0])
        return [self.daemons[host].pid, child]


# -- one run ------------------------------------------------------------------


@dataclass
class Run:
    index: int
    system: str
    outage_ms: float
    lost: int
    first_answer_ms: float
    spare_ms: float
    spare: str
    answered_by: str
    steady_max_gap_ms: float
    tx_bps: dict[str, float] = field(default_factory=dict)
    cpu_pct: dict[str, float] = field(default_factory=dict)


def one_run(kind: type[System], tmp_root: Path, index: int) -> Run:
    tmp = tmp_root / f"{kind.name}-{index}"
    tmp.mkdir()
    os.chmod(tmp, 0o755)
    procs = Procs()
    with lab(len(HOSTS), PREFIX, client=True) as net, contextlib.ExitStack() as stack:
        stack.callback(procs.kill_all)
        net.ip("c", "route", "add", "198.51.100.0/24", "dev", "eth0")
        system = kind(net, procs, tmp)
        system.start()
        try:
            wait_until(system.settled, 20.0, f"{kind.name} to settle")
        except RuntimeError:
            logs = "\n".join(f"--- {h}\n{system.log(h)}" for h in HOSTS)
            raise RuntimeError(f"{kind.name} did not settle:\n{logs}") from None
        time.sleep(1.0)
        for host, proc in system.daemons.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{kind.name} on {host} exited:\n{system.log(host)}")

        # Steady state, no probe traffic yet: tx bytes over 5 s, CPU over 10 s.
        clk = os.sysconf("SC_CLK_TCK")
        pids = {h: system.pids(h) for h in HOSTS}
        t0 = time.monotonic()
        tx0 = {h: tx_bytes(net, h) for h in HOSTS}
        cpu0 = {h: cpu_ticks(pids[h]) for h in HOSTS}
        time.sleep(5.0)
        tx1 = {h: tx_bytes(net, h) for h in HOSTS}
        t1 = time.monotonic()
        time.sleep(max(0.0, 10.0 - (time.monotonic() - t0)))
        cpu1 = {h: cpu_ticks(pids[h]) for h in HOSTS}
        t2 = time.monotonic()
        tx_bps = {h: (tx1[h] - tx0[h]) / (t1 - t0) for h in HOSTS}
        cpu_pct = {h: 100.0 * (cpu1[h] - cpu0[h]) / clk / (t2 - t0) for h in HOSTS}

        # Probe traffic.
        for host in HOSTS:
            echo = procs.start(
                ["ip", "netns", "exec", net.ns(host), sys.executable, "-c", ECHO, host, "9"],
                pipe=True,
            )
            assert echo.stdout is not None
            if echo.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"echo server on {host} did not start")
        watches = [AddressWatch(procs, net, h) for h in ("h1", "h3")]
        out = tmp / "probe.json"
        prober = procs.start(
            [
                *("ip", "netns", "exec", net.ns("c"), sys.executable, "-c", PROBER),
                *(VIP2, str(ECHO_PORT), str(PROBE_INTERVAL), str(out), "60"),
            ],
            tmp / "prober.log",
        )
        time.sleep(1.5 + random.uniform(0.0, 0.1))

        # h2 dies: link down, then SIGKILL of its daemon(s).
        t_fail = time.monotonic()
        net.ip("h2", "link", "set", "eth0", "down")
        Procs.kill(system.daemons["h2"])

        def taken() -> bool:
            return any(w.added(VIP2, t_fail) is not None for w in watches)

        wait_until(taken, 10.0, f"{kind.name}: {VIP2} on another host")
        time.sleep(1.5)
        prober.send_signal(signal.SIGTERM)
        prober.wait(10)
        data = json.loads(out.read_text())

    sent: list[float] = data["sent"]
    got = sorted((float(t), int(seq), str(host)) for seq, t, host in data["got"])
    before = [g for g in got if g[0] < t_fail]
    after = [g for g in got if g[0] >= t_fail]
    if len(before) < 200 or not after:
        raise RuntimeError(
            f"{kind.name}: {len(before)} answers before the failure, {len(after)} after"
        )
    steady = [b[0] - a[0] for a, b in itertools.pairwise(before[-250:])]
    window = [before[-1], *after]
    outage = max(b[0] - a[0] for a, b in itertools.pairwise(window))
    answered = {seq for _, seq, _ in got}
    probes = [seq for seq, t in enumerate(sent) if t >= before[-1][0] - 0.1]
    spare_at = {w.host: w.added(VIP2, t_fail) for w in watches}
    spare, spare_t = min(
        ((h, t) for h, t in spare_at.items() if t is not None), key=lambda item: item[1]
    )
    return Run(
        index=index,
        system=kind.name,
        outage_ms=1000 * outage,
        lost=sum(1 for seq in probes if seq not in answered),
        first_answer_ms=1000 * (after[0][0] - t_fail),
        spare_ms=1000 * (spare_t - t_fail),
        spare=spare,
        answered_by=after[-1][2],
        steady_max_gap_ms=1000 * max(steady),
        tx_bps=tx_bps,
        cpu_pct=cpu_pct,
    )


# -- report -------------------------------------------------------------------


def keepalived_version() -> str:
    kav = subprocess.run(["keepalived", "--version"], capture_output=True, text=True)
    return (kav.stdout + kav.stderr).strip().splitlines()[0]


def fmt(values: list[float], digits: int = 0) -> str:
    return " / ".join(
        f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values))
    )


def tables(runs: list[Run]) -> str:
    lines = [
        "| system | runs | outage ms min / median / max | spare holds ms min / median / max "
        "| control bytes / host / s (mean; busiest host) | daemon CPU % (mean; busiest host) |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("rais", "keepalived"):
        mine = [r for r in runs if r.system == name]
        if not mine:
            continue
        tx_mean = statistics.median(statistics.mean(r.tx_bps.values()) for r in mine)
        tx_max = statistics.median(max(r.tx_bps.values()) for r in mine)
        cpu_mean = statistics.median(statistics.mean(r.cpu_pct.values()) for r in mine)
        cpu_max = statistics.median(max(r.cpu_pct.values()) for r in mine)
        lines.append(
            f"| {name} | {len(mine)} | {fmt([r.outage_ms for r in mine])} "
            f"| {fmt([r.spare_ms for r in mine])} | {tx_mean:.0f}; {tx_max:.0f} "
            f"| {cpu_mean:.2f}; {cpu_max:.2f} |"
        )
    lines += [
        "",
        "| run | system | outage ms | lost probes | first answer after failure ms "
        "| spare holds ms (host) | answered by | steady max gap ms | tx B/s h1 / h2 / h3 "
        "| CPU % h1 / h2 / h3 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        tx = " / ".join(f"{r.tx_bps[h]:.0f}" for h in HOSTS)
        cpu = " / ".join(f"{r.cpu_pct[h]:.2f}" for h in HOSTS)
        lines.append(
            f"| {r.index} | {r.system} | {r.outage_ms:.1f} | {r.lost} "
            f"| {r.first_answer_ms:.1f} | {r.spare_ms:.1f} ({r.spare}) | {r.answered_by} "
            f"| {r.steady_max_gap_ms:.1f} | {tx} | {cpu} |"
        )
    return "\n".join(lines)


METHOD = """\
`bench/failover.py` (run as root: `.venv/bin/python bench/failover.py --runs 5`)
builds, for every run and each system in turn (rais, keepalived, rais, ...), a
fresh lab from `tests/netlab.py`: hosts h1, h2, h3 on a Linux bridge (eth0
192.0.2.11-13/24) and a client c (192.0.2.200) with the route
`198.51.100.0/24 dev eth0`.

* **rais**: `rais agent` in each host, multicast control on eth0
  (239.192.0.1:7401), heartbeat H ms, timeout 3 x H; h1 prefers
  198.51.100.1/24, h2 198.51.100.2/24, h3 is the hot spare.
* **keepalived**: `keepalived -n -l -P -f CONF -p PID -r VRRP_PID` in each
  host, VRRPv3, multicast, advert_int H ms, one instance with 198.51.100.2/24:
  h2 MASTER priority 150, h3 BACKUP 100, h1 BACKUP 50; defaults otherwise (no
  `max_auto_priority`, i.e. no real-time scheduling; preemption on).

Once 198.51.100.2 is on h2 alone (and, for rais, 198.51.100.1 on h1 alone)
plus 1 s, with no probe traffic yet: **control bytes / host / s** is the
growth of `/sys/class/net/eth0/statistics/tx_bytes` (read inside each host
namespace; Ethernet frames, so 14 bytes of header each) over 5 s; **daemon
CPU %** is utime+stime from `/proc/PID/stat` over 10 s (for keepalived the
parent and its VRRP child together). "Mean" is over the three hosts, "busiest"
the highest host, each the median over runs. Then a UDP echo server (port 9,
bound to 0.0.0.0) runs in every host, and a prober in c sends a numbered
datagram to 198.51.100.2:9 every 5 ms and logs when each answer arrives. After
1.5 s of answers and a random 0-100 ms, h2 dies: `ip link set eth0 down` in
h2, then SIGKILL of its daemon's process group. **Outage** is the longest gap
between two consecutive answers, from the last answer before the failure on
(so it includes up to one 5 ms probe interval). **Spare holds** is the time
from the failure (just before the `ip link` command) to the address being
added on another host, as seen by `ip -o monitor address` in h1 and h3.
**First answer** is from the failure to the first answer after it; **steady
max gap** is the longest gap among the last 250 answers before the failure
(the prober's own jitter)."""


def report(runs: list[Run], args: argparse.Namespace, failures: list[str]) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    text = f"### {today}, {machine(keepalived_version())}\n\n"
    command = f"bench/failover.py --heartbeat-ms {HEARTBEAT_MS[0]} --runs {args.runs}"
    text += f"`{command}`, probe interval 5 ms.\n\n"
    text += tables(runs) + "\n"
    if failures:
        text += "\nRuns that failed (not in the table):\n\n"
        text += "".join(f"* {f}\n" for f in failures)
    return text


# -- main ---------------------------------------------------------------------


def ensure_keepalived() -> None:
    if shutil.which("keepalived"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "keepalived"]
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)
    if not shutil.which("keepalived"):
        raise SystemExit("keepalived is not installed and could not be installed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per system (default 5)")
    parser.add_argument("--readme", type=Path, default=ROOT / "bench" / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only print the tables")
    parser.add_argument(
        "--heartbeat-ms", type=int, default=100, help="heartbeat / advert_int (timeout 3x)"
    )
    parser.add_argument(
        "--only", choices=("rais", "keepalived"), help="measure one system (for debugging)"
    )
    args = parser.parse_args()
    HEARTBEAT_MS[0] = args.heartbeat_ms
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    ensure_keepalived()
    kinds: list[type[System]] = [k for k in (Rais, Keepalived) if args.only in (None, k.name)]
    runs: list[Run] = []
    failures: list[str] = []
    with interruptible(), tempfile.TemporaryDirectory(prefix="rais-bench-") as tmp:
        os.chmod(tmp, 0o755)
        for index in range(1, args.runs + 1):
            for kind in kinds:
                try:
                    run = one_run(kind, Path(tmp), index)
                except RuntimeError as exc:
                    failures.append(f"run {index}, {kind.name}: {exc}".splitlines()[0])
                    print(f"run {index} {kind.name}: FAILED: {exc}", file=sys.stderr, flush=True)
                    continue
                runs.append(run)
                print(
                    f"run {index} {kind.name}: outage {run.outage_ms:.1f} ms, "
                    f"spare ({run.spare}) holds after {run.spare_ms:.1f} ms, "
                    f"first answer {run.first_answer_ms:.1f} ms, lost {run.lost}",
                    file=sys.stderr,
                    flush=True,
                )
    section = report(runs, args, failures)
    print(section)
    if not args.no_readme and runs:
        add_to_readme(args.readme, HEADING, METHOD, section)
        print(f"appended to {args.readme}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
