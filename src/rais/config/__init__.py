"""The agent's configuration: parsed once from TOML into frozen dataclasses.

The names here mirror the config file (a contract, see issue 3 and
docs/configuration.md). ``load(path)`` parses and validates a file and raises
``ConfigError`` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from rais.base.ip import IP as IP  # re-exported: drivers and tests used to take it from here
from rais.base.ip import Interface
from rais.base.section import Invalid, Section, family, parse_interface, show_endpoint
from rais.config.etcd import EtcdConfig, parse_etcd
from rais.config.guard import DEFAULT_LEASE, read_guard
from rais.config.keys import (
    boolean,
    choice,
    duration,
    integer,
    key,
    opt_path,
    read_plain,
    string,
    strings,
    toml_keys,
)
from rais.dns.config import DnsServerConfig, GroupDnsConfig, parse_group, parse_server
from rais.probes.parse import parse_loads, parse_tests
from rais.probes.spec import LoadSpec, TestSpec
from rais.snmp.config import SnmpConfig
from rais.snmp.parse import parse_snmp


class ConfigError(Exception):
    """A bad config: ``str()`` is 'FILE: KEY: what is wrong'."""

    def __init__(self, file: str, key: str, message: str) -> None:
        super().__init__(f"{file}: {key}: {message}")
        self.file = file
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class HostConfig:
    """``[host]`` (its keys are read by hand: ``_host``)."""

    control: tuple[IP, ...] = field(metadata=key())
    """Control addresses, one per control network; the first is the host id."""
    api: tuple[str, int] = field(default=("127.0.0.1", 7400), metadata=key())
    api_token_file: str | None = field(default=None, metadata=key())
    state_dir: str = field(default="/var/lib/rais", metadata=key())
    """Where the boot epoch counter is kept (created if missing)."""
    log_format: Literal["text", "json"] = field(default="text", metadata=key())
    scheduler_slice: float = field(default=0.0001, metadata=key())
    """The EEVDF slice asked for (s; 0: the kernel's): prompt wake-ups under
    CPU load (rais.runtime.sched)."""
    nice: int = field(default=-10, metadata=key())
    """The agent's nice value (rais.runtime.sched)."""
    realtime: bool = field(default=False, metadata=key())
    """SCHED_RR and memory locked (rais.runtime.sched); needs CAP_SYS_NICE."""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """``[auth]`` (read by hand: ``_auth``)."""

    key_file: str = field(metadata=key())
    previous_key_file: str | None = field(default=None, metadata=key())
    """A second key accepted during a key rotation (never used to sign)."""
    keys: tuple[bytes, ...] = field(default=(), metadata=key(toml=None))
    """The key file contents (first signs), read at load time."""


def _packed(preferred: Interface | None) -> bytes | None:
    return preferred.ip.packed if preferred is not None else None


def _prefixlen(preferred: Interface | None) -> int:
    return preferred.network.prefixlen if preferred is not None else 0


def _extras(extras: tuple[Interface, ...]) -> tuple[tuple[bytes, int], ...]:
    return tuple((e.ip.packed, e.network.prefixlen) for e in extras)


def _start_ok(tests: tuple[str, ...]) -> bool:
    return not tests


def _ids(ips: tuple[IP, ...]) -> tuple[bytes, ...]:
    return tuple(ip.packed for ip in ips)


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """``[[group]]``: every key is declared here, on its field (see
    ``rais.config.keys``); the keys without a reader are read by ``_group``
    (they are checked against each other and against the other groups)."""

    name: str = field(metadata=key(core="group"))
    address: IP = field(metadata=key())
    """Multicast group address (or, with peers, only the port matters)."""
    port: int = field(metadata=key(toml=None))
    """The port of ``address``."""
    interface: str = field(metadata=key(read=string))
    """The service interface the service addresses go on."""
    preferred: Interface | None = field(
        default=None, metadata=key(core=(("preferred", _packed), ("prefixlen", _prefixlen)))
    )
    """This host's preferred service address with prefix; None for a hot spare.
    With a set (``preferred`` a list), its first address: the set's key."""
    extras: tuple[Interface, ...] = field(
        default=(), metadata=key(toml=None, core=(("extras", _extras),))
    )
    """The other addresses of the preferred set (``preferred = [...]``), in order."""
    heartbeat: float = field(default=0.1, metadata=key(core="heartbeat"))
    timeout: float = field(default=0.3, metadata=key(core="timeout"))
    orphan_timeout: float = field(default=86400.0, metadata=key(core="orphan_timeout"))
    peers: tuple[IP, ...] = field(default=(), metadata=key())
    """Unicast control addresses of the other hosts, for networks without multicast."""
    ttl: int = field(default=1, metadata=key(read=integer(1, 255)))
    observer: bool = field(default=False, metadata=key(core="observer"))
    acquire_script: str | None = field(default=None, metadata=key(read=opt_path))
    release_script: str | None = field(default=None, metadata=key(read=opt_path))
    script_timeout: float = field(default=10.0, metadata=key(read=duration()))
    garp_count: int = field(default=3, metadata=key(read=integer(0)))
    """Gratuitous ARP / unsolicited NA bursts sent after each acquire."""
    garp_interval: float = field(default=0.2, metadata=key(read=duration()))
    """Spacing of those bursts."""
    announce_interval: float = field(
        default=10.0, metadata=key(read=duration(), core="announce_interval")
    )
    """Re-announce held addresses this often (patent step 380)."""
    tests: tuple[str, ...] = field(
        default=(), metadata=key(read=strings, core=(("start_ok", _start_ok),))
    )
    """Names of the ``[test.NAME]`` objects this host must pass to serve the group."""
    loads: tuple[str, ...] = field(default=(), metadata=key(read=strings))
    """Names of the ``[load.NAME]`` objects whose load goes into the info messages."""
    load_combine: Literal["max", "sum"] = field(
        default="max", metadata=key(read=choice("max", "sum"))
    )
    """Several loads: the one with the highest utilization, or the sums."""
    load_scale: int = field(
        default=1000, metadata=key(read=integer(1, 1_000_000), core="load_scale")
    )
    """Utilization = load x load_scale / capacity (the patent: 100 to 1000), by
    the one rule of rais.core.utilization; placement, DNS and status all use it."""
    placement: Literal["least-loaded", "random"] = field(
        default="least-loaded",
        metadata=key(read=choice("least-loaded", "random"), core="placement"),
    )
    failback: Literal["immediate", "manual"] = field(
        default="immediate", metadata=key(read=choice("immediate", "manual"), core="failback")
    )
    failback_delay: float = field(
        default=0.0, metadata=key(read=duration(zero=True), core="failback_delay")
    )
    """With failback "immediate": how long a returning preferred host must be
    healthy before it gets its address back."""
    track_link: bool = field(default=True, metadata=key(read=boolean))
    """Watch the carrier of ``interface`` (netlink link events): while it is
    down the host is not fit for the group (issue 13)."""
    link_hold: float = field(default=1.0, metadata=key(read=duration(zero=True), core="link_hold"))
    """How long the carrier must stay up again before the host is fit."""
    guard: Literal["none", "majority", "etcd"] = field(default="none", metadata=key(core="guard"))
    """What keeps an address off two hosts across a partition or a stall
    (rais.core.guard): nothing more than the patent ("none"), a majority of
    ``voters`` or the group's leader key in ``[etcd]``."""
    voters: tuple[IP, ...] = field(default=(), metadata=key(core=(("voters", _ids),)))
    """Guard "majority": the host ids (first control addresses) whose votes count."""
    lease: float = field(default=DEFAULT_LEASE, metadata=key(core="lease"))
    """With a guard: how long a host keeps an address without a quorate leader's word."""
    on_arbiter_loss: Literal["hold", "release"] = field(
        default="hold", metadata=key(core="on_arbiter_loss")
    )
    """Guard "etcd", etcd unreachable: keep every address where it is, or release."""
    dns: GroupDnsConfig | None = field(default=None, metadata=key())
    """``[group.dns]``: the DNS name that advertises the group's addresses."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    file: str
    host: HostConfig
    auth: AuthConfig
    groups: tuple[GroupConfig, ...] = field(default=())
    tests: Mapping[str, TestSpec] = field(default_factory=dict)
    loads: Mapping[str, LoadSpec] = field(default_factory=dict)
    dns: DnsServerConfig = field(default_factory=DnsServerConfig)
    snmp: SnmpConfig = field(default_factory=SnmpConfig)
    etcd: EtcdConfig | None = None
    """``[etcd]``, the arbiter of ``guard = "etcd"`` (None: no such table)."""


_TOP = ("host", "auth", "group", "test", "load", "dns", "snmp", "etcd")
_HOST = toml_keys(HostConfig)
_AUTH = toml_keys(AuthConfig)
_GROUP = toml_keys(GroupConfig)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Group names: they appear in dotted keys, file names and logs."""


def load(path: str) -> AgentConfig:
    """Parse and validate the config file at ``path``; the key files are read too.

    Raises ``ConfigError`` naming the file, the key and what is wrong. Keys are
    dotted: ``host.control``, ``host.control[1]``, ``auth.key_file``,
    ``group.NAME.timeout`` (``group[INDEX].KEY`` for a group without a valid
    name), ``(file)`` when the file cannot be read, ``(syntax)`` for bad TOML.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "(syntax)", f"not valid TOML: {exc}") from None
    try:
        return _agent(path, data)
    except Invalid as exc:
        raise ConfigError(path, exc.key, exc.message) from None


def _preferred(g: Section) -> tuple[Interface | None, tuple[Interface, ...]]:
    """``preferred``: one "addr/prefix" string, or a list of them (an address set
    that moves as one unit; its first address is the key). A list must not be
    empty nor name an address twice."""
    if not g.has("preferred") or not isinstance(g.data["preferred"], list):
        return g.interface("preferred"), ()
    texts = g.strings("preferred")  # refuses anything but a list of strings
    if not texts:
        raise g.fail("preferred", "an empty list: name at least one address, or leave it out")
    out: list[Interface] = []
    for i, text in enumerate(texts):
        where = f"{g.key('preferred')}[{i}]"
        try:
            iface = parse_interface(text)
        except ValueError as exc:
            raise Invalid(where, str(exc)) from None
        for earlier in out:
            if earlier.ip == iface.ip:
                raise Invalid(where, f"{iface.ip} is listed twice")
        out.append(iface)
    return out[0], tuple(out[1:])


def _agent(path: str, data: dict[str, Any]) -> AgentConfig:
    base = os.path.dirname(os.path.abspath(path))
    top = Section(data, "", _TOP, base)
    host = _host(Section(top.table("host"), "host", _HOST, base))
    auth = _auth(Section(top.table("auth"), "auth", _AUTH, base))
    tests = parse_tests(top.opt_table("test"), base)
    loads = parse_loads(top.opt_table("load"), base)
    dns_server = parse_server(top.opt_table("dns"), base)
    snmp = parse_snmp(top.opt_table("snmp"), base)
    etcd = parse_etcd(top.table("etcd"), base) if top.has("etcd") else None
    groups: list[GroupConfig] = []
    for i, raw in enumerate(top.tables("group")):
        name = raw.get("name")
        prefix = (
            f"group.{name}" if isinstance(name, str) and _NAME.fullmatch(name) else f"group[{i}]"
        )
        section = Section(raw, prefix, _GROUP, base)
        group = _group(section, host, groups, etcd)
        _objects_exist(section, "tests", group.tests, tests)
        _objects_exist(section, "loads", group.loads, loads)
        groups.append(group)
    names = [g.dns.name for g in groups if g.dns is not None]
    for g in groups:
        if g.dns is not None and names.count(g.dns.name) > 1:
            raise Invalid(f"group.{g.name}.dns.name", f"{g.dns.name} is used by another group")
    return AgentConfig(
        file=path,
        host=host,
        auth=auth,
        groups=tuple(groups),
        tests=tests,
        loads=loads,
        dns=dns_server,
        snmp=snmp,
        etcd=etcd,
    )


def _objects_exist(g: Section, key: str, names: tuple[str, ...], known: Mapping[str, Any]) -> None:
    kind = key[:-1]
    for i, name in enumerate(names):
        if name not in known:
            have = ", ".join(known) or "none"
            raise Invalid(f"{g.key(key)}[{i}]", f"no [{kind}.{name}] is defined (defined: {have})")
        if names.index(name) != i:
            raise Invalid(f"{g.key(key)}[{i}]", f"{name!r} is listed twice")


def _host(s: Section) -> HostConfig:
    if not s.has("control"):
        raise s.fail("control", "missing: list this host's control addresses")
    control = s.addresses("control")
    if not control:
        raise s.fail("control", "must list at least one address (the first is the host id)")
    api: tuple[str, int] = _default("api", HostConfig)
    if s.has("api"):
        ip, port = s.endpoint("api")
        if ip.is_multicast:
            raise s.fail("api", f"{ip} is a multicast address")
        api = (str(ip), port)
    token_file = s.opt_path("api_token_file")
    if token_file is not None:
        s.key_file("api_token_file")  # unreadable or empty: refuse now, not at startup
    elif not ipaddress.ip_address(api[0]).is_loopback:
        raise s.fail(
            "api", f"{api[0]} is not a loopback address: set api_token_file to protect the API"
        )
    log_format = s.choice("log_format", ("text", "json"))
    slice_s = s.duration("scheduler_slice", _default("scheduler_slice", HostConfig), zero=True)
    if slice_s.seconds and not 0.0001 - 1e-12 <= slice_s.seconds <= 0.1 + 1e-12:
        raise s.fail("scheduler_slice", f"must be 0 or 100us..100ms, got {slice_s.shown}")
    return HostConfig(
        scheduler_slice=slice_s.seconds,
        realtime=s.boolean("realtime", False),
        nice=s.integer("nice", _default("nice", HostConfig), -20, 19),
        control=control,
        api=api,
        api_token_file=token_file,
        state_dir=s.opt_path("state_dir") or _default("state_dir", HostConfig),
        log_format="json" if log_format == "json" else "text",
    )


def _auth(s: Section) -> AuthConfig:
    keys = [s.key_file("key_file")]
    previous = s.opt_path("previous_key_file")
    if previous is not None:
        keys.append(s.key_file("previous_key_file"))
    return AuthConfig(key_file=s.path("key_file"), previous_key_file=previous, keys=tuple(keys))


def _default(name: str, cls: type[Any] = GroupConfig) -> Any:
    """The dataclass default of field ``name`` (one source for defaults)."""
    return next(f.default for f in fields(cls) if f.name == name)


def _group(
    g: Section, host: HostConfig, others: list[GroupConfig], etcd: EtcdConfig | None
) -> GroupConfig:
    name = g.string("name")
    if not _NAME.fullmatch(name):
        raise g.fail("name", f"must be 1-64 letters, digits, '_' or '-' (not first), got {name!r}")
    for other in others:
        if other.name == name:
            raise g.fail("name", f"group name {name!r} is used twice")

    ip, port = g.endpoint("address")
    me = host.control[0]
    if ip.version != me.version:
        raise g.fail(
            "address", f"{family(ip)} but the host id {me} (host.control[0]) is {family(me)}"
        )
    peers = g.addresses("peers")
    for i, peer in enumerate(peers):
        if peer.version != me.version:
            raise Invalid(
                f"{g.key('peers')}[{i}]",
                f"{family(peer)} but the host id {me} (host.control[0]) is {family(me)}",
            )
        if peer in host.control:
            raise Invalid(f"{g.key('peers')}[{i}]", f"{peer} is this host's own control address")
    if not peers and not ip.is_multicast:
        raise g.fail("address", f"{ip} is not multicast: use a multicast group, or list peers")
    endpoint = show_endpoint(ip, port)
    for other in others:
        if (other.address, other.port) == (ip, port):
            raise g.fail("address", f"{endpoint} is already used by group {other.name}")
        if peers and other.peers and other.port == port and other.address.version == ip.version:
            raise g.fail(
                "address", f"port {port} is already used by group {other.name}, with peers"
            )

    preferred, extras = _preferred(g)
    observer = g.boolean("observer", _default("observer"))
    if observer and preferred is not None:
        raise g.fail("observer", "an observer serves no address: remove preferred or observer")
    taken = {
        a.ip: o.name for o in others if o.preferred is not None for a in (o.preferred, *o.extras)
    }
    for i, mine in enumerate(() if preferred is None else (preferred, *extras)):
        if mine.ip in taken:
            where = g.key("preferred") + (f"[{i}]" if extras else "")
            raise Invalid(where, f"{mine.ip} is already preferred by group {taken[mine.ip]}")

    heartbeat = g.duration("heartbeat", _default("heartbeat"))
    timeout = g.duration("timeout", _default("timeout"))
    if timeout.seconds <= heartbeat.seconds:
        raise g.fail("timeout", f"must be above heartbeat ({heartbeat.shown}), got {timeout.shown}")
    orphan = g.duration("orphan_timeout", _default("orphan_timeout"))
    if orphan.seconds <= timeout.seconds:
        raise g.fail(
            "orphan_timeout", f"must be above timeout ({timeout.shown}), got {orphan.shown}"
        )
    return GroupConfig(
        name=name,
        address=ip,
        port=port,
        preferred=preferred,
        extras=extras,
        heartbeat=heartbeat.seconds,
        timeout=timeout.seconds,
        orphan_timeout=orphan.seconds,
        peers=peers,
        observer=observer,
        **read_guard(g, me=me, peers=peers, timeout=timeout.seconds, etcd=etcd),
        **read_plain(g, GroupConfig),
        dns=parse_group(g.table("dns"), g.key("dns"), g.base) if g.has("dns") else None,
    )
