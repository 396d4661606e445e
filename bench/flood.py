"""Junk flood at the control port: false failovers and agent CPU (issue 14, goal 4).

Needs root (network namespaces), iproute2 and gcc. Run::

    .venv/bin/python bench/flood.py [--rates 300000] [--junk mixed] [--seconds 10]
        [--heartbeat-ms 100] [--senders 8] [--src DIR] [--no-readme]

The lab of bench/starved.py (bench/labkit.py: h1, h2, h3 on a bridge, a rais
agent in each, h1 prefers 198.51.100.1/24, h2 198.51.100.2/24, h3 the spare,
heartbeat H, timeout 3 H, defaults otherwise) plus a fourth host j
(192.0.2.250, no key). j first captures one real rais datagram off the
multicast group; then, after a quiet window, ``--senders`` copies of
bench/flood.c (built with gcc into the temp directory) send junk from j for
``--seconds`` at ``--rates`` per second in all: half to the group
239.192.0.1:7401, a sixth to each host's control address 192.0.2.1N:7401.
Junk is random bytes, or the captured datagram with its HMAC replaced by
random bytes (``rais``), or both in turn (``mixed``), or ``mixed`` to a port
nobody listens on (``closed``, the lab's baseline). See METHOD for what is
counted. Everything it makes is removed at the end, also on failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from benchkit import add_to_readme, interruptible, machine  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from failover import cpu_ticks  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from labkit import (  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
    HOSTS,
    Rais,
    check_alive,
    cpu_pct,
    delta,
    describe_src,
    event_count,
    lateness_table,
    loadavg,
    started,
    summed_lateness,
)
from netlab import Lab  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

PREFIX = "rais-flood"
JUNK_HOST = "j"
GROUP, PORT = "239.192.0.1", 7401
CLOSED_PORT = 7409
"""Junk kind "closed": mixed junk to this port, where nothing listens (the cost
of the flood to the machine without an agent reading it: the lab's baseline)."""
HEADING = "## Junk flood (netns lab)"
UDP_FIELDS = ("InDatagrams", "NoPorts", "InErrors", "RcvbufErrors")
CAPTURE = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
index = socket.if_nametoindex("eth0")
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4si", socket.inet_aton(sys.argv[1]), bytes(4), index))
s.settimeout(5.0)
while True:
    data = s.recv(2048)
    if data[:2] == b"RS" and len(data) > 40:
        break
open(sys.argv[3], "wb").write(data)
"""


def counter(net: Lab, host: str, name: str) -> int:
    path = f"/sys/class/net/eth0/statistics/{name}"
    return int(net.run(host, "cat", path).stdout.strip())


def udp_stats(net: Lab, host: str) -> dict[str, int]:
    """The Udp: line of /proc/net/snmp in ``host``'s namespace."""
    lines = [ln.split() for ln in net.run(host, "cat", "/proc/net/snmp").stdout.splitlines()]
    names, values = (ln for ln in lines if ln and ln[0] == "Udp:")
    table = dict(zip(names[1:], values[1:], strict=True))
    return {f: int(table.get(f, "0")) for f in UDP_FIELDS}


def targets(net: Lab, which: str, port: int) -> list[str]:
    """Destinations for flood.c, in turn: 'both' gives the group half."""
    unicast = [f"{net.ipv4(h)}:{port}" for h in HOSTS]
    if which == "multicast":
        return [f"{GROUP}:{port}"]
    if which == "unicast":
        return unicast
    return [x for u in unicast for x in (f"{GROUP}:{port}", u)]


@dataclass
class Flood:
    rate: int
    junk: str
    seconds: float
    sent: int
    errors: int
    tx_j: int
    rx: dict[str, int]
    udp: dict[str, dict[str, int]]
    received: dict[str, float]
    dropped: dict[str, dict[str, float]]
    false: dict[str, int]
    drops: int
    events: dict[str, float]
    cpu_quiet: dict[str, float]
    cpu_flood: dict[str, float]
    late_quiet: list[float]
    late_flood: list[float]
    template: int
    notes: str


def build(tmp: Path) -> Path:
    if shutil.which("gcc") is None:
        raise SystemExit("needs gcc (apt-get install gcc)")
    exe = tmp / "flood"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(ROOT / "bench" / "flood.c")], check=True)
    return exe


def one_flood(args: argparse.Namespace, exe: Path, tmp: Path, rate: int, junk: str) -> Flood:
    with started(Rais, tmp, args.heartbeat_ms, PREFIX, extra=JUNK_HOST) as (net, procs, sys_, log):
        template = tmp / "template.bin"
        net.run(JUNK_HOST, sys.executable, "-c", CAPTURE, GROUP, str(PORT), str(template))
        pids = {h: sys_.pids(h) for h in HOSTS}
        q0 = sys_.snapshot()
        c0 = {h: cpu_ticks(pids[h]) for h in HOSTS}
        t = time.monotonic()
        time.sleep(args.quiet_seconds)
        cpu_q = cpu_pct(sys_, c0, time.monotonic() - t)
        s0 = sys_.snapshot()
        rx0 = {h: counter(net, h, "rx_packets") for h in HOSTS}
        tx0 = counter(net, JUNK_HOST, "tx_packets")
        udp0 = {h: udp_stats(net, h) for h in HOSTS}
        c0 = {h: cpu_ticks(pids[h]) for h in HOSTS}
        t0 = time.monotonic()
        pin = ["taskset", "-c", args.sender_cpus] if args.sender_cpus else []
        argv = [*pin, "ip", "netns", "exec", net.ns(JUNK_HOST), str(exe)]
        mode, port = ("mixed", CLOSED_PORT) if junk == "closed" else (junk, PORT)
        argv += [str(rate / args.senders), str(args.seconds), mode, str(template)]
        argv += targets(net, args.targets, port)
        senders = [procs.start(argv, pipe=True) for _ in range(args.senders)]
        outs = []
        for p in senders:
            out, _ = p.communicate(timeout=args.seconds + 60)
            outs.append(out.decode().split())
        t1 = time.monotonic()
        cpu_f = cpu_pct(sys_, c0, t1 - t0)
        rx = {h: counter(net, h, "rx_packets") - rx0[h] for h in HOSTS}
        tx_j = counter(net, JUNK_HOST, "tx_packets") - tx0
        udp = {h: {k: v - udp0[h][k] for k, v in udp_stats(net, h).items()} for h in HOSTS}
        time.sleep(1.0)
        dead = check_alive(sys_)
        s1 = sys_.snapshot()
        if any(len(o) < 6 or o[0] != "sent" for o in outs):
            raise RuntimeError(f"flood sender output: {outs}")
        prefix = 'rais_control_datagrams_dropped_total{group="www",reason="'
        dropped = {
            h: {
                k[len(prefix) : -2]: s1[h][k] - s0[h].get(k, 0.0)
                for k in s1[h]
                if k.startswith(prefix) and s1[h][k] > s0[h].get(k, 0.0)
            }
            for h in HOSTS
        }
        return Flood(
            rate=rate,
            junk=junk,
            seconds=max(float(o[5]) for o in outs),
            sent=sum(int(o[1]) for o in outs),
            errors=sum(int(o[3]) for o in outs),
            tx_j=tx_j,
            rx=rx,
            udp=udp,
            received={
                h: delta(s1[h], s0[h], 'rais_control_datagrams_received_total{group="www"}')
                for h in HOSTS
            },
            dropped=dropped,
            false=log.false_failovers(t0, t1 + 1.0),
            drops=log.holder_drops(t0, t1 + 1.0),
            events={
                k: sum(event_count(s1[h], s0[h], k) for h in HOSTS)
                for k in ("host-lost", "leader-changed", "acquired")
            },
            cpu_quiet=cpu_q,
            cpu_flood=cpu_f,
            late_quiet=summed_lateness(s0, q0),
            late_flood=summed_lateness(s1, s0),
            template=template.stat().st_size,
            notes=f"agent exited on {', '.join(dead)}" if dead else "",
        )


def tables(floods: list[Flood]) -> str:
    per_host = " / ".join(HOSTS)
    lines = [
        "| junk | target /s | sent /s (refused) | j eth0 tx /s | rx /s "
        f"{per_host} | false failovers .1 / .2 | steady holder lost it "
        "| host-lost / leader-changed / acquired | agent CPU % quiet "
        f"{per_host} | agent CPU % flood {per_host} | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in floods:
        s = f.seconds
        rx = " / ".join(f"{f.rx[h] / s:,.0f}" for h in HOSTS)
        cq = " / ".join(f"{f.cpu_quiet[h]:.1f}" for h in HOSTS)
        cf = " / ".join(f"{f.cpu_flood[h]:.1f}" for h in HOSTS)
        ev = " / ".join(f"{v:.0f}" for v in f.events.values())
        ff = " / ".join(str(v) for v in f.false.values())
        lines.append(
            f"| {f.junk} | {f.rate:,} | {f.sent / s:,.0f} ({f.errors / s:,.0f}) "
            f"| {f.tx_j / s:,.0f} | {rx} | {ff} | {f.drops} | {ev} | {cq} | {cf} | {f.notes} |"
        )
    lines += [
        "",
        "| junk, target | host | UDP " + " | UDP ".join(UDP_FIELDS) + " | agent received "
        "| agent dropped, by reason |",
        "|---|---|" + "---|" * len(UDP_FIELDS) + "---|---|",
    ]
    for f in floods:
        for h in HOSTS:
            udp = " | ".join(f"{f.udp[h][k]:,}" for k in UDP_FIELDS)
            why = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(f.dropped[h].items())) or "-"
            lines.append(f"| {f.junk} {f.rate:,}/s | {h} | {udp} | {f.received[h]:,.0f} | {why} |")
    rows = [(f"{f.junk} {f.rate:,}/s", f.late_quiet, f.late_flood) for f in floods]
    lines += ["", "Heartbeat lateness, all three agents, ms:", ""]
    return "\n".join(lines) + "\n" + lateness_table(rows, "flood")


METHOD = """\
`bench/flood.py` (run as root: `.venv/bin/python bench/flood.py`) builds, for
every rate and kind of junk, a fresh lab of `bench/labkit.py` (the one of
`bench/starved.py`): hosts h1, h2, h3 on a Linux bridge, `rais agent` in each
(the tree given by `--src`), multicast control on eth0 (239.192.0.1:7401),
heartbeat H (100 ms), timeout 3 H, defaults otherwise; h1 prefers
198.51.100.1/24, h2 198.51.100.2/24, h3 is the spare. A fourth host j
(192.0.2.250/24, on the same bridge, no key) joins the group and keeps the
first rais datagram it hears (the template). Once settled + 2 s: a quiet
window (10 s), then `--senders` processes of `bench/flood.c` (gcc -O2,
`sendmmsg` in batches of 64, paced) in j send junk for 10 s at the target
rate in all, in turn to the group and to one host's control address
192.0.2.1N:7401 (half to the group, a sixth to each host; an agent with
multicast control listens on the group only, so the unicast part ends at
the host's kernel as a closed port). Junk `random`: 16-512 random bytes;
`rais`: the template with its last 32 bytes (the HMAC) random, so magic,
version, key hint, group tag and lengths all pass and only the HMAC check
drops it; `mixed`: the two in turn for each destination; `closed`: `mixed`
to port 7409 instead, where nothing listens (the baseline: what the flood
costs the machine, senders included, without an agent reading it). The
senders run on the same two cores as the agents and the receiving kernels'
work is done in their context, so a flood takes CPU from the agents that a
flood from another machine would not: compare with `closed`.

**sent /s** is what the senders counted as sent by `sendmmsg` (refused: the
kernel's errors), **j eth0 tx /s** and **rx /s** the growth of the
interfaces' `tx_packets` / `rx_packets` (in j, in each host), all over the
flood. **False failovers** and **steady holder lost it** as in
`bench/starved.py` (from the flood's start to 1 s after its end); events and
heartbeat lateness from the agents' `/metrics` (deltas, all three agents);
**agent CPU %** utime+stime over the quiet window and over the flood (100 %
is one core). The second table has each host's UDP counters from
`/proc/net/snmp` over the flood (NoPorts: the unicast junk; RcvbufErrors:
dropped because the agent's socket buffer was full) and what the agent
counted (`rais_control_datagrams_received_total`, and
`rais_control_datagrams_dropped_total` by reason, over the flood + 1 s)."""


def report(floods: list[Flood], args: argparse.Namespace, failures: list[str]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"### {now}, {machine()}\n\n"
    command = f"bench/flood.py --rates {args.rates} --junk {args.junk} --seconds {args.seconds}"
    command += f" --heartbeat-ms {args.heartbeat_ms} --senders {args.senders}"
    command += f" --targets {args.targets}"
    template = f", template {floods[0].template} bytes" if floods else ""
    text += f"`{command}`, src {describe_src(args.src)}{template}, "
    text += f"load average at the start {args.load}.\n\n"
    text += tables(floods) + "\n"
    if failures:
        text += "\nFloods that failed (not in the table):\n\n"
        text += "".join(f"* {f}\n" for f in failures)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rates", default="300000", help="datagrams per second in all")
    parser.add_argument("--junk", default="mixed", help="random, rais, mixed, closed (a list)")
    parser.add_argument("--targets", default="both", choices=("both", "multicast", "unicast"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quiet-seconds", type=float, default=10.0)
    parser.add_argument("--heartbeat-ms", type=int, default=100, help="timeout 3x")
    parser.add_argument("--senders", type=int, default=8, help="sender processes")
    parser.add_argument("--sender-cpus", default="", help="taskset CPU list for the senders")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the rais tree to run")
    parser.add_argument("--readme", type=Path, default=ROOT / "bench" / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only print the tables")
    args = parser.parse_args()
    kinds = args.junk.split(",")
    if not set(kinds) <= {"random", "rais", "mixed", "closed"}:
        parser.error("--junk: random, rais, mixed, closed")
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    args.src = args.src.resolve()
    args.load = loadavg()
    Rais.src = args.src
    floods: list[Flood] = []
    failures: list[str] = []
    with interruptible(), tempfile.TemporaryDirectory(prefix="rais-flood-") as tmp:
        os.chmod(tmp, 0o755)
        exe = build(Path(tmp))
        for rate in (int(r) for r in args.rates.split(",")):
            for junk in kinds:
                try:
                    f = one_flood(args, exe, Path(tmp) / f"{junk}-{rate}", rate, junk)
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    failures.append(f"{junk} at {rate}/s: {exc}".splitlines()[0])
                    print(f"{junk} {rate}/s: FAILED: {exc}", file=sys.stderr, flush=True)
                    continue
                floods.append(f)
                print(
                    f"{junk} {rate}/s: sent {f.sent / f.seconds:,.0f}/s, false failovers "
                    f"{f.false}, CPU {f.cpu_quiet} -> {f.cpu_flood}",
                    file=sys.stderr,
                    flush=True,
                )
    section = report(floods, args, failures)
    print(section)
    if not args.no_readme and floods:
        add_to_readme(args.readme, HEADING, METHOD, section)
        print(f"appended to {args.readme}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
