"""What each host has heard from each other host: when a lost datagram leaves
a receiver behind on its sender, and when it has caught up again.

A datagram that reaches a receiver in no copy (every control network dropped
it) is *lost*. A lost datagram is **harmless** when the receiver cannot tell it
was lost: it repeats what the receiver last got from that sender (the same
entry, service-address table and commands; the peers part is informational
and no decision depends on it), and the receiver will still hear the sender's
next heartbeat before it would time the sender out. Any other loss leaves the
receiver **behind** on the sender: what it knows of that host, and everything
it decides or advertises from it (leader, commands, DNS answer), may be out of
date, and no member can know better. It catches up when a datagram that the
sender sent after the loss reaches it (every info carries the sender's whole
entry, table and commands).

The engine treats the time while any receiver is behind as a disturbance, and
judges I1 and I6 from when the last one caught up, as after any other fault. A
lost copy whose twin arrived over another network changes nothing and counts
for nothing: with background loss a group of 32 hosts drops a copy every
millisecond or so, and a clock restarted by every dropped copy was never quiet
long enough to judge anything.
"""

from __future__ import annotations

from rais.core.messages import Datagram


def _same_news(a: Datagram, b: Datagram) -> bool:
    """Whether b tells a receiver nothing that a did not (single-part infos only)."""
    ma, mb = a.message, b.message
    if ma is None or mb is None:
        return False  # a part of a multi-part message: assume it mattered
    return ma.entry == mb.entry and ma.table == mb.table and ma.commands == mb.commands


class Hearing:
    __slots__ = ("behind", "heard", "heartbeat", "tick", "timeout")

    def __init__(self, *, heartbeat: float, timeout: float, tick: float) -> None:
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.tick = tick
        """The simulator's time step: a send fires up to one step late and a
        datagram lands up to one step after its delay."""
        self.heard: dict[tuple[int, int], tuple[float, float, Datagram]] = {}
        """(sender, receiver): when the receiver got the newest datagram it has
        from the sender, when that was sent, and the datagram. A later copy of
        it, or an older one that was overtaken, refreshes nothing (the core
        drops them as duplicates or stale)."""
        self.behind: dict[tuple[int, int], float] = {}
        """(sender, receiver) pairs where the receiver missed news: when the
        latest such datagram was sent."""

    def delivered(self, now: float, s: int, r: int, dgram: Datagram, sent: float) -> bool:
        """Receiver r got dgram (sent at ``sent``) from s. True if that was the
        last pair to catch up (nobody is behind any more)."""
        last = self.heard.get((s, r))
        if last is None or sent > last[1]:
            self.heard[(s, r)] = (now, sent, dgram)
        since = self.behind.get((s, r))
        if since is None or sent <= since:
            return False  # not behind, or this one left before the lost one
        del self.behind[(s, r)]
        return not self.behind

    def lost(self, now: float, s: int, r: int, dgram: Datagram, max_delay: float) -> bool:
        """dgram from s reached r in no copy. True if that made the first pair
        fall behind (somebody is behind now, nobody was before)."""
        last = self.heard.get((s, r))
        # The sender's next heartbeat lands by then; r times s out at
        # last + timeout, and a timeout in the same step as an arrival comes first
        # (seed 167 of --hosts 3 --duration 300 --loss 0.1 hit that tie exactly).
        lands = now + self.heartbeat + max_delay + 2 * self.tick
        if (
            last is not None
            and _same_news(last[2], dgram)
            and lands < last[0] + self.timeout - self.tick / 2
        ):
            return False  # a repeat, and the next heartbeat lands before r times s out
        first = not self.behind
        self.behind[(s, r)] = now
        return first

    def forget(self, index: int) -> bool:
        """Host ``index`` went down: it neither hears nor is heard. True if that
        left nobody behind where somebody was."""
        if not self.behind and not self.heard:
            return False
        was = bool(self.behind)
        for pairs in (self.heard, self.behind):
            for key in [k for k in pairs if index in k]:
                del pairs[key]
        return was and not self.behind
