"""The supervision rules (rais.runtime.supervise) on their own: restart with backoff,
fatal once, cancellation passes through."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from rais.runtime.supervise import Part, Supervisor


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.fatal: list[str] = []

    def event(self, kind: str, part: Part, reason: str) -> None:
        self.events.append((kind, part.name, reason))

    def on_fatal(self, reason: str) -> None:
        self.fatal.append(reason)


def supervisor(tg: asyncio.TaskGroup, rec: Recorder, **kw: float) -> Supervisor:
    loop = asyncio.get_running_loop()
    return Supervisor(tg, on_event=rec.event, on_fatal=rec.on_fatal, clock=loop.time, **kw)


async def until(cond: object, limit: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError("condition not met")
        await asyncio.sleep(0.001)


async def test_a_kept_part_is_restarted_with_doubling_backoff() -> None:
    rec = Recorder()
    starts: list[float] = []
    downs: list[str] = []
    loop = asyncio.get_running_loop()

    async def flaky() -> None:
        starts.append(loop.time())
        if len(starts) <= 3:
            raise OSError(f"boom {len(starts)}")
        await asyncio.Event().wait()

    async with asyncio.TaskGroup() as tg:
        sup = supervisor(tg, rec, backoff_min=0.02, backoff_max=0.05)
        part = sup.keep("probes", flaky, on_down=downs.append)
        await until(lambda: len(starts) == 4)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.05
        delays = [r.split("restarting in ")[1] for k, _, r in rec.events if k == "part-failed"]
        assert delays == ["0.02s", "0.04s", "0.05s"]  # doubling, capped at 0.05
        assert part.state == "running" and part.restarts == 3
        assert part.last_error == "OSError: boom 3"
        assert downs == ["OSError: boom 1", "OSError: boom 2", "OSError: boom 3"]
        kinds = [k for k, _, _ in rec.events]
        assert kinds == ["part-failed", "part-restarted"] * 3
        assert "restarting in 0.02s" in rec.events[0][2]
        assert rec.fatal == []
        status = sup.status()
        assert status[0].name == "probes" and status[0].restarts == 3
        assert status[0].essential is False and status[0].group is None
        sup.stop_all()


async def test_a_part_that_returns_counts_as_failed() -> None:
    rec = Recorder()
    runs = 0

    async def returns() -> None:
        nonlocal runs
        runs += 1

    async with asyncio.TaskGroup() as tg:
        sup = supervisor(tg, rec, backoff_min=0.01)
        sup.keep("dns", returns)
        await until(lambda: runs >= 2)
        assert rec.events[0][:2] == ("part-failed", "dns")
        assert "stopped by itself" in rec.events[0][2]
        sup.stop_all()


async def test_backoff_starts_over_after_a_stable_run() -> None:
    rec = Recorder()
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    async def slow_then_fail() -> None:
        starts.append(loop.time())
        await asyncio.sleep(0.05 if len(starts) == 3 else 0)
        raise RuntimeError("x")

    async with asyncio.TaskGroup() as tg:
        sup = supervisor(tg, rec, backoff_min=0.01, backoff_max=1.0, stable_after=0.04)
        sup.keep("snmp", slow_then_fail)
        await until(lambda: len(starts) >= 4)
        sup.stop_all()
    delays = [r.split("restarting in ")[1] for k, _, r in rec.events if k == "part-failed"]
    # 0.01, 0.02, then the third run lasted past stable_after: 0.01 again
    assert delays[:3] == ["0.01s", "0.02s", "0.01s"]


async def test_a_needed_part_that_fails_is_fatal_once() -> None:
    rec = Recorder()

    async def dies() -> None:
        raise RuntimeError("refresh broke")

    async with asyncio.TaskGroup() as tg:
        sup = supervisor(tg, rec)
        part = sup.need("refresher www", dies, group="www")
        await until(lambda: rec.fatal != [])
        sup.fatal("transport www", "later failure")
        assert rec.fatal == ["refresher www: RuntimeError: refresh broke"]
        assert part.state == "failed" and part.essential
        assert sup.failed == "refresher www: RuntimeError: refresh broke"
        assert sup.status()[0].group == "www"


async def test_stopping_cancels_and_cancellation_is_not_a_failure() -> None:
    rec = Recorder()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async with asyncio.TaskGroup() as tg:
        sup = supervisor(tg, rec)
        sup.keep("dns update www", forever, group="www")
        sup.need("refresher www", forever, group="www")
        await asyncio.sleep(0)
        sup.stop("refresher www")
        sup.stop("dns update www")
    assert cancelled.is_set()
    assert rec.events == [] and rec.fatal == []
    assert sup.parts == {}


async def test_a_name_runs_once() -> None:
    rec = Recorder()

    async def forever() -> None:
        await asyncio.Event().wait()

    async with asyncio.TaskGroup() as tg:
        sup = supervisor(tg, rec)
        sup.keep("probes", forever)
        with pytest.raises(ValueError, match="already running"):
            sup.keep("probes", forever)
        sup.stop_all()
