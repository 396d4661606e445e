"""What the admin API and the dashboard call on a running agent
(``rais.admin.api.Controlled`` and ``rais.admin.web.Source``): status, quiesce, move,
failback, metrics, and the status and the event history rendered to JSON at
this edge."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rais.admin.metrics import Metrics
from rais.admin.status_view import AgentStatus, status_json
from rais.config import IP
from rais.runtime.events import Entry, EventBus, record
from rais.runtime.group import GroupRunner
from rais.runtime.lifecycle import PauseRefused

QUEUE_SIZE = 1000
"""Events a subscriber's queue holds (a slow reader loses the newer ones)."""


class AgentFacade:
    def __init__(
        self,
        groups: Mapping[str, GroupRunner],
        *,
        status: Callable[[], AgentStatus],
        bus: EventBus,
        metrics: Metrics,
        pause: Callable[[float], PauseRefused | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``groups``: the agent's groups by name; ``pause``: the agent's pause
        (``rais pause``); ``clock``: the wall clock that stamps operator requests."""
        self.groups = groups
        self._status = status
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self._pause = pause
        self._subscriptions: dict[asyncio.Queue[dict[str, Any]], Callable[[], None]] = {}

    def status(self) -> dict[str, Any]:
        """Exactly ``GET /v1/status``'s JSON, rendered from the typed status."""
        return status_json(self._status())

    # ------------------------------------------------------------ events

    def events_since(self, seq: int) -> list[dict[str, Any]]:
        return [record(entry) for entry in self.bus.since(seq)]

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue that gets every new event (bounded: a slow reader loses some)."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_SIZE)

        def deliver(entry: Entry) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(record(entry))

        self._subscriptions[q] = self.bus.subscribe(deliver)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        end = self._subscriptions.pop(q, None)
        if end is not None:
            end()

    # ------------------------------------------------------------ metrics

    def metrics_text(self) -> tuple[bytes, str]:
        """The Prometheus exposition (GET /metrics): body and content type."""
        return self.metrics.render()

    # ------------------------------------------------------------ requests

    def _pick(self, group: str | None) -> list[GroupRunner]:
        if group is None:
            return list(self.groups.values())
        return [self.groups[group]]

    def quiesce(self, group: str | None) -> list[str]:
        runners = self._pick(group)
        for r in runners:
            r.quiesce()
        return [r.config.name for r in runners]

    def unquiesce(self, group: str | None) -> list[str]:
        runners = self._pick(group)
        for r in runners:
            r.unquiesce()
        return [r.config.name for r in runners]

    def _owner(self, address: IP, group: str | None) -> GroupRunner:
        """The group that has ``address`` as a service address (KeyError: no
        such group; LookupError: none)."""
        for r in self._pick(group):
            if r.serves_group_address(address):
                return r
        where = f"group {group}" if group else "any group of this host"
        raise LookupError(f"{address} is not a service address of {where}")

    def _one_set(self, address: IP | Sequence[IP], group: str | None) -> tuple[GroupRunner, IP]:
        """The group and the key of the address set that has ``address`` (any of
        its addresses, or several, all of one set; ValueError: of several sets)."""
        addresses = [address] if not isinstance(address, Sequence) else list(address)
        runner = self._owner(addresses[0], group)
        key = runner.set_key(addresses[0])
        for other in addresses[1:]:
            if self._owner(other, group) is not runner or runner.set_key(other) != key:
                raise ValueError(f"{other} is not an address of the set of {key}")
        return runner, key

    def move(self, address: IP | Sequence[IP], host: IP, group: str | None) -> str:
        """Operator: pin ``address`` (its set) to ``host`` (LookupError /
        ValueError: refused)."""
        runner, key = self._one_set(address, group)
        why = runner.move(key, host, int(self.clock() * 1000))
        if why:
            raise ValueError(why)
        return runner.config.name

    def failback(self, address: IP | Sequence[IP], group: str | None) -> str:
        runner, key = self._one_set(address, group)
        why = runner.failback(key, int(self.clock() * 1000))
        if why:
            raise ValueError(why)
        return runner.config.name

    def pause(self, duration: float) -> dict[str, Any]:
        """Operator: restart in place within ``duration`` seconds (``POST
        /v1/pause``); raises ``Refused`` with the JSON of the refusal."""
        if self._pause is None:
            raise Refused({"error": "this agent cannot pause", "group": None, "hosts": []})
        refused = self._pause(duration)
        if refused is not None:
            raise Refused(
                {
                    "error": refused.reason,
                    "group": refused.group or None,
                    "hosts": list(refused.hosts),
                }
            )
        return {"groups": list(self.groups), "for_s": duration}


class Refused(Exception):
    """An operator request refused, with the JSON that says why."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", "refused"))
        self.body = body
