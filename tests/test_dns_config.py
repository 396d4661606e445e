"""[dns] and [group.dns] in the config file."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from rais.config import ConfigError, load

BASE = """
[host]
control = ["192.0.2.11"]
[auth]
key_file = "group.key"
{top}
[[group]]
name = "www"
address = "239.192.0.1:7401"
interface = "eth0"
preferred = "198.51.100.1/24"
{group}
"""


def write(tmp_path: Path, top: str = "", group: str = "") -> str:
    (tmp_path / "group.key").write_text("secret\n")
    (tmp_path / "tsig.key").write_text("c2VjcmV0LXRzaWcta2V5LTMyLWJ5dGVzLWxvbmctMDA=\n")
    path = tmp_path / "rais.toml"
    path.write_text(BASE.format(top=top, group=group))
    return str(path)


def test_full_dns_config(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            top='[dns]\nlisten = ["127.0.0.1:5353", "[::1]:5353"]\nns = ["ns1.rais.test"]\n',
            group=(
                '[group.dns]\nname = "www.rais.test"\nttl = "10s"\nhigh = 800\nlow = 600\n'
                'min_addresses = 2\nwhen_short = "all-live"\n'
                '[group.dns.update]\nserver = "192.0.2.53:53"\nkey_name = "rais-key"\n'
                'key_file = "tsig.key"\n'
                '[group.dns.zonefile]\npath = "zones/www.zone"\nreload = "rndc reload rais.test"\n'
                'publisher = "self"\n'
            ),
        )
    )
    assert cfg.dns.listen == (
        (ipaddress.ip_address("127.0.0.1"), 5353),
        (ipaddress.ip_address("::1"), 5353),
    )
    assert cfg.dns.ns == ("ns1.rais.test.",)
    d = cfg.groups[0].dns
    assert d is not None
    assert (d.name, d.zone, d.ttl, d.high, d.low, d.min_addresses, d.when_short) == (
        "www.rais.test.",
        "rais.test.",
        10,
        800,
        600,
        2,
        "all-live",
    )
    assert d.update is not None and d.update.server[1] == 53 and d.update.zone == "rais.test."
    assert d.update.publisher == "leader" and d.update.algorithm == "hmac-sha256"
    assert d.zonefile is not None and d.zonefile.path == str(tmp_path / "zones/www.zone")
    assert d.zonefile.publisher == "self"


def test_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, top='[dns]\nlisten = "127.0.0.1:5353"\n'))
    assert cfg.dns.listen[0][1] == 5353 and cfg.groups[0].dns is None
    cfg = load(write(tmp_path, group='[group.dns]\nname = "www.example.test."\n'))
    d = cfg.groups[0].dns
    assert d is not None and d.zone == "example.test." and d.high is None and d.ttl == 5


@pytest.mark.parametrize(
    ("top", "group", "key", "fragment"),
    [
        ('[dns]\nlisten = ["127.0.0.1"]\n', "", "dns.listen[0]", "address:port"),
        ('[dns]\nlisten = "x:53"\n', "", "dns.listen", "not an IP address"),
        ("[dns]\nport = 53\n", "", "dns.port", "unknown key"),
        ("", "[group.dns]\nttl = 5\n", "group.www.dns.name", "missing"),
        ("", '[group.dns]\nname = "www.rais.test"\nhigh = 5\n', "group.www.dns.low", "both"),
        (
            "",
            '[group.dns]\nname = "www.rais.test"\nhigh = 5\nlow = 6\n',
            "group.www.dns.low",
            "above high",
        ),
        (
            "",
            '[group.dns]\nname = "www.rais.test"\nzone = "other.test"\n',
            "group.www.dns.zone",
            "not inside",
        ),
        (
            "",
            '[group.dns]\nname = "www.rais.test"\nwhen_short = "open"\n',
            "group.www.dns.when_short",
            "all-live",
        ),
        (
            "",
            '[group.dns]\nname = "www.rais.test"\nttl = "1.5s"\n',
            "group.www.dns.ttl",
            "whole seconds",
        ),
        (
            "",
            '[group.dns]\nname = "www.rais.test"\n[group.dns.update]\nserver = "192.0.2.53:53"\n'
            'key_name = "k"\nkey_file = "group.key"\n',
            "group.www.dns.update.key_file",
            "base64",
        ),
        (
            "",
            '[group.dns]\nname = "www.rais.test"\n[group.dns.update]\nserver = "192.0.2.53:53"\n'
            'key_name = "k"\nkey_file = "tsig.key"\nalgorithm = "md5"\n',
            "group.www.dns.update.algorithm",
            "hmac-sha256",
        ),
        (
            "",
            '[group.dns]\nname = "www.rais.test"\n[group.dns.zonefile]\npath = "z"\n'
            'publisher = "all"\n',
            "group.www.dns.zonefile.publisher",
            '"leader" or "self"',
        ),
    ],
)
def test_bad_dns_config(tmp_path: Path, top: str, group: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, top=top, group=group))
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)
