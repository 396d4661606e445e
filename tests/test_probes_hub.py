"""Tests of ProbeHub (src/rais/probes/hub.py) with scripted check functions, a
fake clock and fake /proc and /sys trees, plus one run with the real checks;
and of FakeProbeHub (src/rais/probes/fake.py)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from rais.probes.fake import FakeProbeHub
from rais.probes.hub import ProbeHub
from rais.probes.spec import LoadSpec, TestSpec
from rais.probes.state import Board, LoadState, TestState, step

FAST = 0.001
"""Interval of the scripted tests: results come as fast as the test feeds them."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], bool], what: str = "condition") -> None:
    """Waits (at most 3 s) for the hub's tasks to make ``condition`` true."""
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


class Script:
    """A check function whose results the test feeds one at a time."""

    def __init__(self) -> None:
        self.queues: defaultdict[str, asyncio.Queue[tuple[bool, str]]] = defaultdict(asyncio.Queue)
        self.calls: Counter[str] = Counter()
        self.specs: dict[str, TestSpec] = {}

    async def __call__(self, spec: TestSpec) -> tuple[bool, str]:
        self.calls[spec.name] += 1
        self.specs[spec.name] = spec
        return await self.queues[spec.name].get()

    async def waiting(self, name: str) -> None:
        """Waits until the hub runs the check of ``name``."""
        await until(lambda: self.calls[name] > 0, f"a run of {name}")

    async def feed(self, name: str, ok: bool, reason: str = "") -> None:
        """Gives the waiting check of ``name`` its result and waits until the hub
        has taken it (it has started the next run)."""
        calls = self.calls[name]
        assert self.queues[name].empty()
        self.queues[name].put_nowait((ok, reason or ("up" if ok else "down")))
        await until(lambda: self.calls[name] > calls, f"the result of {name}")


def spec(name: str, rise: int = 2, fall: int = 2) -> TestSpec:
    return TestSpec(name, "command", command=f"check {name}", interval=FAST, rise=rise, fall=fall)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[ProbeHub], None]]:
    """Starts hubs' run() in tasks; cancels them at the end of the test."""
    tasks: list[asyncio.Task[None]] = []

    def start(hub: ProbeHub) -> None:
        tasks.append(asyncio.create_task(hub.run()))

    yield start
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task


def oks(hub: Board) -> dict[str, bool | None]:
    return {name: state.ok for name, state in hub.test_states().items()}


# ---------------------------------------------------------------- rise and fall


def test_step_rise_and_fall() -> None:
    state = TestState(None, 0.0, "pending")
    oks_seen = []
    for t, ok in enumerate([False, True, True, True, False, True, False, False, False, True]):
        state = step(state, ok, "r", float(t), rise=3, fall=3)
        oks_seen.append(state.ok)
    assert oks_seen == [False, False, False, True, True, True, True, True, False, False]
    assert (state.passes, state.failures, state.since, state.last_run) == (1, 0, 8.0, 9.0)


async def test_rise_fall_sequence(running: Callable[[ProbeHub], None]) -> None:
    clock, script = Clock(), Script()
    hub = ProbeHub({"web": spec("web", rise=2, fall=3)}, {}, clock=clock, check=script)
    assert hub.test_states()["web"] == TestState(None, 1000.0, "no result yet", 0, 0, None)
    running(hub)
    await script.waiting("web")
    seen: list[tuple[bool | None, float, int, int]] = []
    for t, ok in enumerate([True, False, False, False, True, False, True, True, True], 1):
        clock.now = 1000.0 + t
        await script.feed("web", ok, f"result {t}")
        s = hub.test_states()["web"]
        assert (s.reason, s.last_run) == (f"result {t}", clock.now)
        seen.append((s.ok, s.since, s.passes, s.failures))
    assert seen == [
        (True, 1001.0, 1, 0),  # the first result sets the state
        (True, 1001.0, 0, 1),
        (True, 1001.0, 0, 2),
        (False, 1004.0, 0, 3),  # fall = 3
        (False, 1004.0, 1, 0),
        (False, 1004.0, 0, 1),
        (False, 1004.0, 1, 0),
        (True, 1008.0, 2, 0),  # rise = 2
        (True, 1008.0, 3, 0),
    ]


async def test_first_failure_sets_failing_at_once(running: Callable[[ProbeHub], None]) -> None:
    script = Script()
    hub = ProbeHub({"db": spec("db", fall=5)}, {}, check=script)
    running(hub)
    await script.waiting("db")
    await script.feed("db", False, "refused")
    assert hub.test_states()["db"].ok is False
    assert hub.test_states()["db"].reason == "refused"


async def test_a_raising_check_is_a_failure(running: Callable[[ProbeHub], None]) -> None:
    async def broken(spec: TestSpec) -> tuple[bool, str]:
        raise RuntimeError("boom")

    hub = ProbeHub({"x": spec("x")}, {}, check=broken)
    running(hub)
    await until(lambda: hub.test_states()["x"].ok is False)
    assert hub.test_states()["x"].reason == "check error: RuntimeError: boom"


# ---------------------------------------------------------------- subscribers


async def test_callback_once_per_transition(running: Callable[[ProbeHub], None]) -> None:
    script = Script()
    hub = ProbeHub({"a": spec("a", 1, 1), "b": spec("b", 1, 2)}, {}, check=script)
    calls: list[tuple[bool, str]] = []
    hub.subscribe(["a", "b"], lambda ok, reason: calls.append((ok, reason)))
    running(hub)
    await script.waiting("a")
    await script.waiting("b")
    await script.feed("a", True)
    assert calls == []  # b is still pending
    await script.feed("a", True)
    await script.feed("b", False, "HTTP 503 from http://b/")
    assert calls == [(False, "test b: HTTP 503 from http://b/")]
    await script.feed("b", True)
    await script.feed("b", True)
    await script.feed("a", True)
    assert calls[1:] == [(True, "all tests pass")]
    await script.feed("a", False, "refused")  # fall = 1
    await script.feed("b", False, "x")  # fall = 2: b still passes
    await script.feed("b", False, "timed out")  # now both fail: still one transition
    await script.feed("a", True)  # a passes, b still fails: no transition
    assert calls[2:] == [(False, "test a: refused")]
    await script.feed("b", True)  # rise = 1
    assert calls[3:] == [(True, "all tests pass")]
    assert len(calls) == 4


async def test_reason_names_every_failing_test(running: Callable[[ProbeHub], None]) -> None:
    script = Script()
    hub = ProbeHub({"a": spec("a"), "b": spec("b"), "c": spec("c")}, {}, check=script)
    running(hub)
    for name, ok in [("a", False), ("b", True), ("c", False)]:
        await script.waiting(name)
        await script.feed(name, ok, f"{name} is {'up' if ok else 'down'}")
    calls: list[tuple[bool, str]] = []
    unsubscribe = hub.subscribe(["c", "b", "a"], lambda ok, r: calls.append((ok, r)))
    assert calls == [(False, "test c: c is down; test a: a is down")]  # at once: all have states
    unsubscribe()
    unsubscribe()  # twice is harmless
    await script.feed("a", True)
    await script.feed("a", True)
    await script.feed("c", True)
    await script.feed("c", True)
    assert oks(hub) == {"a": True, "b": True, "c": True}
    assert calls == [(False, "test c: c is down; test a: a is down")]


async def test_shared_test_runs_once(running: Callable[[ProbeHub], None]) -> None:
    script = Script()
    hub = ProbeHub({"web": spec("web", 1, 1)}, {}, check=script)
    first: list[bool] = []
    second: list[bool] = []
    hub.subscribe(["web"], lambda ok, _: first.append(ok))
    hub.subscribe(["web", "web"], lambda ok, _: second.append(ok))
    running(hub)
    await script.waiting("web")
    for ok in (True, False, True):
        await script.feed("web", ok)
    assert first == second == [True, False, True]
    assert script.calls["web"] == 4  # three results and the run now waiting: not twice that


async def test_no_tests_is_healthy_and_unknown_tests_fail() -> None:
    hub = ProbeHub({}, {})
    calls: list[tuple[bool, str]] = []
    hub.subscribe([], lambda ok, r: calls.append((ok, r)))
    hub.subscribe(["nope"], lambda ok, r: calls.append((ok, r)))
    assert calls == [(True, "no tests"), (False, "test nope: not configured")]


async def test_a_raising_callback_does_not_stop_the_others(
    running: Callable[[ProbeHub], None], caplog: pytest.LogCaptureFixture
) -> None:
    script = Script()
    hub = ProbeHub({"a": spec("a")}, {}, check=script)

    def bad(ok: bool, reason: str) -> None:
        raise ValueError("subscriber bug")

    calls: list[bool] = []
    hub.subscribe(["a"], bad)
    hub.subscribe(["a"], lambda ok, _: calls.append(ok))
    running(hub)
    await script.waiting("a")
    await script.feed("a", True)
    await script.feed("a", True)
    assert calls == [True]
    assert "probe subscriber failed" in caplog.text


# ---------------------------------------------------------------- reconfigure


async def test_reconfigure(running: Callable[[ProbeHub], None]) -> None:
    script = Script()
    a, b, c = spec("a", 1, 1), spec("b", 1, 1), spec("c", 1, 1)
    hub = ProbeHub({"a": a, "b": b, "c": c}, {}, check=script)
    calls: list[tuple[bool, str]] = []
    hub.subscribe(["a", "c"], lambda ok, r: calls.append((ok, r)))
    running(hub)
    for name in "abc":
        await script.waiting(name)
        await script.feed(name, True)
    assert calls == [(True, "all tests pass")]
    before = hub.test_states()
    a_calls, b_calls = script.calls["a"], script.calls["b"]
    # a: equal spec (a new object): kept; b: changed; c: removed; d: new.
    b2 = TestSpec("b", "command", command="other", interval=FAST, rise=3, fall=1)
    hub.reconfigure({"a": spec("a", 1, 1), "b": b2, "d": spec("d")}, {})
    assert calls[1:] == [(False, "test c: not configured")]
    states = hub.test_states()
    assert set(states) == {"a", "b", "d"}
    assert states["a"] == before["a"]
    assert (states["b"].ok, states["b"].since, states["b"].passes) == (True, before["b"].since, 0)
    assert states["d"].ok is None
    await until(lambda: script.specs["b"] is b2, "b restarted with its new spec")
    assert script.calls["b"] == b_calls + 1
    await script.feed("a", True)  # the old runner of a took it
    assert script.calls["a"] == a_calls + 1
    await script.feed("b", False, "changed")  # fall = 1 applies at once; no first-result rule
    assert hub.test_states()["b"].ok is False
    await script.feed("b", True)
    await script.feed("b", True)
    assert hub.test_states()["b"].ok is False  # rise = 3
    await script.feed("b", True)
    assert hub.test_states()["b"].ok is True


async def test_reconfigure_needs_run() -> None:
    hub = ProbeHub({}, {})
    with pytest.raises(RuntimeError, match="needs run"):
        hub.reconfigure({}, {})


async def test_run_twice_is_refused(running: Callable[[ProbeHub], None]) -> None:
    hub = ProbeHub({}, {})
    running(hub)
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already running"):
        await hub.run()


# ---------------------------------------------------------------- loads


def proc_stat(root: Path, busy: int, idle: int) -> None:
    """Two CPUs, the same on each."""
    line = f"{busy} 0 0 {idle} 0 0 0 0 0 0"
    (root / "stat").write_text(f"cpu  {2 * busy} 0 0 {2 * idle} 0 0 0 0 0 0\n")
    with (root / "stat").open("a") as f:
        f.write(f"cpu0 {line}\ncpu1 {line}\nctxt 1\n")


async def test_loads(running: Callable[[ProbeHub], None], tmp_path: Path) -> None:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    (sys / "class" / "net" / "dummy0" / "statistics").mkdir(parents=True)
    for counter in ("rx_bytes", "tx_bytes"):
        (sys / "class" / "net" / "dummy0" / "statistics" / counter).write_text("0\n")
    proc_stat(proc, busy=100, idle=100)
    loads = {
        "cpu": LoadSpec("cpu", "cpu", interval=FAST),
        "fixed": LoadSpec("fixed", "static", interval=FAST, load=100, capacity=1000),
        "wan": LoadSpec("wan", "net", interval=FAST, interfaces=("dummy0",)),
    }
    clock = Clock()
    hub = ProbeHub({}, loads, clock=clock, proc_root=str(proc), sys_root=str(sys))
    assert hub.load_states()["cpu"] == LoadState(None, None, None, None)
    assert hub.load(["cpu", "fixed"], "max") is None
    running(hub)
    await until(lambda: hub.load_states()["fixed"].load == 100, "the static load")
    await until(lambda: hub.load_states()["wan"].error is not None, "the net error")
    assert hub.load_states()["wan"] == LoadState(
        None,
        None,
        1000.0,
        f"the link speed of dummy0 is unknown ({sys}/class/net/dummy0/speed); "
        "set capacity (bytes/s)",
    )
    await asyncio.sleep(0.02)  # the cpu load was primed and has seen no ticks since
    assert hub.load_states()["cpu"].load is None
    proc_stat(proc, busy=175, idle=125)  # 75 of 100 ticks busy on each CPU
    await until(lambda: hub.load_states()["cpu"].load is not None, "the cpu load")
    assert hub.load_states()["cpu"] == LoadState(1500, 2000, 1000.0, None)
    assert hub.load(["cpu", "fixed", "wan"], "max") == (1500, 2000)
    assert hub.load(["cpu", "fixed", "wan"], "sum") == (1600, 3000)
    assert hub.load(["fixed", "nope"], "sum") == (100, 1000)
    assert hub.load(["wan"], "sum") is None
    hub.reconfigure({}, {"fixed": LoadSpec("fixed", "static", interval=FAST, load=7, capacity=9)})
    assert set(hub.load_states()) == {"fixed"}
    await until(lambda: hub.load(["fixed"], "max") == (7, 9), "the new static load")


async def test_a_sampler_that_cannot_be_made(
    running: Callable[[ProbeHub], None],
) -> None:
    def factory(spec: LoadSpec) -> FakeSampler:
        raise OSError("no such thing")

    hub = ProbeHub({}, {"x": LoadSpec("x", "cpu", interval=FAST)}, sampler=factory)
    running(hub)
    await until(lambda: hub.load_states()["x"].error is not None)
    assert hub.load_states()["x"].error == "cannot measure: no such thing"


class FakeSampler:
    async def sample(self) -> tuple[int, int] | None:
        return None


# ---------------------------------------------------------------- real checks


async def test_real_checks_run_side_by_side(
    running: Callable[[ProbeHub], None], tmp_path: Path
) -> None:
    """A command stuck until its timeout delays nobody else."""
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    tests = {
        "slow": TestSpec("slow", "command", command="sleep 5", interval=1.0, timeout=0.5),
        "tcp": TestSpec("tcp", "tcp", host="127.0.0.1", port=port, interval=0.05, rise=1),
        "flag": TestSpec("flag", "file", path=str(tmp_path / "down"), interval=0.05, fall=1),
    }
    hub = ProbeHub(tests, {"s": LoadSpec("s", "static", load=1, capacity=2)})
    calls: list[tuple[bool, str]] = []
    hub.subscribe(["tcp", "flag"], lambda ok, r: calls.append((ok, r)))
    async with listener:
        running(hub)
        await until(lambda: calls != [], "tcp and flag")
        assert calls == [(True, "all tests pass")]
        assert oks(hub) == {"slow": None, "tcp": True, "flag": True}
        assert hub.load(["s"], "max") == (1, 2)
        (tmp_path / "down").touch()
        await until(lambda: len(calls) == 2, "the flag")
        assert calls[1] == (False, f"test flag: file {tmp_path / 'down'} exists")
        await until(lambda: oks(hub)["slow"] is not None, "the slow command")
        assert hub.test_states()["slow"] == TestState(
            False,
            hub.test_states()["slow"].since,
            "command 'sleep 5': killed after timeout 0.5s",
            0,
            1,
            hub.test_states()["slow"].last_run,
        )


# ---------------------------------------------------------------- FakeProbeHub


async def test_fake_probe_hub() -> None:
    clock = Clock()
    hub = FakeProbeHub({"a": spec("a"), "b": spec("b")}, {"l": LoadSpec("l", "cpu")}, clock=clock)
    calls: list[tuple[bool, str]] = []
    hub.subscribe(["a", "b"], lambda ok, r: calls.append((ok, r)))
    assert oks(hub) == {"a": None, "b": None}
    hub.set_test("a", True)
    assert calls == []
    clock.now = 1001.0
    hub.set_test("b", False, "HTTP 503 from http://b/")
    hub.set_test("b", False, "HTTP 500 from http://b/")  # no transition
    assert calls == [(False, "test b: HTTP 503 from http://b/")]
    assert hub.test_states()["b"] == TestState(
        False, 1001.0, "HTTP 500 from http://b/", 0, 2, 1001.0
    )
    hub.set_test("b", True)
    assert calls[1:] == [(True, "all tests pass")]
    hub.set_test("b", None)  # pending again counts as not ok
    assert calls[2:] == [(False, "test b: no result yet")]
    hub.set_load("l", 5, 10)
    assert hub.load(["l"], "max") == (5, 10)
    assert hub.load_states()["l"] == LoadState(5, 10, 1001.0, None)
    hub.reconfigure({"a": spec("a")}, {})
    assert hub.reconfigured == 1
    assert set(hub.test_states()) == {"a"}
    assert hub.load(["l"], "sum") is None
    assert calls[3:] == []  # already failing; b is now "not configured"
    task = asyncio.create_task(hub.run())
    await asyncio.sleep(0)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
