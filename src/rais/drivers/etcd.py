"""An etcd v3 client over its JSON gateway (aiohttp), for ``guard = "etcd"``.

::

    client = EtcdClient(["http://192.0.2.21:2379", "http://192.0.2.22:2379"])
    won = await client.campaign("/rais/www", b"192.0.2.11", ttl=2)
    if isinstance(won, Leadership):
        ...  # keepalive(won) every won.renew_every s; resign(won) to step down

Every call is one or a few ``POST /v3/...`` requests (JSON; keys and values
base64; 64-bit numbers decimal strings). A request goes to the endpoint that
answered last; on a connection error, a timeout (``request_timeout``) or a 5xx
it goes to the next one, and when every endpoint has failed the call raises
``ArbiterUnreachable``. A 4xx is ``ArbiterRefused`` (no failover: another
member would say the same). With ``user``/``password`` the client gets a
token from ``/v3/auth/authenticate`` on its first request and sends it in the
``Authorization`` header; a 401 gets a fresh token and one retry.

A campaign whose transaction was applied but whose answer was lost (a timeout,
then failover) finds its own lease on the key and counts as won. The client
decides nothing else: the guard keeps the leadership, and the time it may
act, with ``valid_until``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import ssl
from collections.abc import Sequence
from typing import Any

import aiohttp

from rais.drivers.base import ArbiterRefused, ArbiterUnreachable, Holder, Leadership

DEFAULT_REQUEST_TIMEOUT = 0.5


def ssl_context(
    ca_file: str | None, cert_file: str | None = None, key_file: str | None = None
) -> ssl.SSLContext:
    """A client TLS context: the server checked against ``ca_file`` (the
    system's CAs without one), and a client certificate if ``cert_file``."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object) -> bytes:
    return base64.b64decode(str(text)) if text else b""


class _Unavailable(Exception):
    """This endpoint failed: try the next one."""


class _Unauthorized(Exception):
    """401: the token is missing or expired."""


class EtcdClient:
    """An ``Arbiter`` on a real etcd cluster (``endpoints``: its client URLs)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        ssl: ssl.SSLContext | None = None,
        user: str | None = None,
        password: str | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        if (user is None) != (password is None):
            raise ValueError("user and password go together")
        self.endpoints = tuple(e.rstrip("/") for e in endpoints)
        self._ssl = ssl
        self._user = user
        self._password = password
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._current = 0
        self._token: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self.counters: dict[str, int] = {}

    @property
    def current(self) -> str:
        """The endpoint the next request goes to first."""
        return self.endpoints[self._current]

    # -- the Arbiter -----------------------------------------------------------

    async def campaign(self, key: str, value: bytes, ttl: float) -> Leadership | Holder:
        sent = self._now()
        grant = await self._call("/v3/lease/grant", {"TTL": str(max(1, math.ceil(ttl)))})
        lease, granted = int(grant["ID"]), int(grant.get("TTL", 0))
        k = _b64(key.encode())
        try:
            txn = await self._call(
                "/v3/kv/txn",
                {
                    "compare": [{"key": k, "target": "CREATE", "createRevision": "0"}],
                    "success": [
                        {"requestPut": {"key": k, "value": _b64(value), "lease": str(lease)}}
                    ],
                    "failure": [{"requestRange": {"key": k}}],
                },
            )
        except BaseException:
            await self._revoke_quietly(lease)
            raise
        if txn.get("succeeded"):
            revision = int(txn["header"]["revision"])  # the put's: the key's create revision
            return Leadership(key, value, lease, revision, granted, sent + granted)
        kvs = txn.get("responses", [{}])[0].get("response_range", {}).get("kvs", [])
        if not kvs:
            await self._revoke_quietly(lease)
            raise ArbiterRefused(f"txn on {key} failed but the key is absent")
        kv = kvs[0]
        if int(kv.get("lease", 0)) == lease:  # ours: an earlier try was applied
            return Leadership(
                key, value, lease, int(kv["create_revision"]), granted, sent + granted
            )
        await self._revoke_quietly(lease)
        return Holder(_unb64(kv.get("value")), int(kv["create_revision"]))

    async def keepalive(self, leadership: Leadership) -> bool:
        sent = self._now()
        answer = await self._call("/v3/lease/keepalive", {"ID": str(leadership.lease)})
        ttl = int(answer.get("TTL", 0))
        kv = await self._range(leadership.key) if ttl > 0 else None
        if (
            kv is None
            or int(kv["create_revision"]) != leadership.revision
            or int(kv.get("lease", 0)) != leadership.lease
        ):
            leadership.valid_until = min(leadership.valid_until, sent)
            return False
        leadership.valid_until = sent + ttl
        return True

    async def resign(self, leadership: Leadership) -> None:
        leadership.valid_until = min(leadership.valid_until, self._now())
        await self._revoke(leadership.lease)

    async def holder(self, key: str) -> Holder | None:
        kv = await self._range(key)
        return None if kv is None else Holder(_unb64(kv.get("value")), int(kv["create_revision"]))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- requests --------------------------------------------------------------

    async def _range(self, key: str) -> dict[str, Any] | None:
        answer = await self._call("/v3/kv/range", {"key": _b64(key.encode())})
        kvs: list[dict[str, Any]] = answer.get("kvs", [])
        return kvs[0] if kvs else None

    async def _revoke(self, lease: int) -> None:
        try:
            await self._call("/v3/lease/revoke", {"ID": str(lease)})
        except ArbiterRefused as exc:
            if "lease not found" not in str(exc):
                raise

    async def _revoke_quietly(self, lease: int) -> None:
        """Revoke a lease nobody needs; if that fails it lapses by itself."""
        try:
            await asyncio.shield(self._revoke(lease))
        except (ArbiterRefused, ArbiterUnreachable, asyncio.CancelledError):
            self._count("revoke_errors")

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first endpoint that answers."""
        failures = []
        n = len(self.endpoints)
        for i in range(n):
            index = (self._current + i) % n
            endpoint = self.endpoints[index]
            try:
                answer = await self._post_authenticated(endpoint, path, body)
            except _Unavailable as exc:
                self._count("endpoint_errors")
                failures.append(f"{endpoint}: {exc}")
                continue
            if index != self._current:
                self._count("failovers")
                self._current = index
            return answer
        raise ArbiterUnreachable("no etcd endpoint answered: " + "; ".join(failures))

    async def _post_authenticated(
        self, endpoint: str, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        if self._user is not None and self._token is None:
            await self._authenticate(endpoint)
        try:
            return await self._post(endpoint, path, body)
        except _Unauthorized as exc:
            if self._user is None:
                raise ArbiterRefused(f"{endpoint}{path}: {exc} (no user configured)") from None
        await self._authenticate(endpoint)  # the token expired: one more try
        try:
            return await self._post(endpoint, path, body)
        except _Unauthorized as exc:
            raise ArbiterRefused(f"{endpoint}{path}: {exc}") from None

    async def _authenticate(self, endpoint: str) -> None:
        self._token = None
        try:
            answer = await self._post(
                endpoint, "/v3/auth/authenticate", {"name": self._user, "password": self._password}
            )
        except _Unauthorized as exc:
            raise ArbiterRefused(f"{endpoint}: authentication: {exc}") from None
        self._token = str(answer["token"])

    async def _post(self, endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._count("requests")
        session = self._session_now()
        headers = {"Authorization": self._token} if self._token is not None else {}
        try:
            async with session.post(endpoint + path, json=body, headers=headers) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _Unavailable(str(exc) or type(exc).__name__) from None
        try:
            answer = json.loads(text.strip().splitlines()[0]) if text.strip() else {}
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            if status >= 500:
                raise _Unavailable(f"HTTP {status}")
            raise ArbiterRefused(f"{endpoint}{path}: HTTP {status}: not JSON: {text[:200]!r}")
        if "result" in answer and isinstance(answer["result"], dict):
            answer = answer["result"]  # a stream's message (keepalive)
        error = answer.get("error")
        if isinstance(error, dict):  # a stream's error: HTTP 200 with the code inside
            status = int(error.get("http_code", 500))
            error = error.get("message", "")
        if status == 401:
            raise _Unauthorized(str(error or "HTTP 401"))
        if status >= 500:
            raise _Unavailable(f"HTTP {status}: {error}")
        if status != 200 or error:
            raise ArbiterRefused(f"{endpoint}{path}: HTTP {status}: {error}")
        return answer

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
