"""``rais sim``: run the simulator and report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from rais.sim.engine import Simulation
from rais.sim.params import SimParams, SimResult


def params_from(args: argparse.Namespace, seed: int) -> SimParams:
    return SimParams(
        hosts=args.hosts,
        spares=args.spares,
        observers=args.observers,
        duration=args.duration,
        seed=seed,
        heartbeat=args.heartbeat,
        timeout=args.timeout,
        loss=args.loss,
        faults=args.faults,
        networks=args.networks,
        orphan_timeout=args.orphan_timeout,
        ipv6=args.ipv6,
        exact_duplicates=args.exact_duplicates,
        old=args.old,
        sets=args.sets,
        guard=args.guard,
        lease=args.lease,
        on_arbiter_loss=args.on_arbiter_loss,
        # getattr: rais.cli may not have the flag yet
        late_steady=args.late_steady,
    )


def replay_command(p: SimParams) -> str:
    parts = [
        "rais sim",
        f"--hosts {p.hosts}",
        f"--spares {p.spares}",
        f"--duration {p.duration:g}",
        f"--seed {p.seed}",
        f"--heartbeat {p.heartbeat:g}",
    ]
    if p.observers:
        parts.append(f"--observers {p.observers}")
    if p.timeout:
        parts.append(f"--timeout {p.timeout:g}")
    if p.loss:
        parts.append(f"--loss {p.loss:g}")
    if p.faults != "none":
        parts.append(f"--faults {p.faults}")
    if p.networks != 2:
        parts.append(f"--networks {p.networks}")
    if p.orphan_timeout != 8.0:
        parts.append(f"--orphan-timeout {p.orphan_timeout:g}")
    if p.ipv6:
        parts.append("--ipv6")
    if p.exact_duplicates:
        parts.append("--exact-duplicates")
    if p.old:
        parts.append(f"--old {p.old:g}")
    if p.sets:
        parts.append(f"--sets {p.sets:g}")
    if p.late_steady:
        parts.append("--late-steady")
    if p.guard != "none":
        parts.append(f"--guard {p.guard} --lease {p.lease:g}")
        if p.guard == "etcd" and p.on_arbiter_loss != "hold":
            parts.append(f"--on-arbiter-loss {p.on_arbiter_loss}")
    return " ".join(parts)


def summary(result: SimResult) -> dict[str, Any]:
    p = result.params
    wall = max(result.wall_s, 1e-9)
    return {
        "seed": p.seed,
        "hosts": p.hosts,
        "spares": p.spares,
        "heartbeat_s": p.heartbeat,
        "timeout_s": round(p.effective_timeout, 6),
        "duration_s": p.duration,
        "violations": len(result.violations),
        "violation_list": [asdict(v) for v in result.violations[:20]],
        "max_convergence_s": result.max_convergence_s,
        "convergences": len(result.convergences),
        "messages": result.messages,
        "bytes": result.bytes,
        "bytes_per_host_per_s": round(result.bytes / p.hosts / p.duration, 1),
        "deliveries": result.deliveries,
        "held": result.held,
        "deliveries_per_wall_s": round(result.deliveries / wall),
        "dropped": result.dropped,
        "faults": result.faults,
        "injected_bad": result.injected,
        "acquisitions": result.failovers,
        "events": result.events,
        "trace_sha256": result.trace_sha256,
        "wall_s": round(result.wall_s, 3),
        "replay": replay_command(p),
    }


def run_one(params: SimParams, trace: str | None = None) -> SimResult:
    sim = Simulation(params, keep_trace=trace is not None)
    start = time.perf_counter()
    result = sim.run()
    result.wall_s = time.perf_counter() - start
    if trace is not None and sim.trace_lines is not None:
        text = "".join(sim.trace_lines)
        if trace == "-":
            sys.stdout.write(text)
        else:
            with open(trace, "w", encoding="utf-8") as f:
                f.write(text)
    return result


def run_sim(args: argparse.Namespace) -> int:
    try:
        params_from(args, args.seed).validate()
    except ValueError as exc:
        print(f"rais sim: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for seed in range(args.seed, args.seed + max(1, args.seeds)):
        result = run_one(params_from(args, seed), args.trace)
        out = summary(result)
        if result.violations:
            failed += 1
            print(
                f"rais sim: seed {seed}: {len(result.violations)} invariant violation(s); "
                f"replay with: {out['replay']}",
                file=sys.stderr,
            )
            for v in result.violations[:5]:
                print(f"  {v.invariant} at t={v.time}s: {v.detail}", file=sys.stderr)
        if args.json:
            print(json.dumps(out))
        else:
            print(
                f"seed {seed}: {out['violations']} violations, max convergence "
                f"{out['max_convergence_s']}s, {out['messages']} messages, {out['bytes']} bytes, "
                f"{out['deliveries']} deliveries, wall {out['wall_s']}s"
            )
    return 1 if failed else 0
