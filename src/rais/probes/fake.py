"""FakeProbeHub: ProbeHub's public API with states set by the test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from rais.probes.spec import LoadSpec, TestSpec
from rais.probes.state import Board, LoadState, TestState, pending


class FakeProbeHub(Board):
    """Runs nothing: ``set_test`` and ``set_load`` set the states directly
    (no rise/fall); subscribers are told exactly as by ``ProbeHub``."""

    def __init__(
        self,
        tests: Mapping[str, TestSpec] | None = None,
        loads: Mapping[str, LoadSpec] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.tests: dict[str, TestSpec] = {}
        self.loads: dict[str, LoadSpec] = {}
        self.reconfigured = 0
        self._apply(tests or {}, loads or {})

    async def run(self) -> None:
        """Does nothing until cancelled."""
        await asyncio.Event().wait()

    def reconfigure(self, tests: Mapping[str, TestSpec], loads: Mapping[str, LoadSpec]) -> None:
        """Takes the new specs: removed objects lose their state, new ones are pending."""
        self.reconfigured += 1
        self._apply(tests, loads)

    def _apply(self, tests: Mapping[str, TestSpec], loads: Mapping[str, LoadSpec]) -> None:
        for name in self.tests.keys() - tests.keys():
            self._put_test(name, None)
        for name in self.loads.keys() - loads.keys():
            self._put_load(name, None)
        for name in tests.keys() - self.tests.keys():
            self._put_test(name, pending(self.clock()))
        for name in loads.keys() - self.loads.keys():
            self._put_load(name, LoadState(None, None))
        self.tests, self.loads = dict(tests), dict(loads)

    def set_test(self, name: str, ok: bool | None, reason: str = "") -> None:
        """Sets a test's state at once (None: pending); a name not configured is added."""
        now = self.clock()
        old = self._tests.get(name)
        since = old.since if old is not None and old.ok == ok else now
        passes = (old.passes + 1 if old is not None else 1) if ok else 0
        failures = (old.failures + 1 if old is not None else 1) if ok is False else 0
        reason = reason or ("pending" if ok is None else "passing" if ok else "failing")
        last_run = None if ok is None else now
        self._put_test(name, TestState(ok, since, reason, passes, failures, last_run))

    def set_load(
        self, name: str, load: int | None, capacity: int | None, error: str | None = None
    ) -> None:
        """Sets a load's latest sample (None, None and an error: a failed sample)."""
        self._put_load(name, LoadState(load, capacity, self.clock(), error))
