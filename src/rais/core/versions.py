"""Which wire version this host sends, and what it knows of the others'
versions and features (docs/protocol.md, "Versions and features").

A host sends version 2 while every live member speaks it; otherwise version 1,
which every release reads, followed by a *hello* (a version-2 datagram with
only its versions and features) that version-1 hosts drop and hosts of this
release take in. What a hello says holds for the sender's epoch: the
version-1 infos of that epoch are read as coming from a host that announced
it. A new epoch (the sender restarted, perhaps into another release) forgets
it until the sender says it again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from rais.core.addr import Addr
from rais.core.config import CoreConfig
from rais.core.features import common_version
from rais.core.inbox import Inbox
from rais.core.membership import HostRecord
from rais.core.messages import Datagram, Hello, HostEntry, Message


class Versions:
    """Per sender: its epoch last seen and what its hello of that epoch said."""

    __slots__ = ("_epochs", "_hellos")

    def __init__(self) -> None:
        self._epochs: dict[Addr, int] = {}
        self._hellos: dict[Addr, tuple[int, Hello]] = {}

    def read(self, entry: HostEntry, epoch: int, version: int) -> HostEntry:
        """The entry of an info that arrived in wire ``version`` and sender ``epoch``,
        with the versions and features its sender announced in that epoch."""
        self._epochs[entry.id] = epoch
        return entry if version != 1 else self.apply(entry)

    def hello(self, sender: Addr, epoch: int, hello: Hello) -> bool:
        """Take in a hello; True if it concerns the sender's current epoch (the
        caller then updates the sender's entry with :meth:`apply`)."""
        known = self._hellos.get(sender)
        if known is not None and known[0] > epoch:
            return False
        self._hellos[sender] = (epoch, hello)
        return self._epochs.get(sender) == epoch

    def apply(self, entry: HostEntry) -> HostEntry:
        """``entry`` with what its sender's hello of its current epoch says."""
        known = self._hellos.get(entry.id)
        if known is None or known[0] != self._epochs.get(entry.id):
            return entry
        hello = known[1]
        if (entry.versions, entry.features) == (hello.versions, hello.features):
            return entry
        return dataclasses.replace(entry, versions=hello.versions, features=hello.features)

    def take(
        self, sender: Addr, epoch: int, hello: Hello, records: Mapping[Addr, HostRecord]
    ) -> bool:
        """Take in a hello and update its sender's entry in ``records``; True if
        that entry changed."""
        if not self.hello(sender, epoch, hello):
            return False
        rec = records.get(sender)
        if rec is None:
            return False
        entry = self.apply(rec.entry)
        if entry is rec.entry:
            return False
        rec.entry = entry
        return True

    def accept(
        self,
        dgram: Datagram,
        inbox: Inbox,
        records: Mapping[Addr, HostRecord],
        config: CoreConfig,
    ) -> Message | Hello | None:
        """Take a decoded datagram through the inbox: the info it completes, its
        entry read with what its sender announced (:meth:`read`); a hello that
        changed a member's entry or relays paused hosts; None for nothing to
        act on."""
        if dgram.version not in config.wire_versions:
            inbox.drops["version"] += 1
            return None
        msg = inbox.accept(dgram)
        if msg is None:
            return None
        if isinstance(msg, Hello):
            changed = self.take(dgram.sender, dgram.epoch, msg, records)
            return msg if changed or msg.paused else None
        if msg.entry.id != dgram.sender:
            inbox.drops["malformed"] += 1
            return None
        entry = self.read(msg.entry, dgram.epoch, dgram.version)
        return msg if entry is msg.entry else dataclasses.replace(msg, entry=entry)

    @property
    def epochs(self) -> Mapping[Addr, int]:
        """The epoch of each sender's last info taken."""
        return self._epochs

    def relay(self, host: Addr, epoch: int) -> bool | None:
        """A relayed pause of ``host``'s incarnation ``epoch``: None if it is
        older than the incarnation this host knows (stale: drop it), True if
        newer (or the host is unknown), False if the same. A relay taken
        makes ``epoch`` the known one."""
        known = self._epochs.get(host)
        if known is not None and epoch < known:
            return None
        self._epochs[host] = epoch
        return known is None or epoch > known


def send_version(own: HostEntry, live: list[HostEntry]) -> int:
    """The wire version to send in: the highest that this host and every live member speak."""
    if len(own.versions) == 1:
        return own.versions[0]
    return common_version(own, live)
