"""How late the kernel removes an address whose valid lifetime ran out.

Needs root and iproute2. Run::

    .venv/bin/python bench/kernel_lifetime.py [--trials 10] [--no-readme]

A guard (issue 13) sets the kernel lifetime of every held address to no more
than its lease, so that a stalled agent loses its addresses by the kernel's
hand; a leader takes such an address over only ``lease + KERNEL_SLACK`` after
the last claim (rais.core.config.KERNEL_SLACK, 1.5 s). This script measures
the slack: in a namespace of its own (``rais-klt-PID-N``, a veth pair, eth0
up with 198.51.100.200/24), for ``valid_lft`` 1 and 2 s, ``--trials`` times
each, it adds 198.51.100.1/24 with ``valid_lft L preferred_lft L``, refreshes
it three times 250 ms apart (``ip addr replace``, what an agent's refresher
does), then stops refreshing, at a random phase. ``ip -o -ts monitor address
dev eth0`` times both the last refresh and the kernel's ``Deleted`` line; the
*lateness* is ``deleted - last refresh - L``.

The conditions, because the kernel's IPv4 lifetime check (devinet.c,
``check_lifetime``) is a timer that runs at once on every address change and
then not again for at least 1 s (``ADDRCONF_TIMER_FUZZ_MAX``):

* ``idle``: nothing else changes addresses in the namespace;
* ``busy``: another address of the namespace (198.51.100.2, lifetime 2 s) is
  refreshed every 250 ms all along, as an agent of another group does;
* ``after-change``: idle, but one other address is added to the namespace
  50 to 950 ms (random) before the lifetime runs out (the worst case: the
  timer ran just then and waits 1 s);
* ``after-expiry``: another address of the namespace, not refreshed, runs out
  50 to 950 ms before this one (a stalled agent whose addresses' lifetimes
  end apart); with ``valid_lft`` 1 the last refresh itself reschedules the
  timer, so both go together;
* ``other-ns-change``: as ``after-change``, the add in a second namespace
  (does one namespace's change delay another's removal?).

Everything it makes is removed at the end, also on failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchkit import add_to_readme, interruptible, machine  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "rais-klt"
ADDRESS = "198.51.100.1"
OTHER = "198.51.100.2"
REFRESHES = 3
REFRESH_EVERY = 0.25
CONDITIONS = ("idle", "busy", "after-change", "after-expiry", "other-ns-change")
HEADING = "## Kernel removal of an expired address (issue 13, KERNEL_SLACK)"
STAMP = re.compile(r"^\[([^\]]+)\] ?")


def ip(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=10)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def stamped(line: str) -> tuple[float | None, str]:
    """A monitor line's wall-clock stamp (the last, when ``ip`` prints several)
    and the rest of the line."""
    at = None
    while m := STAMP.match(line):
        at = datetime.datetime.fromisoformat(m.group(1)).timestamp()
        line = line[m.end() :]
    return at, line


class Monitor:
    """``ip -o -ts monitor address dev eth0`` in a namespace: (stamp, line)."""

    def __init__(self, ns: str) -> None:
        argv = ["ip", "-n", ns, "-o", "-ts", "monitor", "address", "dev", "eth0"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        time.sleep(0.2)  # subscribed before the first change

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            at, line = stamped(raw)
            if at is not None:
                self.lines.append((at, line))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.thread.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def last_change(self, address: str, deleted: bool, after: float) -> float | None:
        hits = [
            at
            for at, line in list(self.lines)
            if at >= after and f" {address}/" in line and line.startswith("Deleted") == deleted
        ]
        return hits[-1] if hits else None


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[str]]:
    for name in ip("netns", "list").split():
        if name.startswith(PREFIX + "-"):
            pid = name.split("-")[2]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                ip("netns", "del", name, check=False)
    made: list[str] = []
    try:
        for i in range(count):
            ns = f"{PREFIX}-{os.getpid()}-{i}"
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth9")
            ip("-n", ns, "link", "set", "eth9", "up")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "addr", "add", "198.51.100.200/24", "dev", "eth0")
        yield made
    finally:
        for ns in made:
            ip("netns", "del", ns, check=False)


class Busy:
    """Refreshes OTHER (lifetime 2 s) in ``ns`` every 250 ms until stopped."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.done = threading.Event()
        ip("-n", ns, "addr", "add", f"{OTHER}/24", "dev", "eth0", *lifetime(2))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(REFRESH_EVERY):
            ip("-n", self.ns, "addr", "replace", f"{OTHER}/24", "dev", "eth0", *lifetime(2))

    def stop(self) -> None:
        self.done.set()
        self.thread.join(10)
        ip("-n", self.ns, "addr", "del", f"{OTHER}/24", "dev", "eth0", check=False)


def lifetime(seconds: int) -> list[str]:
    return ["valid_lft", str(seconds), "preferred_lft", str(seconds)]


@dataclass
class Trial:
    condition: str
    lifetime: int
    lateness: float
    """Seconds from the last refresh + lifetime to the Deleted line."""


def one_trial(ns: str, other: str, monitor: Monitor, lft: int, condition: str) -> Trial:
    """Add, refresh, stop refreshing; the condition's other event on the way."""
    time.sleep(random.uniform(0, 1))  # a random phase against the kernel's timer
    start = time.time()
    last = REFRESHES * REFRESH_EVERY
    plan: list[tuple[float, str, list[str]]] = [
        (i * REFRESH_EVERY, ns, ["replace" if i else "add", f"{ADDRESS}/24", *lifetime(lft)])
        for i in range(REFRESHES + 1)
    ]
    early = random.uniform(0.05, 0.95)  # before ADDRESS runs out at last + lft
    if condition == "after-change":
        plan.append((last + lft - early, ns, ["add", f"{OTHER}/24"]))
    elif condition == "other-ns-change":
        plan.append((last + lft - early, other, ["add", f"{OTHER}/24"]))
    elif condition == "after-expiry":
        plan.append((last + lft - early - 1, ns, ["add", f"{OTHER}/24", *lifetime(1)]))
    for at, where, (verb, address, *more) in sorted(plan):
        time.sleep(max(0.0, start + at - time.time()))
        ip("-n", where, "addr", verb, address, "dev", "eth0", *more)
    deadline = time.time() + lft + 5
    while (gone := monitor.last_change(ADDRESS, True, start)) is None:
        if time.time() > deadline:
            ip("-n", ns, "addr", "del", f"{ADDRESS}/24", "dev", "eth0", check=False)
            raise RuntimeError(f"{ADDRESS} (valid_lft {lft}) still there after {lft + 5} s")
        time.sleep(0.01)
    if condition in ("after-change", "other-ns-change", "after-expiry"):
        time.sleep(0.1)
        for where in (ns, other):
            ip("-n", where, "addr", "del", f"{OTHER}/24", "dev", "eth0", check=False)
    last_refresh = monitor.last_change(ADDRESS, False, start)
    assert last_refresh is not None
    return Trial(condition, lft, gone - last_refresh - lft)


def report(trials: list[Trial], args: argparse.Namespace) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### {today}, {machine()}",
        "",
        f"`bench/kernel_lifetime.py --trials {args.trials}`: lateness = Deleted line - "
        "(last refresh + valid_lft), from `ip -o -ts monitor address` stamps, in ms.",
        "",
        "| condition | valid_lft s | trials | lateness ms min / median / max | every trial ms |",
        "|---|---|---|---|---|",
    ]
    worst = 0.0
    for condition in CONDITIONS:
        for lft in (1, 2):
            late = [t.lateness for t in trials if t.condition == condition and t.lifetime == lft]
            if not late:
                continue
            worst = max(worst, *late)
            every = ", ".join(f"{1000 * x:.0f}" for x in late)
            lines.append(
                f"| {condition} | {lft} | {len(late)} | {1000 * min(late):.0f} / "
                f"{1000 * statistics.median(late):.0f} / {1000 * max(late):.0f} | {every} |"
            )
    lines += ["", f"Latest removal: {1000 * worst:.0f} ms after the lifetime ran out.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=10, help="trials per lifetime (10)")
    parser.add_argument("--readme", type=Path, default=ROOT / "bench" / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="only print the table")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    trials: list[Trial] = []
    with interruptible(), namespaces(2) as (ns, other):
        monitor = Monitor(ns)
        try:
            for condition in CONDITIONS:
                busy = Busy(ns) if condition == "busy" else None
                try:
                    for lft in (1, 2):
                        for i in range(args.trials):
                            trial = one_trial(ns, other, monitor, lft, condition)
                            trials.append(trial)
                            print(
                                f"{condition} valid_lft {lft} trial {i + 1}: "
                                f"{1000 * trial.lateness:.0f} ms late",
                                file=sys.stderr,
                                flush=True,
                            )
                finally:
                    if busy is not None:
                        busy.stop()
        finally:
            monitor.stop()
    section = report(trials, args)
    print(section)
    if not args.no_readme:
        add_to_readme(args.readme, HEADING, __doc__.split("\n\n", 1)[1], section)
        print(f"appended to {args.readme}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
