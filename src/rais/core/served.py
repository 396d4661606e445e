"""The addresses this host serves, and every transition of their state.

Figures 4B/4C (obeying the leader), 5B/5C (the outcome of acquire and release
actions) and step 320 (a failed test releases everything). Actions on one
address never overlap: a release asked for while the acquire is still running
is remembered and started when the acquire completes.

Address sets (docs/protocol.md, "Address sets"). A served address is the
*key* of its set: the states (acquiring, online, releasing) are the key's,
and the other addresses of the set (its *extras*) go with it. Every
transition of a set is here, one action at a time per set:

* ``acquire``: the key and, when ``sets`` is common to the group, its extras,
  in one action (all or nothing);
* ``release``: the key and every extra that is up, in one action;
* ``extend`` (the key online): the extras that wait, once ``sets`` is
  common (``reconcile``); a failure leaves them waiting and is retried after
  ``retry`` seconds;
* ``shrink`` (the key online): the extras that are up but may not be, once
  ``sets`` is no longer common (or the set changed).

A release asked for while any action on the set runs waits for it;
``reconcile`` starts nothing on a set with an action in flight. The events:
``set-partial`` when a set is online without some of its extras (acquired
without them, an extend failed, a shrink done), ``set-complete`` when an
extend makes it whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rais.core.addr import Addr, fmt
from rais.core.effects import EventKind
from rais.core.messages import AddrState, HostEntry
from rais.core.outbox import Extras, Outbox
from rais.core.view import SetView

_ACQUIRE = "acquire"
_RELEASE = "release"
_EXTEND = "extend"
_SHRINK = "shrink"


@dataclass(slots=True)
class _Set:
    prefixlen: int
    full: Extras
    """Every other address of the set, as this host knows it."""
    up: Extras = ()
    """The extras configured (their action completed)."""
    action: str | None = None
    change: Extras = ()
    """The extras the action in flight adds or removes."""
    release_after: bool = False
    retry_at: float | None = None
    """An extend failed: not tried again before this."""
    why: str = ""
    """Why extras wait."""


def _show(extras: Extras) -> str:
    return " ".join(f"{fmt(a)}/{p}" for a, p in extras)


def _minus(a: Extras, b: Extras) -> Extras:
    return tuple(x for x in a if x not in b)


class Served:
    __slots__ = ("out", "retry", "sets", "states")

    def __init__(self, out: Outbox, retry: float = 1.0) -> None:
        self.out = out
        self.retry = retry
        self.states: dict[Addr, AddrState] = {}
        self.sets: dict[Addr, _Set] = {}

    def snapshot(self) -> tuple[tuple[Addr, AddrState], ...]:
        return tuple(self.states.items())

    def online(self) -> list[Addr]:
        return [a for a, s in self.states.items() if s == AddrState.ONLINE]

    def prefix(self, address: Addr) -> int:
        return self.sets[address].prefixlen

    def acquire(
        self, address: Addr, prefixlen: int, full: Extras = (), *, whole: bool = True, why: str = ""
    ) -> bool:
        """Start acquiring (the caller has checked OK/quiesce) the set keyed by
        ``address`` with its extras ``full``: with them if ``whole``, else the
        key alone (the extras wait, for ``why``). False if already served."""
        if address in self.states:
            if self.states[address] == AddrState.ACQUIRING:
                self.sets[address].release_after = False
            return False
        change = full if whole else ()
        self.states[address] = AddrState.ACQUIRING
        self.sets[address] = _Set(prefixlen, full, action=_ACQUIRE, change=change, why=why)
        self.out.acquire(address, prefixlen, change)
        return True

    def resume(self, address: Addr, prefixlen: int) -> bool:
        """Hold ``address`` ONLINE at once: the previous process of this host
        kept it configured across an in-place restart (rais.core.pause). False
        if it is served already."""
        if address in self.states:
            return False
        self.states[address] = AddrState.ONLINE
        # A set's key alone: its other addresses were removed at the restart,
        # and ``reconcile`` adds them again once it may.
        self.sets[address] = _Set(prefixlen, ())
        self.out.announce(address, prefixlen)
        return True

    def release(self, address: Addr) -> bool:
        """Start releasing an address this host serves (with every extra of its
        set that is up). False if there was nothing to do now."""
        state = self.states.get(address)
        if state is None or state == AddrState.RELEASING:
            return False
        s = self.sets[address]
        if s.action is not None:
            s.release_after = True
            return False
        self.states[address] = AddrState.RELEASING
        s.action, s.change = _RELEASE, s.up
        self.out.release(address, s.prefixlen, s.up)
        return True

    def release_all(self) -> bool:
        changed = False
        for address in list(self.states):
            changed = self.release(address) or changed
        return changed

    def done(self, now: float, address: Addr, ok: bool, reason: str) -> bool:
        """The action on the set keyed by ``address`` completed. Returns True if
        the key's state changed."""
        s = self.sets.get(address)
        if s is None or s.action is None:
            return False
        action, change = s.action, s.change
        s.action, s.change = None, ()
        if action == _ACQUIRE:
            if not ok:
                # The driver has already removed the addresses (figure 5B, step 542).
                del self.states[address], self.sets[address]
                self.out.event(now, EventKind.ACQUIRE_FAILED, address, reason)
                return True
            self.states[address] = AddrState.ONLINE
            s.up = change
            self.out.event(now, EventKind.ACQUIRED, address, reason)
            if not s.release_after:
                self.out.announce(address, s.prefixlen, s.up)
                self._partial(now, address, s)
        elif action == _RELEASE:
            del self.states[address], self.sets[address]
            kind = EventKind.RELEASED if ok else EventKind.RELEASE_FAILED
            self.out.event(now, kind, address, reason)
            return True
        elif action == _EXTEND:
            if ok:
                s.up += change
                self.out.announce(address, s.prefixlen, s.up)
                if not _minus(s.full, s.up):
                    self.out.event(now, EventKind.SET_COMPLETE, address, _show(s.up))
            else:
                s.retry_at = now + self.retry
                s.why = f"adding them failed: {reason}"
                self._partial(now, address, s)
        else:  # shrink: gone either way (as a release, step 570)
            s.up = _minus(s.up, change)
            if not ok:
                s.why = f"{s.why}; removing them failed: {reason}"
            self._partial(now, address, s)
        if s.release_after:
            s.release_after = False
            return self.release(address)
        return action == _ACQUIRE

    def _partial(self, now: float, address: Addr, s: _Set) -> None:
        waiting = _minus(s.full, s.up)
        if waiting:
            text = f"waiting: {_show(waiting)} ({s.why})" if s.why else f"waiting: {_show(waiting)}"
            self.out.event(now, EventKind.SET_PARTIAL, address, text)

    def has_sets(self) -> bool:
        """Whether any served address has extras (known or up)."""
        return any(s.full or s.up for s in self.sets.values())

    def reconcile(
        self,
        now: float,
        common: bool,
        why: str,
        full_of: Callable[[Addr], Extras | None],
        *,
        grow: bool = True,
    ) -> None:
        """Bring every online set to what it may be: whole while ``sets`` is
        ``common``, else the key alone (``why``: the reason). ``full_of(key)``
        gives a set's extras as now known (None: keep what this host knows).
        Without ``grow`` (the host is not eligible: quiesced) nothing is added,
        as a quiesced host takes no new address. One action at a time per set:
        a set with an action in flight waits."""
        for key, s in self.sets.items():
            if self.states[key] != AddrState.ONLINE or s.action is not None:
                continue
            full = full_of(key)
            if full is not None:
                s.full = full
            wanted = s.full if common else ()
            if not common:
                s.why = why
            extra = _minus(s.up, wanted)
            if extra:
                s.action, s.change = _SHRINK, extra
                self.out.release(key, s.prefixlen, extra, extras_only=True)
                continue
            missing = _minus(wanted, s.up)
            if missing and not grow:
                s.why = "this host is not eligible (quiesced)"
            elif missing and (s.retry_at is None or s.retry_at <= now):
                s.retry_at = None
                s.action, s.change = _EXTEND, missing
                self.out.acquire(key, s.prefixlen, missing, extras_only=True)

    def next_retry(self) -> float | None:
        times = [s.retry_at for s in self.sets.values() if s.retry_at is not None]
        return min(times) if times else None

    def key_of(self, address: Addr) -> Addr | None:
        """The served key whose set has ``address`` (the key itself included)."""
        if address in self.states:
            return address
        for key, s in self.sets.items():
            if any(a == address for a, _ in (*s.full, *s.up, *s.change)):
                return key
        return None

    def holding(self, address: Addr) -> AddrState | None:
        """How this host holds ``address``, a key or an extra: an extra being added
        counts as acquiring, one being removed as releasing, one waiting as not
        held."""
        state = self.states.get(address)
        if state is not None:
            return state
        for key, s in self.sets.items():
            if any(a == address for a, _ in s.change):
                adding = s.action in (_ACQUIRE, _EXTEND)
                return AddrState.ACQUIRING if adding else AddrState.RELEASING
            if any(a == address for a, _ in s.up):
                return self.states[key]
        return None

    def views(self) -> tuple[SetView, ...]:
        """Every served set with extras: which addresses are up, which are being
        added or removed, which wait and why (rais.core.view)."""
        out = []
        for key, s in self.sets.items():
            if not (s.full or s.up):
                continue
            adding = s.change if s.action in (_ACQUIRE, _EXTEND) else ()
            removing = s.change if s.action in (_RELEASE, _SHRINK) else ()
            waiting = _minus(_minus(s.full, s.up), adding)
            out.append(
                SetView(
                    key,
                    s.prefixlen,
                    self.states[key],
                    s.full,
                    s.up,
                    adding,
                    removing,
                    waiting,
                    s.why if waiting else "",
                )
            )
        return tuple(out)

    def announce_all(self) -> None:
        for address in self.online():
            s = self.sets[address]
            self.out.announce(address, s.prefixlen, s.up)

    def reannounce_resolved(self, prev: HostEntry, entry: HostEntry) -> None:
        """Another host stopped claiming an address this host holds: a duplicate was
        resolved in our favour, so tell the link again who answers for it."""
        still = {a for a, _ in entry.served}
        for address, _ in prev.served:
            if address not in still and self.states.get(address) == AddrState.ONLINE:
                s = self.sets[address]
                self.out.announce(address, s.prefixlen, s.up)
