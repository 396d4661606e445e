"""The service-address table and its orphan countdowns (figure 2D, patent p. 7).

Every host keeps the table; the leader's copy is authoritative and travels in
its info messages, so a new leader inherits the countdowns instead of
restarting them. A row exists for every *valid* service address. A service
address whose preferred host neither serves it nor is fit to (live, OK, not
quiesced, not leaving) is an orphan: its countdown runs from the last time the
preferred host was seen serving it or fit to and, once it has run for
``orphan_timeout``, the address is invalid: the row goes and the address is
remembered as expired. (An address kept elsewhere while its preferred host is
fit, by ``failback = "manual"``, a failback delay or an operator's move, is
not an orphan: it could go home at any time.) An address becomes valid (again) only when
its preferred host is live and fit to serve it: OK and not quiesced (or
already serving it). A host that starts failing or quiesced brings no address
until it is fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from rais.core.addr import Addr
from rais.core.hosts import fit
from rais.core.messages import NOT_ORPHANED, AddrState, HostEntry, TableEntry
from rais.core.view import RowView


@dataclass(slots=True)
class AddrRow:
    address: Addr
    prefixlen: int
    preferred: Addr
    deadline: float | None
    """When the orphan countdown runs out; None while the preferred host serves it."""
    extras: tuple[tuple[Addr, int], ...] = ()
    """The other addresses of the address set ``address`` is the key of: from the
    preferred host's entry, or a table row that carried them."""


def _serves_own(entry: HostEntry) -> bool:
    pref = entry.preferred
    return any(a == pref and s == AddrState.ONLINE for a, s in entry.served)


class AddressTable:
    __slots__ = ("_next", "_stale", "expired", "orphan_timeout", "rows")

    def __init__(self, orphan_timeout: float) -> None:
        self.orphan_timeout = orphan_timeout
        self.rows: dict[Addr, AddrRow] = {}
        self.expired: dict[Addr, Addr] = {}
        self._next: float | None = None
        self._stale = False

    def _set(self, row: AddrRow, deadline: float | None) -> None:
        """Change a row's deadline, keeping the cached earliest deadline right."""
        old = row.deadline
        row.deadline = deadline
        if (
            deadline is not None
            and not self._stale
            and (self._next is None or deadline < self._next)
        ):
            self._next = deadline
        if old is not None and old == self._next and deadline != old:
            self._stale = True

    def views(self, now: float) -> tuple[RowView, ...]:
        """Every row with its orphan countdown left (rais.core.view)."""
        return tuple(
            RowView(
                r.address,
                r.prefixlen,
                r.preferred,
                None if r.deadline is None else max(0.0, r.deadline - now),
                r.extras,
            )
            for r in self.rows.values()
        )

    def observe(self, now: float, entry: HostEntry) -> None:
        """Take in a live host's own entry: its preferred address and whether it serves it."""
        pref = entry.preferred
        if pref is None or entry.observer:
            return
        row = self.rows.get(pref)
        if row is None:
            # A host brings its address into the group (or back, after it expired)
            # when it is fit to serve it: OK and not quiesced, or serving it already.
            serving = _serves_own(entry)
            if not serving and not fit(entry):
                return
            self.expired.pop(pref, None)
            row = AddrRow(pref, entry.prefixlen, entry.id, None)
            self.rows[pref] = row
        elif row.preferred != entry.id:
            # Two hosts claim the same preferred address: the lower id wins the row.
            if len(entry.id) > len(row.preferred) or (
                len(entry.id) == len(row.preferred) and entry.id > row.preferred
            ):
                return
            row.preferred = entry.id
        row.prefixlen = entry.prefixlen
        row.extras = entry.extras
        if fit(entry) or _serves_own(entry):
            if row.deadline is not None:
                self._set(row, None)
        elif row.deadline is None:
            self._set(row, now + self.orphan_timeout)

    def preferred_gone(self, now: float, entry: HostEntry, last_heard: float) -> None:
        """The preferred host of a row went silent or left: start its countdown from
        the last time it was heard (serving it, if it was)."""
        pref = entry.preferred
        if pref is None:
            return
        row = self.rows.get(pref)
        if row is not None and row.preferred == entry.id and row.deadline is None:
            self._set(row, last_heard + self.orphan_timeout)

    def merge(self, now: float, table: tuple[TableEntry, ...], *, leader: bool = True) -> bool:
        """Inherit the leader's rows and countdowns; from another host, only rows
        this host has never heard of (so a leader that missed a host's death
        still learns its orphan from whoever saw it). True if a row was added
        or changed (a leader's table of served rows, heard again, changes
        nothing)."""
        changed = False
        for te in table:
            if not leader and te.address in self.rows:
                continue
            row = self.rows.get(te.address)
            deadline = None if te.orphan_ms == NOT_ORPHANED else now + te.orphan_ms / 1000.0
            if row is None:
                if te.address in self.expired:
                    continue
                row = AddrRow(te.address, te.prefixlen, te.preferred, None, te.extras)
                self.rows[te.address] = row
                self._set(row, deadline)
                changed = True
                continue
            if te.extras and row.deadline is not None and row.extras != te.extras:
                # A version-1 sender's rows have no extras: never take "none" from it.
                row.extras = te.extras
                changed = True
            if row.deadline is not None and deadline is not None:
                # Both see an orphan: take the leader's countdown. A row this host
                # sees served by its preferred host keeps its own, fresher view.
                self._set(row, deadline)
                changed = True
        return changed

    def key_of(self, address: Addr) -> Addr | None:
        """The key of the (valid) address set that has ``address``, as key or extra."""
        if address in self.rows:
            return address
        for row in self.rows.values():
            if any(a == address for a, _ in row.extras):
                return row.address
        return None

    def next_deadline(self) -> float | None:
        if self._stale:
            best: float | None = None
            for row in self.rows.values():
                d = row.deadline
                if d is not None and (best is None or d < best):
                    best = d
            self._next = best
            self._stale = False
        return self._next

    def expire(self, now: float) -> list[AddrRow]:
        """Invalidate the orphans whose countdown ran out; return them."""
        gone = [r for r in self.rows.values() if r.deadline is not None and r.deadline <= now]
        self._stale = True
        for row in gone:
            del self.rows[row.address]
            self.expired[row.address] = row.preferred
        return gone

    def to_wire(self, now: float) -> tuple[TableEntry, ...]:
        """The rows whose countdown runs (the others are implied by the hosts' entries)."""
        out: list[TableEntry] = []
        for row in self.rows.values():
            if row.deadline is not None:
                ms = max(0, min(NOT_ORPHANED - 1, int((row.deadline - now) * 1000)))
                out.append(TableEntry(row.address, row.prefixlen, row.preferred, ms, row.extras))
        return tuple(out)
