"""The agent's configuration: parsed once from TOML into frozen dataclasses.

The names here mirror the config file (a contract, see issue 3 and
docs/configuration.md). ``load(path)`` parses and validates a file and raises
``ConfigError`` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class ConfigError(Exception):
    """A bad config: ``str()`` is 'FILE: KEY: what is wrong'."""

    def __init__(self, file: str, key: str, message: str) -> None:
        super().__init__(f"{file}: {key}: {message}")
        self.file = file
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class HostConfig:
    control: tuple[IP, ...]
    """Control addresses, one per control network; the first is the host id."""
    api: tuple[str, int] = ("127.0.0.1", 7400)
    api_token_file: str | None = None
    state_dir: str = "/var/lib/rais"
    """Where the boot epoch counter is kept (created if missing)."""
    log_format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    key_file: str
    previous_key_file: str | None = None
    """A second key accepted during a key rotation (never used to sign)."""
    keys: tuple[bytes, ...] = ()
    """The key file contents (first signs), read at load time."""


@dataclass(frozen=True, slots=True)
class GroupConfig:
    name: str
    address: IP
    """Multicast group address (or, with peers, only the port matters)."""
    port: int
    interface: str
    """The service interface the service addresses go on."""
    preferred: Interface | None = None
    """This host's preferred service address with prefix; None for a hot spare."""
    heartbeat: float = 0.1
    timeout: float = 0.3
    orphan_timeout: float = 86400.0
    peers: tuple[IP, ...] = ()
    """Unicast control addresses of the other hosts, for networks without multicast."""
    ttl: int = 1
    observer: bool = False
    acquire_script: str | None = None
    release_script: str | None = None
    script_timeout: float = 10.0
    garp_count: int = 3
    """Gratuitous ARP / unsolicited NA bursts sent after each acquire."""
    garp_interval: float = 0.2
    """Spacing of those bursts."""
    announce_interval: float = 10.0
    """Re-announce held addresses this often (patent step 380)."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    file: str
    host: HostConfig
    auth: AuthConfig
    groups: tuple[GroupConfig, ...] = field(default=())
