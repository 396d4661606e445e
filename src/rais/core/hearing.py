"""How a core takes in what it hears of other hosts: their entries (heard
from them, or relayed while they pause), their loss, and the election that
follows (patent step 602). The rest of the transitions are rais.core.core's."""

from __future__ import annotations

import dataclasses

from rais.core.addr import Addr, fmt
from rais.core.effects import EventKind
from rais.core.hosts import can_lead
from rais.core.membership import Heard
from rais.core.messages import HostEntry, PausedPeer
from rais.core.parts import CoreParts


class Hearing(CoreParts):
    """Entries heard, hosts lost, the leader elected."""

    def _take_relays(
        self, now: float, sender: Addr, paused: tuple[PausedPeer, ...], whole: bool = True
    ) -> bool:
        """Paused hosts ``sender`` relays (docs/protocol.md, "Relayed"); ``whole``:
        the message could carry them all (not a version-1 info), so a pause known
        only from this sender's relays that it no longer relays is stale."""
        news = False
        for p in paused:
            newer = None if p.entry.id == self.id else self.versions.relay(p.entry.id, p.epoch)
            if newer is not None:
                relayed = dataclasses.replace(p.entry, pause_ms=p.remaining_ms)
                heard = self.members.relayed(now, relayed, p.age_ms / 1000.0, newer, sender)
                if heard is not None:
                    news = self._take_entry(now, relayed, heard) or news
        if whole and self.members.not_relayed(sender, {p.entry.id for p in paused}):
            news = True
        return news

    def _take_entry(self, now: float, entry: HostEntry, heard: Heard) -> bool:
        """Act on a host's entry, heard from it (or relayed while it is paused)."""
        news = heard.changed
        if heard.joined:
            if heard.previous is None:
                self._pages.ids.append(entry.id)
            self.out.event(now, EventKind.HOST_JOINED, None, f"host {fmt(entry.id)}")
            self.control.membership_changed()
        if heard.pause > 0:
            why = f"host {fmt(entry.id)}: for {entry.pause_ms} ms"
            self.out.event(now, EventKind.HOST_PAUSED, None, why)
        elif heard.pause < 0:
            self.out.event(now, EventKind.HOST_RESUMED, None, f"host {fmt(entry.id)}")
        if heard.left:
            self._host_gone(now, entry.id, EventKind.HOST_LEFT, "left")
        if heard.changed:
            if not heard.left:
                self.table.observe(now, entry)
            prev = heard.previous
            if heard.left:
                self._elect(now, gone=[entry.id])
            elif heard.joined or prev is None or can_lead(prev) != can_lead(entry):
                self._elect(now, entry=entry)
            if prev is not None and prev.served != entry.served:
                self.served.reannounce_resolved(prev, entry)
                self.control.note_outcomes(now, prev, entry)
            if self.is_leader:
                self._need_pass = True
        if self.is_leader and self.control.has_pending() and self.control.observe(entry):
            self._need_pass = True
        return news

    def _host_gone(self, now: float, host: Addr, kind: EventKind, reason: str) -> None:
        rec = self.members.records[host]
        self.out.event(now, kind, None, f"host {fmt(host)}: {reason}")
        # A host lost after its pause counts as gone from the end of the pause.
        since = rec.last_heard if rec.pause_until is None else rec.pause_until
        self.table.preferred_gone(now, rec.entry, since)
        self.control.host_gone(host)
        self.control.membership_changed()
        self.inbox.forget(host)
        self._need_pass = True

    def _elect(
        self, now: float, *, entry: HostEntry | None = None, gone: list[Addr] | None = None
    ) -> None:
        """Recompute the leader: in full with no arguments, else after ``entry`` was
        heard or the ``gone`` hosts were lost (patent step 602)."""
        old = self._leader
        own = self.entry()
        if entry is None and gone is None:
            new = self.members.elect(own)
        else:
            new = self.members.update_leader(own, old, entry=entry, gone=gone)
        if new != old:
            self._leader = new
            self._leader_rows = frozenset()
            self.out.event(now, EventKind.LEADER_CHANGED, None, f"leader {fmt(new)}")
            self.control.reset()
            if new == self.id:
                self._need_pass = True
                self._send_info = True
