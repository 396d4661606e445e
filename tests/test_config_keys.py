"""The config keys are declared once (on the config dataclasses' fields,
rais.config.keys): docs/configuration.md documents exactly those keys, each
in its own table, and the CoreConfig a group runs with comes from the same
declaration."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from rais.config import AuthConfig, GroupConfig, HostConfig
from rais.config.etcd import EtcdConfig
from rais.config.keys import core_settings, toml_keys
from rais.core.config import CoreConfig

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def documented(heading: str) -> list[str]:
    """The keys in the first column of the table under ``## heading``."""
    text = DOCS.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    keys = []
    for line in text[start : end if end > 0 else None].splitlines():
        m = re.match(r"\| `([a-z_]+)` \|", line)
        if m:
            keys.append(m.group(1))
    return keys


@pytest.mark.parametrize(
    ("heading", "cls"),
    [
        ("`[host]`", HostConfig),
        ("`[auth]`", AuthConfig),
        ("`[[group]]`", GroupConfig),
        ("`[etcd]`", EtcdConfig),
    ],
)
def test_the_documented_keys_are_the_declared_keys(heading: str, cls: type) -> None:
    docs = documented(heading)
    assert len(docs) == len(set(docs)), f"a key documented twice under {heading}"
    declared = toml_keys(cls)
    assert sorted(docs) == sorted(declared), (
        f"{heading}: documented, not declared: {sorted(set(docs) - set(declared))}; "
        f"declared, not documented: {sorted(set(declared) - set(docs))}"
    )


def test_the_core_config_comes_from_the_declaration() -> None:
    g = GroupConfig(
        name="www",
        address=ipaddress.ip_address("239.192.0.1"),
        port=7401,
        interface="eth0",
        preferred=ipaddress.ip_interface("192.0.2.101/24"),
        heartbeat=0.2,
        timeout=0.7,
        orphan_timeout=99.0,
        announce_interval=3.0,
        tests=("web",),
        load_scale=100,
        placement="random",
        failback="manual",
        failback_delay=4.0,
    )
    control, keys = (ipaddress.ip_address("192.0.2.11").packed,), (b"k",)
    expected = CoreConfig(
        group="www",
        control=control,
        keys=keys,
        heartbeat=0.2,
        timeout=0.7,
        preferred=ipaddress.ip_address("192.0.2.101").packed,
        prefixlen=24,
        observer=False,
        orphan_timeout=99.0,
        announce_interval=3.0,
        placement="random",
        failback="manual",
        failback_delay=4.0,
        load_scale=100,
        start_ok=False,
    )
    assert CoreConfig(control=control, keys=keys, **core_settings(g)) == expected
    spare = GroupConfig("db", ipaddress.ip_address("239.192.0.2"), 7402, "eth0", observer=True)
    settings = core_settings(spare)
    assert (settings["preferred"], settings["prefixlen"], settings["start_ok"]) == (None, 0, True)
    assert settings["observer"] is True and settings["group"] == "db"
