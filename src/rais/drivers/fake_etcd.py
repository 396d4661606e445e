"""An in-memory etcd for the simulator and unit tests: the ``Arbiter`` of
``rais.drivers.etcd`` without the network.

::

    etcd = FakeEtcd(clock=lambda: world.now)   # default: the event loop's clock
    a, b = etcd.client(), etcd.client()
    won = await a.campaign("/rais/www", b"a", ttl=2)

One ``FakeEtcd`` is one cluster: every operation is applied at once, in call
order, so the store is linearizable by construction. Revisions count as in
etcd (the store starts at revision 1; each put and each delete, also a lease
lapsing with its key, adds one). A lease lapses ``ceil(ttl)`` seconds after its
grant or last renewal by ``clock``; lapsed leases are collected before every
operation.

Faults: ``etcd.down = True`` makes every client's calls raise
``ArbiterUnreachable`` (the leases keep running, as a partitioned-off
cluster's do); ``client.reachable = False`` does the same for one client.
``etcd.refuse = True`` makes calls raise ``ArbiterRefused``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from rais.drivers.base import ArbiterRefused, ArbiterUnreachable, Holder, Leadership


@dataclass(slots=True)
class _Kv:
    value: bytes
    create_revision: int
    lease: int


class FakeEtcd:
    """One cluster's store: keys, leases and the revision counter."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or (lambda: asyncio.get_running_loop().time())
        self.revision = 1
        self.keys: dict[str, _Kv] = {}
        self.leases: dict[int, float] = {}
        """Lease id -> when it lapses."""
        self.down = False
        self.refuse = False
        self._ids = itertools.count(0x1000)

    def client(self) -> FakeEtcdClient:
        return FakeEtcdClient(self)

    def collect(self) -> None:
        """Drop the lapsed leases and their keys."""
        now = self.clock()
        for lease in [lease for lease, until in self.leases.items() if until <= now]:
            self.revoke(lease)

    def grant(self, ttl: int) -> int:
        lease = next(self._ids)
        self.leases[lease] = self.clock() + ttl
        return lease

    def revoke(self, lease: int) -> None:
        self.leases.pop(lease, None)
        for key in [k for k, kv in self.keys.items() if kv.lease == lease]:
            del self.keys[key]
            self.revision += 1

    def create(self, key: str, value: bytes, lease: int) -> bool:
        """Put ``key`` if absent (create revision 0), under ``lease``."""
        if key in self.keys:
            return False
        self.revision += 1
        self.keys[key] = _Kv(value, self.revision, lease)
        return True


class FakeEtcdClient:
    """An ``Arbiter`` on a ``FakeEtcd``."""

    def __init__(self, etcd: FakeEtcd) -> None:
        self.etcd = etcd
        self.reachable = True
        self.closed = False

    def _enter(self) -> FakeEtcd:
        if self.closed:
            raise RuntimeError("client closed")
        if self.etcd.down or not self.reachable:
            raise ArbiterUnreachable("fake etcd unreachable")
        if self.etcd.refuse:
            raise ArbiterRefused("fake etcd refuses")
        self.etcd.collect()
        return self.etcd

    async def campaign(self, key: str, value: bytes, ttl: float) -> Leadership | Holder:
        etcd = self._enter()
        granted = max(1, math.ceil(ttl))
        sent = etcd.clock()
        lease = etcd.grant(granted)
        if etcd.create(key, value, lease):
            return Leadership(key, value, lease, etcd.revision, granted, sent + granted)
        etcd.revoke(lease)
        kv = etcd.keys[key]
        return Holder(kv.value, kv.create_revision)

    async def keepalive(self, leadership: Leadership) -> bool:
        etcd = self._enter()
        now = etcd.clock()
        kv = etcd.keys.get(leadership.key)
        if (
            leadership.lease not in etcd.leases
            or kv is None
            or (kv.create_revision, kv.lease) != (leadership.revision, leadership.lease)
        ):
            leadership.valid_until = min(leadership.valid_until, now)
            return False
        etcd.leases[leadership.lease] = now + leadership.ttl
        leadership.valid_until = now + leadership.ttl
        return True

    async def resign(self, leadership: Leadership) -> None:
        etcd = self._enter()
        leadership.valid_until = min(leadership.valid_until, etcd.clock())
        etcd.revoke(leadership.lease)

    async def holder(self, key: str) -> Holder | None:
        kv = self._enter().keys.get(key)
        return None if kv is None else Holder(kv.value, kv.create_revision)

    async def close(self) -> None:
        self.closed = True
