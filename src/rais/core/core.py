"""One host in one service group: the sans-I/O protocol state machine.

Inputs are method calls, each with an explicit ``now`` (seconds, any
monotonic origin): a datagram received, the timer expiring, a test result, a
load sample, an action completed, an operator command. Outputs are effects
(datagrams to send, addresses to acquire, release or announce, events),
drained with ``effects()``; ``get_timer()`` says when to call
``handle_timer`` next. Randomness comes from the injected ``random.Random``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rais.core.addr import Addr, fmt
from rais.core.config import MIN_KERNEL
from rais.core.effects import Effect, EventKind
from rais.core.emit import info
from rais.core.hearing import Hearing
from rais.core.hosts import eligible
from rais.core.messages import (
    AddrState,
    Command,
    Datagram,
    Hello,
    Message,
    Op,
    ReqOp,
    Request,
)
from rais.core.requests import winning
from rais.core.versions import send_version


class Core(Hearing):
    """The protocol engine of one host in one service group: every input on one
    path (``_input``), the transitions it drives, the effects it queues."""

    def _input(self, now: float, body: Callable[[float], bool], *, wake: bool = True) -> None:
        """The one path of every input (after h11's ``_process_event``): the
        timer is due for a recomputation (``wake``), nothing is taken once the
        host has left, ``body(now)`` applies the input and says whether anything
        changed, and if so the control pass and the info follow (``_finish``).
        A plain heartbeat (``wake=False``) only pushes an expiry later, so it
        leaves the cached timer alone: an early wake-up is harmless."""
        if wake:
            self._timer_stale = True
        self.now = now
        if self.left:
            return
        if body(now):
            self._timer_stale = True
            self._finish(now)

    def start_listening(self, now: float) -> None:
        """The control channel is open from ``now`` on. Nothing was heard before
        it, so the host settles (may lead; its DNS answers count) one full
        ``timeout`` after ``now`` at the earliest, not after its creation."""
        self._input(now, self._listen)

    def datagram_received(self, now: float, data: bytes, via: int) -> bool:
        """A datagram arrived on control address ``via``: authenticate and
        process it. Returns whether it was authentic (a driver may trust its
        source: rais.drivers.transport)."""
        dgram = self.inbox.decode(data, self.group_tag, self.config)
        if dgram is None:
            return False
        self.receive(now, dgram, via)
        return True

    def receive(self, now: float, dgram: Datagram, via: int) -> None:
        """An authenticated, decoded datagram arrived (the simulator decodes once per send)."""
        self._input(now, lambda now: self._on_datagram(now, dgram), wake=False)

    def handle_timer(self, now: float) -> None:
        self._input(now, self._on_timer)

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must be called next (None: never). It may be early,
        never late: calling ``handle_timer`` early is harmless."""
        if not self._timer_stale:
            return self._timer
        self._timer_stale = False
        self._timer = self._compute_timer()
        return self._timer

    def _compute_timer(self) -> float | None:
        if self.left:
            return None
        t = self.next_heartbeat
        for d in (
            self.members.next_expiry(),
            self.table.next_deadline(),
            self.control.next_deadline() if self.is_leader else None,
            self.next_announce,
            self.served.next_retry(),
            self.requests.next_expiry(),
            self.link.fit_at,
            None if self.settled else self.settle_at,
            self.own_pause.until,
            self.guard.next_deadline(self.now, self.served.states, self.is_leader),
        ):
            if d is not None and d < t:
                t = d
        return t

    def test_result(self, now: float, ok: bool, reason: str = "") -> None:
        """The combined result of this group's tests (fig. 3, steps 305-320)."""
        self._input(now, lambda now: self._tested(now, ok, reason))

    def link_state(self, now: float, up: bool, reason: str = "") -> None:
        """The carrier of the group's service interface (rais.core.link)."""
        self._input(now, lambda now: self._linked(now, up, reason))

    def arbiter_state(
        self,
        now: float,
        *,
        reachable: bool,
        held: bool,
        token: int = 0,
        until: float = 0.0,
    ) -> None:
        """Guard "etcd": the driver's latest word on the group's leader key
        (after a ``Campaign``): etcd answered or not (``reachable``), this host
        holds the key (``held``) with create revision ``token``, surely until
        ``until`` (this clock: the TTL counted from the send of the last grant or
        renewal that succeeded)."""

        def body(now: float) -> bool:
            # Every host ever heard, even one that left: it may come back on
            # the far side of a partition, reach etcd and lead there.
            self.guard.arbiter(now, reachable, held, token, until, list(self.members.records))
            return True

        self._input(now, body)

    def load_sample(self, now: float, load: int, capacity: int) -> None:
        """Load and capacity for the next info (unsigned 32-bit, figure 2C); not
        an input of the state machine: it changes nothing until that info."""
        self.load = max(0, min(load, 0xFFFFFFFF))
        self.capacity = max(0, min(capacity, 0xFFFFFFFF))

    def action_done(self, now: float, address: Addr, ok: bool, reason: str = "") -> None:
        """The acquire or release action on ``address`` finished."""
        self._input(now, lambda now: self._done(now, address, ok, reason))

    def quiesce(self, now: float) -> None:
        self._input(now, lambda now: self._set_quiesced(now, True))

    def unquiesce(self, now: float) -> None:
        self._input(now, lambda now: self._set_quiesced(now, False))

    def move(self, now: float, address: Addr, target: Addr, stamp: int) -> str | None:
        """Operator: pin ``address`` to host ``target`` (``rais move``); ``stamp`` is
        the wall-clock time in ms. Returns why it was refused, or None."""
        return self._request(now, Request(ReqOp.MOVE, address, target, stamp))

    def failback(self, now: float, address: Addr, stamp: int) -> str | None:
        """Operator: give ``address`` back to its preferred host now (``rais failback``)."""
        return self._request(now, Request(ReqOp.FAILBACK, address, None, stamp))

    def pause(self, now: float, duration: float) -> str | None:
        """Operator: this host's agent restarts in place within ``duration``
        seconds (``rais pause``; rais.core.pause). Returns why it was refused, or
        None. The caller checks ``pause_lacking`` in every group of the host first."""
        why = self.pause_refusal(duration)
        if why is not None:
            return why
        self._input(now, lambda now: self._pause(now, duration))
        return None

    def resume(self, now: float, addresses: list[tuple[Addr, int]]) -> None:
        """Start input of a new process after an in-place restart, before
        ``start_listening``: the previous process kept ``addresses`` configured
        through its pause; this one holds them ONLINE from the start (announced
        again, refreshed by the driver) and takes over without a move."""
        self._input(now, lambda now: self._resume(now, addresses))

    def leave(self, now: float) -> None:
        """Graceful leave: release everything, then tell the group (done when ``left``)."""
        self._input(now, self._leave)

    def effects(self) -> list[Effect]:
        """Drain the effects produced so far, in order."""
        return self.out.drain()

    @property
    def idle(self) -> bool:
        """No effect waits to be drained and ``get_timer`` has not moved since
        it was last asked: a driver may skip draining after this input (a
        heartbeat that changed nothing, such as every steady info)."""
        return not self.out.items and not self._timer_stale and not self.left

    # ----------------------------------------------------- input bodies

    def _tested(self, now: float, ok: bool, reason: str) -> bool:
        if ok == self.ok:
            return False
        self.ok = ok
        if ok:
            self.out.event(now, EventKind.TEST_RECOVERED, None, reason)
        else:
            self.out.event(now, EventKind.TEST_FAILED, None, reason)
            self.served.release_all()
        self._self_changed(now)
        return True

    def _linked(self, now: float, up: bool, reason: str) -> bool:
        if self.link.report(now, up, reason) is None:
            return False
        if not self.link.fit:
            self.served.release_all()
        self._self_changed(now)
        return True

    def _done(self, now: float, address: Addr, ok: bool, reason: str) -> bool:
        was = self.served.states.get(address)
        if self.served.done(now, address, ok, reason):
            if address not in self.served.states:
                self.guard.forget(address)
            if was == AddrState.ACQUIRING:
                if ok:
                    self.control.acquired(self.id, address)
                else:
                    self.control.acquire_failed(now, self.id, address)
            if self.served.online() and self.next_announce is None:
                self.next_announce = now + self.config.announce_interval
            self._self_changed(now)
            if self.leaving and not self.served.states:
                self._say_goodbye(now)
        return True

    def _set_quiesced(self, now: float, value: bool) -> bool:
        if self.quiesced == value:
            return False
        self.quiesced = value
        self.out.event(now, EventKind.QUIESCED if value else EventKind.UNQUIESCED)
        self._self_changed(now)
        return True

    def _request(self, now: float, req: Request) -> str | None:
        req = self._on_key(req)
        why = self.refusal(req)
        if why is not None:
            self._timer_stale = True
            return why
        self._input(now, lambda now: self._requested(now, req))
        return None

    def _requested(self, now: float, req: Request) -> bool:
        self.requests.add(now, req)
        if req.op == ReqOp.MOVE:
            self.out.event(now, EventKind.MOVE_REQUESTED, req.address, f"to {fmt(req.target)}")
        else:
            self.out.event(now, EventKind.FAILBACK_REQUESTED, req.address, "operator")
        self._self_changed(now)
        return True

    def _pause(self, now: float, duration: float) -> bool:
        self.own_pause.until = now + duration
        self.out.event(now, EventKind.PAUSED, None, f"for {duration:g}s")
        self._self_changed(now)
        self._elect(now)
        return True

    def _resume(self, now: float, addresses: list[tuple[Addr, int]]) -> bool:
        for address, prefixlen in addresses:
            if self.served.resume(address, prefixlen):
                self.out.event(now, EventKind.RESUMED, address, "held across an in-place restart")
        if self.served.online() and self.next_announce is None:
            self.next_announce = now + self.config.announce_interval
        self._self_changed(now)
        return True

    def _leave(self, now: float) -> bool:
        if self.leaving:
            return False
        self.leaving = True
        self.served.release_all()
        self._self_changed(now)
        if not self.served.states:
            self._say_goodbye(now)
        return True

    # -------------------------------------------------------------- internals

    def _listen(self, now: float) -> bool:
        if not self.settled and now + self.config.timeout > self.settle_at:
            self.settle_at = now + self.config.timeout
        return False

    def _on_datagram(self, now: float, dgram: Datagram) -> bool:
        msg = self.versions.accept(dgram, self.inbox, self.members.records, self.config)
        if msg is None:
            return False
        if isinstance(msg, Hello):  # it changed a member's entry, or relays pauses
            if self.is_leader:
                self._need_pass = True
            # a hello carries all its sender's relays or, if they do not fit, none
            self._take_relays(now, dgram.sender, msg.paused, whole=bool(msg.paused))
            return True
        # Only these can bring the timer forward (see ``_input``).
        news = self._on_message(now, msg, whole=dgram.version != 1)
        return news or self._need_pass or self._send_info or self.guard.dirty

    def _on_timer(self, now: float) -> bool:
        if not self.settled and now >= self.settle_at:
            self.settled = True
            self._self_changed(now)
            self._elect(now)
        if self.own_pause.lapsed(now):
            self.out.event(now, EventKind.PAUSE_ENDED, None, "the pause ran out")
            self._self_changed(now)
            self._elect(now)
        gone = self.members.expire(now)
        for host in gone:
            ran_out = self.members.records[host].pause_until is not None
            self._host_gone(
                now, host, EventKind.HOST_LOST, "its pause ran out" if ran_out else "timeout"
            )
        if gone:
            self._elect(now, gone=gone)
        deadline = self.table.next_deadline()
        if deadline is not None and deadline <= now:
            for row in self.table.expire(now):
                if self.is_leader:
                    self.out.event(now, EventKind.ORPHAN_EXPIRED, row.address, "orphan timeout")
            self._need_pass = True
        if self.is_leader and self.control.expire(now):
            self._need_pass = True
        if self.link.expire(now):
            self._self_changed(now)
        lapsed = self.guard.lapsed(now, self.served.states)
        if lapsed:
            for key in lapsed:
                self.served.release(key)
            self._self_changed(now)
        self.guard.prune(now)
        if self.next_announce is not None and now >= self.next_announce:
            self.served.announce_all()
            self.next_announce = now + self.config.announce_interval
        if now >= self.next_heartbeat:
            self._send_info = True
            self._need_pass = True
            self.next_heartbeat = self._next_beat(now)
        return True

    def _next_beat(self, now: float) -> float:
        """The heartbeat after the one sent at ``now``: one ``heartbeat`` after
        the one due (a late one does not bring the next forward), or the first
        point after ``now`` of the beat grid (``beat_origin``). Either way no two
        heartbeats are more than one ``heartbeat`` apart."""
        every, origin = self.config.heartbeat, self.beat_origin
        if origin is None:
            t = self.next_heartbeat + every
            return t if t > now else now + every
        t = origin + ((now - origin) // every + 1) * every
        while t <= now:  # rounding
            t += every
        return t

    def _self_changed(self, now: float) -> None:
        entry = self.entry()
        self.table.observe(now, entry)
        if self.is_leader:
            self.control.observe(entry)
            self._need_pass = True
        self._send_info = True

    def _on_message(self, now: float, msg: Message, whole: bool = True) -> bool:
        """Take in an info (``whole``: not version 1, so it carries every relay
        of its sender); True if anything but the sender's liveness changed."""
        entry = msg.entry
        news = self._take_entry(now, entry, self.members.heard(now, entry))
        news = self._take_relays(now, entry.id, msg.paused, whole) or news
        from_leader = entry.id == self._leader
        lease = self.guard.take(now, entry.id, msg.guard, from_leader, entry.served)
        if from_leader:
            self._leader_rows = frozenset(te.address for te in msg.table)
        if msg.table and self.table.merge(now, msg.table, leader=from_leader):
            news = True
        if from_leader:
            for cmd in msg.commands:
                if cmd.target == self.id:
                    self._obey(now, cmd, lease)
                    news = True
        return news

    def _obey(self, now: float, cmd: Command, lease: float | None = math.inf) -> None:
        """Figures 4B and 4C: an acquire or release from this host's leader. With
        a guard an acquire needs ``lease``: until when the info that carried it
        lets this host hold the address (rais.core.guard), at least
        ``MIN_KERNEL`` ahead."""
        if cmd.op == Op.ACQUIRE:
            if not eligible(self.entry()) or self.own_pause.until is not None:
                return
            if lease is None or lease - now < MIN_KERNEL:
                return
            changed = self._acquire_set(cmd)
            self.guard.leased(cmd.address, lease)
        else:
            changed = self.served.release(cmd.address)
        if changed:
            self._self_changed(now)

    def _run_pass(self, now: float) -> None:
        self._need_pass = False
        hosts = self.members.live()
        hosts.append(self.entry())
        new = self.control.run(
            now,
            hosts,
            self.table,
            self.config.effective_command_timeout,
            winning(hosts),
            self.guard.free_at,
            self.guard.hand_over_at(),
        )
        for cmd in new:
            if cmd.target == self.id:
                self._obey(now, cmd, now + self.config.lease if self.guard.on else math.inf)
            else:
                self._send_info = True
        if any(c.target == self.id for c in new):
            self.control.observe(self.entry())

    def _finish(self, now: float) -> None:
        if self.requests.mine:
            hosts = self.members.live()
            hosts.append(self.entry())
            if self.requests.prune(now, hosts):
                self._self_changed(now)
        held = self.served.states
        if self.guard.settle(now, self.is_leader, self.settled, self._leader, held, self.leaving):
            self._send_info = True
            self._need_pass = True
            if not self.guard.quorate(now):
                self.control.reset()
        if not (self.is_leader and self.settled and self.guard.quorate(now)):
            # Only a leader runs passes (with a guard, a quorate one); becoming one asks for one.
            self._need_pass = False
        for _ in range(3):
            if not self._need_pass:
                break
            self._run_pass(now)
        self._reconcile_sets(now)
        if self._send_info:
            self._emit_info(now)

    def _emit_info(self, now: float) -> None:
        self._send_info = False
        entry = self.entry()
        # This host's own address enters the table as the group learns of it.
        self.table.observe(now, entry)
        leading = self.is_leader
        commands = self.control.pending() if leading and self.guard.quorate(now) else ()
        guard = None
        if self.guard.on:
            served = [a for a, _ in entry.served]
            live = [e.id for e in self.members.live()]
            guard = self.guard.section(now, self._leader, self.settled, leading, served, live)
            assert guard is not None
            self.guard.observe(now, self.id, served, None)
            for cmd in commands:
                if cmd.op == Op.ACQUIRE and cmd.target != self.id:
                    self.guard.acquiring(now, cmd.target, cmd.address, guard.stamp)
        self._send(
            info(
                now,
                entry,
                pages=self._pages,
                members=self.members,
                table=self.table,
                leader_rows=self._leader_rows,
                commands=commands if leading else None,
                epochs=self.versions.epochs,
                guard=guard,
            )
        )

    def _send(self, msg: Message) -> None:
        version = send_version(msg.entry, self.members.live())
        self.sender.send(msg, version)
        if version == 1 and len(msg.entry.versions) > 1:
            e = msg.entry
            self.sender.hello(Hello(e.versions, e.features, paused=msg.paused))

    def _say_goodbye(self, now: float) -> None:
        """The last word of a leaving host, sent twice against loss."""
        self.left = True
        msg = Message(entry=self.entry(), peers=(), table=(), commands=())
        self._send(msg)
        self._send(msg)
        self._send_info = False
