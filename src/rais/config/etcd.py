"""``[etcd]`` of the config file: the etcd v3 cluster that ``guard = "etcd"``
uses as its arbiter (issue 13; docs/configuration.md and docs/operations.md).

Every key is declared on its field (``rais.config.keys``); those without a
reader are read by ``parse_etcd``, which checks them against each other. The
password is read from ``password_file`` here, at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rais.base.section import Invalid, Section
from rais.config.keys import key, opt_path, read_plain, toml_keys

TTL_MIN = 2
"""etcd grants no lease shorter than 1.5 election timeouts (2 s at its defaults)."""
TTL_MAX = 120
"""A crashed leader's key outlives it by up to the ttl: longer blocks failover."""


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    endpoints: tuple[str, ...] = field(metadata=key())
    """Client URLs of the cluster's members ("https://192.0.2.21:2379")."""
    prefix: str = field(default="/rais/", metadata=key())
    """Every key rais writes starts with it."""
    ttl: float = field(default=2.0, metadata=key())
    """The leader key's lease, whole seconds."""
    ca_file: str | None = field(default=None, metadata=key(read=opt_path))
    cert_file: str | None = field(default=None, metadata=key(read=opt_path))
    key_file: str | None = field(default=None, metadata=key(read=opt_path))
    user: str | None = field(default=None, metadata=key())
    password_file: str | None = field(default=None, metadata=key())
    password: str | None = field(default=None, metadata=key(toml=None))
    """The contents of ``password_file`` (surrounding whitespace stripped)."""


_KEYS = toml_keys(EtcdConfig)


def _endpoint(s: Section, i: int, url: str) -> str:
    where = f"{s.key('endpoints')}[{i}]"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Invalid(where, f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(where, f'must be "http://HOST:PORT" or "https://HOST:PORT", got {url!r}')
    if port is None:
        raise Invalid(where, f"give the port (etcd's is usually 2379): {url!r}")
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise Invalid(where, f"only scheme, host and port, got {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def parse_etcd(data: dict[str, Any], base: str) -> EtcdConfig:
    """The ``[etcd]`` table (only called when the file has one)."""
    s = Section(data, "etcd", _KEYS, base)
    if not s.has("endpoints"):
        raise s.fail("endpoints", "missing: list the client URLs of the etcd members")
    endpoints: list[str] = []
    for i, url in enumerate(s.strings("endpoints")):
        endpoint = _endpoint(s, i, url)
        if endpoint in endpoints:
            raise Invalid(f"{s.key('endpoints')}[{i}]", f"{endpoint} is listed twice")
        endpoints.append(endpoint)
    if not endpoints:
        raise s.fail("endpoints", "must list at least one URL")

    prefix = s.opt_string("prefix", "/rais/") or "/rais/"
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise s.fail("prefix", f'must start and end with "/", got {prefix!r}')

    ttl = s.duration("ttl", 2.0)
    if ttl.seconds != int(ttl.seconds) or not TTL_MIN <= ttl.seconds <= TTL_MAX:
        raise s.fail("ttl", f"must be whole seconds, {TTL_MIN}s to {TTL_MAX}s, got {ttl.shown}")

    plain = read_plain(s, EtcdConfig)
    for name in ("ca_file", "cert_file", "key_file"):
        if plain[name] is not None:
            s.key_file(name)  # unreadable or empty: refuse now, not at startup
            if not any(e.startswith("https:") for e in endpoints):
                raise s.fail(name, "is set but no endpoint is https://")
    if (plain["cert_file"] is None) != (plain["key_file"] is None):
        raise s.fail("key_file", "cert_file and key_file go together")

    user = s.opt_string("user")
    if (user is None) == s.has("password_file"):
        raise s.fail("password_file", "user and password_file go together")
    password = None
    if user is not None:
        try:
            password = s.key_file("password_file").decode()
        except UnicodeDecodeError:
            raise s.fail("password_file", "the password is not UTF-8") from None
    return EtcdConfig(
        endpoints=tuple(endpoints),
        prefix=prefix,
        ttl=ttl.seconds,
        user=user,
        password_file=s.opt_path("password_file"),
        password=password,
        **plain,
    )
