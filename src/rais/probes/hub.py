"""ProbeHub: runs every test and load object on its interval, one runner each.

A test named by several groups runs once; subscribers (``subscribe``) hear
about transitions of the combined health of their tests. ``run()`` holds
one TaskGroup with a task per object until it is cancelled; a slow probe
only delays itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from rais.probes.checks import Result, run_check
from rais.probes.loads import LoadError, Sampler, make_sampler
from rais.probes.spec import LoadSpec, TestSpec
from rais.probes.state import Board, LoadState, pending, step

CheckFn = Callable[[TestSpec], Awaitable[Result]]
SamplerFactory = Callable[[LoadSpec], Sampler]

GRACE = 5.0
"""A check or sample running this long past its own timeout is abandoned as failed."""


class ProbeHub(Board):
    def __init__(
        self,
        tests: Mapping[str, TestSpec],
        loads: Mapping[str, LoadSpec],
        *,
        clock: Callable[[], float] = time.monotonic,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
        check: CheckFn = run_check,
        sampler: SamplerFactory | None = None,
    ) -> None:
        """``clock`` stamps the states; ``check`` runs one test (default: the
        real checks); ``sampler`` makes a load's sampler (default: ``make_sampler``
        reading ``proc_root`` and ``sys_root``)."""
        super().__init__()
        self.clock = clock
        self.proc_root = proc_root
        self.sys_root = sys_root
        self._check = check
        self._sampler = sampler or self._default_sampler
        self.tests: dict[str, TestSpec] = dict(tests)
        self.loads: dict[str, LoadSpec] = dict(loads)
        self._tg: asyncio.TaskGroup | None = None
        self._test_tasks: dict[str, asyncio.Task[None]] = {}
        self._load_tasks: dict[str, asyncio.Task[None]] = {}
        self._ran = False
        now = clock()
        for name in self.tests:
            self._tests[name] = pending(now)
        for name in self.loads:
            self._loads[name] = LoadState(None, None)

    def _default_sampler(self, spec: LoadSpec) -> Sampler:
        return make_sampler(
            spec, proc_root=self.proc_root, sys_root=self.sys_root, clock=self.clock
        )

    async def run(self) -> None:
        """Runs every probe until cancelled."""
        if self._tg is not None:
            raise RuntimeError("ProbeHub.run() is already running")
        if self._ran:
            self.restarted()  # after a failure: start over from fresh results
        self._ran = True
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for name in self.tests:
                    self._start_test(name)
                for name in self.loads:
                    self._start_load(name)
                await asyncio.Event().wait()  # until cancelled
        finally:
            self._tg = None
            self._test_tasks.clear()
            self._load_tasks.clear()

    def reconfigure(self, tests: Mapping[str, TestSpec], loads: Mapping[str, LoadSpec]) -> None:
        """Takes new specs: unchanged objects keep running, changed and new ones
        (re)start, removed ones stop and lose their state. A changed test keeps
        its passing/failing state and sees the new results through rise/fall.
        Call only while ``run()`` is running."""
        if self._tg is None:
            raise RuntimeError("ProbeHub.reconfigure() needs run() to be running")
        old_tests, self.tests = self.tests, dict(tests)
        old_loads, self.loads = self.loads, dict(loads)
        for name in old_tests.keys() - self.tests.keys():
            self._test_tasks.pop(name).cancel()
            self._put_test(name, None)
        for name, spec in self.tests.items():
            if old_tests.get(name) == spec:
                self.tests[name] = old_tests[name]  # the runner checks identity
                continue
            if name in self._test_tasks:
                self._test_tasks.pop(name).cancel()
                self._reset_counts(name)
            else:
                self._put_test(name, pending(self.clock()))
            self._start_test(name)
        for name in old_loads.keys() - self.loads.keys():
            self._load_tasks.pop(name).cancel()
            self._put_load(name, None)
        for name, lspec in self.loads.items():
            if old_loads.get(name) == lspec:
                self.loads[name] = old_loads[name]
                continue
            if name in self._load_tasks:
                self._load_tasks.pop(name).cancel()
            self._put_load(name, LoadState(None, None))
            self._start_load(name)

    # ------------------------------------------------------------ runners

    def _start_test(self, name: str) -> None:
        assert self._tg is not None
        runner = self._run_test(name, self.tests[name])
        self._test_tasks[name] = self._tg.create_task(runner, name=f"test {name}")

    def _start_load(self, name: str) -> None:
        assert self._tg is not None
        runner = self._run_load(name, self.loads[name])
        self._load_tasks[name] = self._tg.create_task(runner, name=f"load {name}")

    async def _run_test(self, name: str, spec: TestSpec) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                async with asyncio.timeout(spec.timeout + GRACE):
                    ok, reason = await self._check(spec)
            except TimeoutError:
                ok, reason = False, f"check did not finish in {spec.timeout + GRACE:g}s"
            except Exception as exc:
                ok, reason = False, f"check error: {type(exc).__name__}: {exc}"
            state = self._tests.get(name)
            if state is None or self.tests.get(name) is not spec:
                return  # removed or replaced meanwhile
            self._put_test(name, step(state, ok, reason, self.clock(), spec.rise, spec.fall))
            await asyncio.sleep(max(0.0, started + spec.interval - loop.time()))

    async def _run_load(self, name: str, spec: LoadSpec) -> None:
        loop = asyncio.get_running_loop()
        try:
            sampler: Sampler | None = self._sampler(spec)
            error = None
        except Exception as exc:
            sampler, error = None, f"cannot measure: {exc}"
        while True:
            started = loop.time()
            sample = None
            if sampler is not None:
                try:
                    async with asyncio.timeout(spec.timeout + GRACE):
                        sample = await sampler.sample()
                    error = None
                except TimeoutError:
                    error = f"no sample in {spec.timeout + GRACE:g}s"
                except LoadError as exc:
                    error = str(exc)
                except Exception as exc:
                    error = f"sampler error: {type(exc).__name__}: {exc}"
            if self.loads.get(name) is not spec:
                return  # removed or replaced meanwhile
            if error is not None:
                self._put_load(name, LoadState(None, None, self.clock(), error))
            elif sample is not None:
                self._put_load(name, LoadState(sample[0], sample[1], self.clock()))
            await asyncio.sleep(max(0.0, started + spec.interval - loop.time()))
