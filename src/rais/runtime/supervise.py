"""Supervision of the agent's long-lived parts (docs/operations.md, "Supervision").

Every long-lived task of the agent runs in the agent's one TaskGroup, started
through a :class:`Supervisor` under one of two rules:

``keep``
    A part the agent can run without for a while (the probes, the DNS thread,
    each DNS publisher, the SNMP sender, the reloader). When it raises (or
    returns, which a long-lived part never should) it is restarted after a
    backoff: 0.5 s, doubling up to 30 s, back to 0.5 s once a run has lasted
    60 s. Each failure raises a ``part-failed`` event and each restart a
    ``part-restarted`` event; ``on_down`` lets the agent degrade meanwhile
    (while the probes are down, every group with tests counts as not OK).

``need``
    A part without which the agent cannot hold addresses safely (each group's
    address refresher). When it raises or returns, the agent ends:
    ``on_fatal`` is called once, and the agent leaves gracefully where it still
    can and exits non-zero (systemd's ``Restart=on-failure`` starts it again).
    Parts that fail by callback rather than by raising (a group's transport,
    the driver of a group's core) report through :meth:`Supervisor.fatal`.

The supervisor never swallows cancellation: stopping a part (a group that
leaves on reload) or the agent cancels its task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from rais.admin.status_view import PartState, PartStatus

log = logging.getLogger("rais.supervise")

Factory = Callable[[], Coroutine[Any, Any, None]]
EventHook = Callable[[Literal["part-failed", "part-restarted"], "Part", str], None]

BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0


@dataclass(slots=True)
class Part:
    """One supervised part, as ``rais status`` shows it."""

    name: str
    essential: bool
    group: str
    """The service group it belongs to ("" for the agent's own parts)."""
    state: PartState = "running"
    restarts: int = 0
    last_error: str = ""
    since: float = 0.0
    """When the state last changed (the loop's clock)."""
    task: asyncio.Task[None] | None = None

    def status(self, now: float) -> PartStatus:
        return PartStatus(
            name=self.name,
            group=self.group or None,
            essential=self.essential,
            state=self.state,
            restarts=self.restarts,
            last_error=self.last_error,
            since_s=round(now - self.since, 3),
        )


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Supervisor:
    def __init__(
        self,
        tg: asyncio.TaskGroup,
        *,
        on_event: EventHook,
        on_fatal: Callable[[str], None],
        clock: Callable[[], float],
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        self.tg = tg
        self.on_event = on_event
        self.on_fatal = on_fatal
        self.clock = clock
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.parts: dict[str, Part] = {}
        self.failed: str | None = None
        """The first fatal failure ("part: reason"), once one happened."""

    # ------------------------------------------------------------ starting

    def keep(
        self,
        name: str,
        factory: Factory,
        *,
        group: str = "",
        on_down: Callable[[str], None] | None = None,
    ) -> Part:
        """Run ``factory()`` until cancelled, restarting it with backoff."""
        part = self._add(name, False, group)
        part.task = self.tg.create_task(self._keep(part, factory, on_down), name=name)
        return part

    def need(self, name: str, factory: Factory, *, group: str = "") -> Part:
        """Run ``factory()`` until cancelled; if it ends any other way, the agent ends."""
        part = self._add(name, True, group)
        part.task = self.tg.create_task(self._need(part, factory), name=name)
        return part

    def fatal(self, name: str, reason: str) -> None:
        """A part the agent cannot run without has failed: end the agent (once)."""
        part = self.parts.get(name)
        if part is not None and part.state != "failed":
            part.state, part.last_error, part.since = "failed", reason, self.clock()
        if self.failed is not None:
            return
        self.failed = f"{name}: {reason}"
        log.critical("%s failed: %s; the agent stops", name, reason)
        self.on_fatal(self.failed)

    def stop(self, name: str) -> None:
        """Cancel a part and forget it (its group left)."""
        part = self.parts.pop(name, None)
        if part is not None and part.task is not None:
            part.state = "stopped"
            part.task.cancel()

    def stop_all(self) -> None:
        for name in list(self.parts):
            self.stop(name)

    def status(self) -> list[PartStatus]:
        now = self.clock()
        return [p.status(now) for p in self.parts.values()]

    # ------------------------------------------------------------ running

    def _add(self, name: str, essential: bool, group: str) -> Part:
        if name in self.parts:
            raise ValueError(f"part {name!r} is already running")
        part = Part(name, essential, group, since=self.clock())
        self.parts[name] = part
        return part

    async def _keep(
        self, part: Part, factory: Factory, on_down: Callable[[str], None] | None
    ) -> None:
        delay = self.backoff_min
        while True:
            started = self.clock()
            error = await _run(part, factory)
            if self.clock() - started >= self.stable_after:
                delay = self.backoff_min
            part.state, part.last_error, part.since = "restarting", error, self.clock()
            self.on_event("part-failed", part, f"{error}; restarting in {delay:g}s")
            if on_down is not None:
                try:
                    on_down(error)
                except Exception:
                    log.exception("%s: on_down failed", part.name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)
            part.restarts += 1
            part.state, part.since = "running", self.clock()
            self.on_event("part-restarted", part, f"restart {part.restarts}")

    async def _need(self, part: Part, factory: Factory) -> None:
        self.fatal(part.name, await _run(part, factory))


async def _run(part: Part, factory: Factory) -> str:
    """Run a part once; what ended it (cancellation passes through)."""
    try:
        await factory()
    except Exception as exc:
        log.error("%s failed", part.name, exc_info=exc)
        return describe(exc)
    return "stopped by itself"
