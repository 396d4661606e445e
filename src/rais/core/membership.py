"""Who is in the group, who is live, and who leads (patent steps 450-452, 602-606).

A host is live while its last info is younger than ``timeout``; a host that
announces it is leaving is gone at once. A host whose last info announced a
pause (``HostEntry.pause_ms``, ``rais pause``) stays live until that many
milliseconds after the info arrived, or ``timeout``, whichever is later: it is
*paused* once silent past ``timeout`` (rais.core.pause). The leader is the live host with the
lowest id (IPv4 before IPv6, then numerically) among those that are not
observers, not leaving, and *settled* (have listened for one ``timeout`` since
they started, so that a host that has just booted does not issue commands
before it has heard the group). Every host computes the leader from its own
view; nothing is negotiated.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rais.core.addr import Addr, id_key
from rais.core.hosts import can_lead
from rais.core.messages import HostEntry, PausedPeer
from rais.core.view import MemberView


@dataclass(slots=True)
class HostRecord:
    """What this host knows of another host."""

    entry: HostEntry
    last_heard: float
    live: bool
    lost_at: float | None = None
    relayer: Addr | None = None
    """Its pause is known only from other hosts' relays: the host that relayed
    it last. It holds to the window's end while that host, when heard, keeps
    relaying it (or is not heard at all: its infos lost, or it died); once that
    host is heard without it, only one timeout past the latest relay, so a
    stale relay (the host came back or died since) lapses once nobody relays it."""
    relay_at: float = 0.0
    """When the latest relay of its pause arrived (while ``relayer`` is set)."""
    pause_until: float | None = None
    """While its last info announced a pause: when that pause runs out (this
    host's clock: the info's arrival plus its ``pause_ms``)."""

    def paused(self, now: float, timeout: float) -> bool:
        """Live only by its pause: silent past ``timeout``, inside the window."""
        return (
            self.live
            and self.pause_until is not None
            and now >= self.last_heard + timeout
            and now < self.pause_until
        )


@dataclass(frozen=True, slots=True)
class Heard:
    """What changed when an info arrived from another host."""

    joined: bool
    left: bool
    changed: bool
    previous: HostEntry | None
    pause: int = 0
    """1: this info started a pause; -1: it ended one (the host came back, in
    its new process, or its pause lapsed); 0: neither."""


_SAME = Heard(joined=False, left=False, changed=False, previous=None)
"""Returned for the common case: a live host's info with nothing new in it."""


def same_state(a: HostEntry, b: HostEntry) -> bool:
    """True if the two entries agree on everything the leader decides on."""
    return (
        a.served == b.served
        and a.ok == b.ok
        and a.quiesced == b.quiesced
        and a.leaving == b.leaving
        and a.settled == b.settled
        and a.observer == b.observer
        and a.preferred == b.preferred
        and a.extras == b.extras
        and (a.pause_ms > 0) == (b.pause_ms > 0)
        and a.versions == b.versions
        and a.features == b.features
    )


class Membership:
    """The host information database of one host (figure 2B, 'other host information')."""

    __slots__ = ("_by_age", "_paused", "records", "self_id", "timeout")

    def __init__(self, self_id: Addr, timeout: float) -> None:
        self.self_id = self_id
        self.timeout = timeout
        self.records: dict[Addr, HostRecord] = {}
        # Live hosts, oldest last_heard first: the head is the next to expire.
        self._by_age: OrderedDict[Addr, None] = OrderedDict()
        # Live hosts whose last info announced a pause, with when they expire
        # (kept apart: their expiry is not last_heard + timeout).
        self._paused: dict[Addr, float] = {}

    def heard(self, now: float, entry: HostEntry) -> Heard:
        """Record an info from ``entry.id``."""
        rec = self.records.get(entry.id)
        if rec is None:
            rec = self.records[entry.id] = HostRecord(entry, now, not entry.leaving)
            if not entry.leaving:
                self._track(rec, now)
            start = 1 if rec.pause_until is not None else 0
            return Heard(not entry.leaving, False, True, None, start)
        previous = rec.entry
        rec.entry = entry
        rec.last_heard = now
        rec.relayer = None
        if entry.leaving:
            was_live = rec.live
            if was_live:
                rec.live = False
                rec.lost_at = now
                self._untrack(rec)
            return Heard(joined=False, left=was_live, changed=was_live, previous=previous)
        was_paused = rec.live and rec.pause_until is not None
        if not rec.live:
            rec.live = True
            rec.lost_at = None
            self._track(rec, now)
            start = 1 if rec.pause_until is not None else 0
            return Heard(True, False, True, previous, start)
        self._track(rec, now)
        pause = (rec.pause_until is not None) - was_paused
        if pause == 0 and (previous is entry or same_state(previous, entry)):
            return _SAME
        return Heard(joined=False, left=False, changed=True, previous=previous, pause=pause)

    def relayed(
        self, now: float, entry: HostEntry, age: float, newer: bool, relayer: Addr
    ) -> Heard | None:
        """``relayer`` says ``entry.id`` is paused (``entry.pause_ms`` left) and
        that it heard it ``age`` seconds ago. Taken, as if heard then, only by a
        host that has never heard it (it booted since the pause began) or that
        heard it last before the relayer did (it lost the info that announced
        the pause, or was cut off from the group then and took the host for
        failed); but a host whose pause has lapsed here stays gone. None: not taken."""
        rec = self.records.get(entry.id)
        heard_at = now - age
        window = now + entry.pause_ms / 1000.0
        if rec is not None and rec.relayer is not None and rec.live and rec.pause_until is not None:
            if not newer:  # renewed by a relay
                rec.relayer, rec.relay_at = relayer, now
                rec.pause_until = max(window, rec.pause_until)
                self._paused[entry.id] = max(rec.pause_until, now + self.timeout)
            return None
        if (
            rec is not None
            and not newer
            and (
                rec.pause_until is not None  # known paused, or its pause lapsed here
                or rec.last_heard >= heard_at
            )
        ):
            return None
        heard = self.heard(now, entry)
        rec = self.records[entry.id]
        rec.last_heard = heard_at
        if rec.pause_until is not None:
            rec.relayer, rec.relay_at = relayer, now
            rec.pause_until = window
            self._paused[entry.id] = max(window, now + self.timeout)
        return heard

    def not_relayed(self, sender: Addr, relays: Iterable[Addr]) -> bool:
        """``sender`` was heard relaying only the paused hosts ``relays``: a pause
        known only from its relays that it no longer relays holds one timeout
        past the latest relay (at most to the window's end). True if one was
        cut short so (its expiry came forward)."""
        cut = False
        for host in self._paused:
            rec = self.records[host]
            if rec.relayer == sender and host not in relays and rec.pause_until is not None:
                until = min(rec.pause_until, rec.relay_at + self.timeout)
                cut = cut or until < self._paused[host]
                rec.pause_until = self._paused[host] = until
        return cut

    def paused_peers(self, now: float, epochs: Mapping[Addr, int]) -> tuple[PausedPeer, ...]:
        """The paused hosts this host knows, to relay in its infos."""
        if not self._paused:
            return ()
        out = []
        for host in self._paused:
            rec = self.records[host]
            if rec.pause_until is not None and rec.pause_until > now:
                left = math.ceil((rec.pause_until - now) * 1000)
                age = int((now - rec.last_heard) * 1000)
                entry = dataclasses.replace(rec.entry, pause_ms=0)
                out.append(PausedPeer(entry, left, age, epochs.get(host, 0)))
        return tuple(out)

    def _track(self, rec: HostRecord, now: float) -> None:
        """Queue a live host for expiry by its latest info."""
        host = rec.entry.id
        if rec.entry.pause_ms > 0:
            rec.pause_until = now + rec.entry.pause_ms / 1000.0
            self._by_age.pop(host, None)
            self._paused[host] = max(rec.pause_until, now + self.timeout)
        else:
            rec.pause_until = None
            self._paused.pop(host, None)
            self._by_age[host] = None
            self._by_age.move_to_end(host)

    def _untrack(self, rec: HostRecord) -> None:
        self._by_age.pop(rec.entry.id, None)
        self._paused.pop(rec.entry.id, None)

    def next_expiry(self) -> float | None:
        best = min(self._paused.values()) if self._paused else None
        for host in self._by_age:
            t = self.records[host].last_heard + self.timeout
            return t if best is None or t < best else best
        return best

    def expire(self, now: float) -> list[Addr]:
        """Mark silent hosts dead (patent step 606); return their ids."""
        gone: list[Addr] = []
        while self._by_age:
            host = next(iter(self._by_age))
            rec = self.records[host]
            # the same sum as next_expiry(): now - timeout can round the other way
            if rec.last_heard + self.timeout > now:
                break
            del self._by_age[host]
            rec.live = False
            rec.lost_at = now
            gone.append(host)
        for host, until in list(self._paused.items()):
            if until <= now:
                del self._paused[host]
                rec = self.records[host]
                rec.live = False
                rec.lost_at = now
                gone.append(host)
        return gone

    def live(self) -> list[HostEntry]:
        """Entries of the live hosts other than this one."""
        out = [self.records[h].entry for h in self._by_age]
        out.extend(self.records[h].entry for h in self._paused)
        return out

    def views(self, now: float) -> tuple[MemberView, ...]:
        """Every host heard, in the order first heard (rais.core.view)."""
        return tuple(
            MemberView(
                r.entry,
                r.live,
                now - r.last_heard,
                paused_s=(
                    max(0.0, r.pause_until - now) if r.live and r.pause_until is not None else None
                ),
            )
            for r in self.records.values()
        )

    def live_ids(self) -> list[Addr]:
        return [*self._by_age, *self._paused]

    def is_live(self, host: Addr) -> bool:
        rec = self.records.get(host)
        return rec is not None and rec.live

    def elect(self, own: HostEntry) -> Addr | None:
        """The leader from this host's view, by a full scan."""
        best: Addr | None = own.id if can_lead(own) else None
        for host in self.live_ids():
            if (best is None or id_key(host) < id_key(best)) and can_lead(self.records[host].entry):
                best = host
        return best

    def update_leader(
        self,
        own: HostEntry,
        leader: Addr | None,
        *,
        entry: HostEntry | None = None,
        gone: list[Addr] | None = None,
    ) -> Addr | None:
        """The leader after a change from ``leader`` (the core keeps it), without
        a full scan where one is not needed: ``entry`` is a host just heard
        whose ability to lead may have changed, ``gone`` are hosts no longer live."""
        if leader is not None and (
            (gone is not None and leader in gone)
            or (entry is not None and entry.id == leader and not can_lead(entry))
            or (leader == own.id and not can_lead(own))
        ):
            return self.elect(own)
        for cand in (entry, own):
            if (
                cand is not None
                and can_lead(cand)
                and (cand.id == own.id or self.is_live(cand.id))
                and (leader is None or id_key(cand.id) < id_key(leader))
            ):
                leader = cand.id
        return leader
