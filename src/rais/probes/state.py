"""Probe states and subscriptions, shared by ``ProbeHub`` and ``FakeProbeHub``.

``Board`` keeps the latest state of every test and load object and calls each
subscriber when the combined health of its tests changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

from rais.probes.loads import Sample, combine

log = logging.getLogger("rais.probes")

Callback = Callable[[bool, str], None]


@dataclass(frozen=True, slots=True)
class TestState:
    """One test object's state; ``ok`` is None until its first result."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    ok: bool | None
    since: float
    """When ``ok`` last changed (or the test was configured, while pending)."""
    reason: str
    """The latest result's reason ("pending" before the first)."""
    passes: int = 0
    """Consecutive passing results, up to now."""
    failures: int = 0
    """Consecutive failing results, up to now."""
    last_run: float | None = None
    """When the latest result came in; None before the first."""


PENDING_REASON = "no result yet"


def pending(now: float) -> TestState:
    return TestState(ok=None, since=now, reason=PENDING_REASON)


def step(state: TestState, ok: bool, reason: str, now: float, rise: int, fall: int) -> TestState:
    """``state`` after one more result: the first result sets the state; then it
    turns failing after ``fall`` failures in a row and passing after ``rise`` passes."""
    passes = state.passes + 1 if ok else 0
    failures = 0 if ok else state.failures + 1
    new = state.ok
    if new is None:
        new = ok
    elif new and failures >= fall:
        new = False
    elif not new and passes >= rise:
        new = True
    since = state.since if new == state.ok else now
    return TestState(new, since, reason, passes, failures, now)


@dataclass(frozen=True, slots=True)
class LoadState:
    """One load object's latest sample; ``load``/``capacity`` are None until the
    first sample and after an error (``error`` says what went wrong)."""

    load: int | None
    capacity: int | None
    at: float | None = None
    """When the latest sample or error came in."""
    error: str | None = None


class _Subscription:
    __slots__ = ("callback", "last", "names")

    def __init__(self, names: tuple[str, ...], callback: Callback) -> None:
        self.names = names
        self.callback = callback
        self.last: bool | None = None


class Board:
    """The states, and the subscribers told about combined health transitions."""

    clock: Callable[[], float]
    """Stamps the states (set by the subclass)."""

    def __init__(self) -> None:
        self._tests: dict[str, TestState] = {}
        self._loads: dict[str, LoadState] = {}
        self._subs: list[_Subscription] = []

    # ------------------------------------------------------------ reading

    def test_states(self) -> dict[str, TestState]:
        return dict(self._tests)

    def load_states(self) -> dict[str, LoadState]:
        return dict(self._loads)

    def load(self, names: Sequence[str], how: Literal["max", "sum"]) -> Sample | None:
        """The latest samples of these loads combined (see ``loads.combine``);
        loads without a current sample are left out; None when none has one."""
        samples: list[Sample] = []
        for name in names:
            state = self._loads.get(name)
            if state is not None and state.load is not None and state.capacity is not None:
                samples.append((state.load, state.capacity))
        return combine(samples, how)

    def health(self, names: Sequence[str]) -> tuple[bool | None, str]:
        """(combined ok, reason): ok only if every named test passes; None while
        one is still pending (a name that is not configured counts as failing).
        The reason names each test that does not pass, with its latest reason."""
        bad: list[str] = []
        waiting = False
        for name in dict.fromkeys(names):
            state = self._tests.get(name)
            if state is None:
                bad.append(f"test {name}: not configured")
            elif state.ok is None:
                waiting = True
                bad.append(f"test {name}: {PENDING_REASON}")
            elif not state.ok:
                bad.append(f"test {name}: {state.reason}")
        if waiting:
            return None, "; ".join(bad)
        if bad:
            return False, "; ".join(bad)
        return True, "all tests pass" if names else "no tests"

    # ------------------------------------------------------------ subscribing

    def subscribe(self, names: Sequence[str], callback: Callback) -> Callable[[], None]:
        """Calls ``callback(ok, reason)`` once when every named test has a state
        (at once if they already have) and then on each change of the combined
        value: ok only if all of them pass. Returns the unsubscribe function."""
        sub = _Subscription(tuple(names), callback)
        self._subs.append(sub)
        self._notify(sub)

        def unsubscribe() -> None:
            if sub in self._subs:
                self._subs.remove(sub)

        return unsubscribe

    def _notify(self, sub: _Subscription) -> None:
        ok, reason = self.health(sub.names)
        if ok is None:
            if sub.last is None:
                return  # not every test has a state yet: no first call
            ok = False
        if ok == sub.last:
            return
        sub.last = ok
        try:
            sub.callback(ok, reason)
        except Exception:
            log.exception("probe subscriber failed")

    def _changed(self, name: str) -> None:
        for sub in list(self._subs):
            if name in sub.names and sub in self._subs:
                self._notify(sub)

    # ------------------------------------------------------------ writing

    def _put_test(self, name: str, state: TestState | None) -> None:
        old = self._tests.get(name)
        if state is None:
            self._tests.pop(name, None)
        else:
            self._tests[name] = state
        if old is None or state is None or old.ok != state.ok:
            if state is not None and state.ok is not None:
                verdict = "passing" if state.ok else "failing"
                log.info("test %s: %s (%s)", name, verdict, state.reason)
            self._changed(name)

    def stopped(self, reason: str) -> None:
        """The probes stopped running (their task failed): every test counts as
        failing with ``reason`` and no load has a current sample, until they run
        again and report."""
        now = self.clock()
        for name in list(self._tests):
            self._put_test(name, TestState(False, now, reason))
        for name in list(self._loads):
            self._put_load(name, LoadState(None, None, now, reason))

    def restarted(self) -> None:
        """Probes that run again start over: a test is pending (so its first
        result sets it, and tells the subscribers) and a load has no sample."""
        now = self.clock()
        for name, state in list(self._tests.items()):
            if state.last_run is not None or state.ok is not None:
                self._put_test(name, pending(now))
        for name in list(self._loads):
            self._put_load(name, LoadState(None, None))

    def _reset_counts(self, name: str) -> None:
        state = self._tests.get(name)
        if state is not None:
            self._tests[name] = replace(state, passes=0, failures=0)

    def _put_load(self, name: str, state: LoadState | None) -> None:
        if state is None:
            self._loads.pop(name, None)
        else:
            self._loads[name] = state
