"""Simulator figures for bench/README.md: wall time, deliveries per second of wall
time, max convergence and control bytes per host per second, for 3, 32 and 256
hosts (the runs named in issue 2).

Run: .venv/bin/python bench/sim_bench.py   (prints a Markdown table)
"""

from __future__ import annotations

import platform
import sys
import time

from rais.sim import SimParams
from rais.sim.cli import run_one, summary

RUNS = [
    (
        "3 hosts, 1 spare, hb 100 ms, 600 s",
        SimParams(hosts=3, spares=1, duration=600, seed=1, faults="random"),
    ),
    (
        "32 hosts, 2 spares, hb 100 ms, 600 s",
        SimParams(hosts=32, spares=2, duration=600, seed=1, faults="random"),
    ),
    (
        "256 hosts, 16 spares, hb 1 s, 120 s",
        SimParams(hosts=256, spares=16, heartbeat=1.0, duration=120, seed=1, faults="random"),
    ),
]


def main() -> int:
    print(
        f"machine: {platform.machine()}, {platform.processor() or '?'}, "
        f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}"
    )
    print()
    print(
        "| run | violations | wall s | deliveries | deliveries / wall s "
        "| max convergence s | control bytes / host / s | messages |"
    )
    print("|---|---|---|---|---|---|---|---|")
    worst = 0
    for name, params in RUNS:
        out = summary(run_one(params))
        worst = max(worst, out["violations"])
        print(
            f"| {name} | {out['violations']} | {out['wall_s']:.1f} | {out['deliveries']} "
            f"| {out['deliveries_per_wall_s']} | {out['max_convergence_s']} "
            f"| {out['bytes_per_host_per_s']} | {out['messages']} |",
            flush=True,
        )
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
