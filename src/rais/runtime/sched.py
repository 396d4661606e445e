"""How the agent's process asks the Linux scheduler for prompt wake-ups
(``[host] scheduler_slice`` and ``[host] realtime``; docs/operations.md,
"A busy machine").

* ``scheduler_slice`` (default 100 µs): a short EEVDF slice for the normal
  scheduling class (``sched_setattr`` with ``sched_runtime``, Linux 6.12 and
  later). It gives the agent no more CPU than any other task of its weight;
  it gives it an earlier virtual deadline, so that a wake-up (a heartbeat, a
  datagram) preempts a CPU-bound task instead of queueing behind the slices
  of all of them. Kernels without custom slices ignore it (logged once).
* ``nice`` (default -10): the CFS weight of the agent against other tasks.
  Under a CPU saturated by many tasks each gets an equal share of it; at a
  short heartbeat the agent needs more than that share for a moment at every
  wake-up, and nice -10 gives it about nine times a normal task's weight. It
  only matters while the agent wants the CPU, which it does for a few hundred
  microseconds per heartbeat. Needs CAP_SYS_NICE (the systemd unit sets
  ``Nice=`` itself); without it, a warning.
* ``realtime`` (default off): ``SCHED_RR`` at priority ``RT_PRIORITY`` and
  every page locked in memory (``mlockall``), as keepalived's
  ``vrrp_rt_priority`` and ``vrrp_no_swap``; needs CAP_SYS_NICE and
  CAP_IPC_LOCK (or root).

Applied to the calling thread (the event loop's) before the agent starts any
other; threads made later inherit it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import struct

log = logging.getLogger("rais.agent")

SCHED_OTHER = 0
SCHED_RR = 2
RT_PRIORITY = 10
"""A modest real-time priority: above every normal task, below the kernel's
own threads and most other real-time daemons (keepalived's default is 0, i.e.
off; its documented examples use 1-99)."""
MCL_CURRENT, MCL_FUTURE = 1, 2
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "armv7l": 380, "i686": 351}
_ATTR = struct.Struct("=IIQiIQQQII")  # struct sched_attr (size 56)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def set_slice(seconds: float) -> str | None:
    """Ask for an EEVDF slice of ``seconds`` for this thread (normal class,
    nice 0 kept); None on success, else why not."""
    number = _SYS_SCHED_SETATTR.get(platform.machine())
    if number is None:
        return f"sched_setattr: unknown system call number on {platform.machine()}"
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    attr = _ATTR.pack(_ATTR.size, SCHED_OTHER, 0, nice, 0, int(seconds * 1e9), 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr, _ATTR.size)
    if _libc().syscall(number, 0, buf, 0) != 0:
        return f"sched_setattr: {os.strerror(ctypes.get_errno())}"
    return None


def go_realtime() -> str | None:
    """SCHED_RR at ``RT_PRIORITY`` and memory locked; None on success, else why not."""
    problems = []
    try:
        os.sched_setscheduler(0, SCHED_RR, os.sched_param(RT_PRIORITY))
    except OSError as exc:
        problems.append(f"SCHED_RR: {exc.strerror}")
    if _libc().mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        problems.append(f"mlockall: {os.strerror(ctypes.get_errno())}")
    return "; ".join(problems) or None


def set_nice(nice: int) -> str | None:
    """The process's nice value (a negative one needs CAP_SYS_NICE); None on
    success, else why not."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        return f"setpriority({nice}): {exc.strerror}"
    return None


def apply(slice_s: float, realtime: bool, nice: int = 0) -> list[str]:
    """Apply the ``[host]`` settings; returns what could not be done (logged)."""
    problems = []
    if nice and os.getpriority(os.PRIO_PROCESS, 0) != nice:
        why = set_nice(nice)
        if why is not None:
            problems.append(f"nice = {nice}: {why}")
    if realtime:
        why = go_realtime()
        if why is not None:
            problems.append(f"realtime = true: {why}")
    elif slice_s > 0:
        why = set_slice(slice_s)
        if why is not None:
            problems.append(f"scheduler_slice: {why}")
    for problem in problems:
        log.warning("scheduling: %s (running without it)", problem)
    return problems
