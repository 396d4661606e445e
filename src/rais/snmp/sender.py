"""TrapSender: sends RAIS-MIB notifications with pysnmp's asyncio API.

``TrapSender.submit(event)`` never blocks: it puts the event on one bounded
queue per receiver, or drops it and counts the drop when that queue is full.
``TrapSender.run()`` drains the queues, one task per receiver, so that a slow
or dead receiver (an INFORM that is never answered) holds up only its own
queue, and each send has a deadline. All receivers share one pysnmp engine
and one UDP socket per address family, made once when ``run()`` starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pysnmp.hlapi.v3arch.asyncio import (  # type: ignore[import-untyped]
    USM_AUTH_HMAC96_SHA,
    USM_AUTH_HMAC192_SHA256,
    USM_PRIV_CFB128_AES,
    CommunityData,
    ContextData,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    send_notification,
)
from pysnmp.proto.rfc1902 import (  # type: ignore[import-untyped]
    ObjectIdentifier,
    OctetString,
    TimeTicks,
)

from rais.core.effects import Event
from rais.snmp.config import SnmpConfig, TrapReceiver, uptime_ticks, varbinds

log = logging.getLogger(__name__)

MAX_ENGINE_BOOTS = 2147483647
"""snmpEngineBoots stops there (RFC 3414 2.2.2); usable values are below it."""


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    """Counts for one receiver since the sender was made. ``sent`` counts
    TRAPs handed to the network and INFORMs acknowledged; ``failed`` counts
    INFORMs not acknowledged and sends that raised; ``dropped`` counts events
    not queued because the queue was full; ``queued`` is the queue now."""

    sent: int
    failed: int
    dropped: int
    queued: int


@dataclass(slots=True)
class _Item:
    event: Event
    ticks: int


@dataclass(slots=True)
class _Lane:
    """One receiver: its queue, counters, and pysnmp objects (made in ``run``)."""

    receiver: TrapReceiver
    tag: str
    queue: asyncio.Queue[_Item]
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    failing: bool = False
    auth: Any = field(default=None)
    target: Any = field(default=None)


class TrapSender:
    """Sends one notification per submitted event to every receiver.

    ``uptime`` returns the agent's uptime in seconds (for sysUpTime.0).
    ``engine_boots`` is snmpEngineBoots: how many times the agent has started,
    never going down (for example the agent's boot epoch). SNMPv3 receivers
    authenticate TRAPs against the sender's engine id, boots and time and drop
    them silently when boots goes backwards, so it is required when a v3
    receiver gets TRAPs. ``submit`` must be called from the event loop's thread.
    """

    def __init__(
        self,
        config: SnmpConfig,
        *,
        uptime: Callable[[], float],
        engine_boots: int | None = None,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        """``on_outcome`` is told "sent", "failed" or "dropped" for every
        notification to every receiver (for metrics)."""
        if engine_boots is not None and not 1 <= engine_boots < MAX_ENGINE_BOOTS:
            raise ValueError(f"engine_boots must be 1..{MAX_ENGINE_BOOTS - 1}")
        v3_traps = [r.name for r in config.receivers if r.version == "3" and not r.inform]
        if v3_traps and engine_boots is None:
            raise ValueError(
                f"SNMPv3 traps (to {', '.join(v3_traps)}) need engine_boots: a count of "
                "agent starts that never goes down, or v3 receivers drop the traps"
            )
        self._config = config
        self._uptime = uptime
        self._engine_boots = engine_boots
        self._lanes = [
            _Lane(r, f"rais{i}", asyncio.Queue(config.queue_size))
            for i, r in enumerate(config.receivers)
        ]
        self._running = False
        self._outcome = on_outcome or (lambda _: None)

    @property
    def config(self) -> SnmpConfig:
        return self._config

    def submit(self, event: Event) -> None:
        """Queue ``event`` for every receiver if its kind is trapped; never blocks.
        A receiver whose queue is full loses the event (counted in ``dropped``)."""
        if event.kind not in self._config.events or not self._lanes:
            return
        item = _Item(event, uptime_ticks(self._uptime()))
        for lane in self._lanes:
            try:
                lane.queue.put_nowait(item)
            except asyncio.QueueFull:
                lane.dropped += 1
                self._outcome("dropped")

    @property
    def stats(self) -> dict[str, ReceiverStats]:
        """A snapshot of the counters, by receiver name (``host:port``)."""
        return {
            lane.receiver.name: ReceiverStats(
                lane.sent, lane.failed, lane.dropped, lane.queue.qsize()
            )
            for lane in self._lanes
        }

    async def flush(self) -> None:
        """Wait until every event submitted so far has been sent or has failed
        (``run`` must be running, or this waits for it)."""
        await asyncio.gather(*(lane.queue.join() for lane in self._lanes))

    async def run(self) -> None:
        """Send queued events until cancelled."""
        if self._running:
            raise RuntimeError("TrapSender.run is already running")
        self._running = True
        try:
            if not self._lanes:
                await asyncio.Future()  # nothing to send: wait to be cancelled
            engine = _engine(self._config.engine_id, self._engine_boots)
            for lane in self._lanes:
                lane.auth = lane.target = None  # pysnmp objects belong to one engine
            try:
                async with asyncio.TaskGroup() as tasks:
                    for lane in self._lanes:
                        tasks.create_task(self._drain(engine, lane))
            finally:
                engine.close_dispatcher()
        finally:
            self._running = False

    async def _drain(self, engine: Any, lane: _Lane) -> None:
        context = ContextData()
        kind = "inform" if lane.receiver.inform else "trap"
        while True:
            item = await lane.queue.get()
            try:
                async with asyncio.timeout(lane.receiver.deadline):
                    if lane.target is None:  # resolving a name may hang: under the deadline
                        lane.auth = _auth(lane.receiver, lane.tag)
                        lane.target = await _target(lane.receiver, lane.tag)
                    binds = _pysnmp_varbinds(item, self._config.enterprise)
                    error, status, _, _ = await send_notification(
                        engine, lane.auth, lane.target, context, kind, *binds, lookupMib=False
                    )
                if error or status:
                    raise _SendError(str(error or status))
            except Exception as exc:  # counted and logged, never fatal
                lane.failed += 1
                self._outcome("failed")
                if not lane.failing:
                    log.warning("snmp: sending to %s failed: %s", lane.receiver.name, exc)
                lane.failing = True
            else:
                lane.sent += 1
                self._outcome("sent")
                if lane.failing:
                    log.info("snmp: sending to %s works again", lane.receiver.name)
                lane.failing = False
            finally:
                lane.queue.task_done()


class _SendError(Exception):
    pass


def _engine(engine_id: str | None, boots: int | None) -> Any:
    """One pysnmp engine (about 50 ms to make: done once per ``run``).

    The engine id and boots are set in the new engine's own MIB rather than
    through ``SnmpEngine(snmpEngineID=...)``, which would also keep a boots
    counter of its own in $TMPDIR/__pysnmp/ (lost with /tmp, and then v3
    receivers reject the traps as outside their time window)."""
    engine = SnmpEngine()
    builder = engine.get_mib_builder()
    if engine_id is not None:
        (mib_id,) = builder.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineID")
        mib_id.syntax = mib_id.syntax.clone(bytes.fromhex(engine_id.removeprefix("0x")))
        engine.snmpEngineID = mib_id.syntax
    if boots is not None:
        (mib_boots,) = builder.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineBoots")
        mib_boots.syntax = mib_boots.syntax.clone(boots)
    return engine


def _auth(receiver: TrapReceiver, tag: str) -> Any:
    """pysnmp credentials. Each receiver's target address gets its own tag
    (``_target``) and, for v2c, its own community entry: pysnmp sends a
    notification to every target address whose tag matches, so two receivers
    must never share one."""
    if receiver.version == "2c":
        return CommunityData(tag, receiver.community, mpModel=1, tag=tag)
    auth = USM_AUTH_HMAC96_SHA if receiver.auth_protocol == "SHA" else USM_AUTH_HMAC192_SHA256
    return UsmUserData(
        receiver.user,
        receiver.auth_key,
        receiver.priv_key,
        authProtocol=auth,
        privProtocol=USM_PRIV_CFB128_AES,
    )  # securityName stays the user name: pysnmp's USM looks users up by it


async def _target(receiver: TrapReceiver, tag: str) -> Any:
    cls = Udp6TransportTarget if ":" in receiver.host else UdpTransportTarget
    return await cls.create(
        (receiver.host, receiver.port),
        timeout=receiver.timeout,
        retries=receiver.retries,
        tagList=tag,
    )


def _pysnmp_varbinds(item: _Item, enterprise: str) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    for oid, value in varbinds(item.event, item.ticks, enterprise):
        if isinstance(value, int):
            out.append((ObjectIdentifier(oid), TimeTicks(value)))
        elif isinstance(value, str):
            out.append((ObjectIdentifier(oid), ObjectIdentifier(value)))
        else:
            out.append((ObjectIdentifier(oid), OctetString(value)))
    return out
