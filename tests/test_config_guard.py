"""The guard keys of a group (src/rais/config/guard.py, docs/configuration.md):
``guard``, ``voters``, ``lease``, ``on_arbiter_loss``, their defaults, the
CoreConfig they make and the errors, each naming its key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from test_config import check, doc, group, load_error, write

from rais.config import load
from rais.config.keys import core_settings
from rais.core.config import CoreConfig

ETCD = '[etcd]\nendpoints = ["http://192.0.2.21:2379"]\n'
VOTERS = '["192.0.2.11", "192.0.2.12", "192.0.2.13"]'


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def core(tmp_path: Path, text: str) -> CoreConfig:
    (g,) = load(write(tmp_path, text)).groups
    return CoreConfig(control=(ip("192.0.2.11").packed,), keys=(b"k",), **core_settings(g))


def test_the_defaults_are_no_guard(tmp_path: Path) -> None:
    (g,) = load(write(tmp_path, doc())).groups
    assert (g.guard, g.voters, g.lease, g.on_arbiter_loss) == ("none", (), 2.0, "hold")
    c = core(tmp_path, doc())
    assert (c.guard, c.voters, c.lease, c.on_arbiter_loss) == ("none", (), 2.0, "hold")


def test_majority_with_voters(tmp_path: Path) -> None:
    text = doc(group(guard='"majority"', voters=VOTERS, lease='"1.5s"'))
    (g,) = load(write(tmp_path, text)).groups
    assert g.guard == "majority" and g.lease == 1.5
    assert g.voters == (ip("192.0.2.11"), ip("192.0.2.12"), ip("192.0.2.13"))
    c = core(tmp_path, text)
    assert c.guard == "majority" and c.lease == 1.5
    assert c.voters == tuple(ip(f"192.0.2.{n}").packed for n in (11, 12, 13))


def test_etcd_with_release(tmp_path: Path) -> None:
    text = doc(group(guard='"etcd"', on_arbiter_loss='"release"', lease='"3s"'), top=ETCD)
    c = core(tmp_path, text)
    assert (c.guard, c.on_arbiter_loss, c.lease, c.voters) == ("etcd", "release", 3.0, ())


def test_voters_must_be_peers_when_the_config_knows_the_members(tmp_path: Path) -> None:
    peers = '["192.0.2.12", "192.0.2.13"]'
    ok = group(guard='"majority"', voters=VOTERS, peers=peers)
    assert load(write(tmp_path, doc(ok))).groups[0].voters[2] == ip("192.0.2.13")
    # Without peers (multicast) the members are not known here: any voter goes.
    far = group(guard='"majority"', voters='["192.0.2.99"]')
    assert load(write(tmp_path, doc(far))).groups[0].voters == (ip("192.0.2.99"),)


G = "group.www"


@pytest.mark.parametrize(
    ("keys", "top", "key", "fragment"),
    [
        ({"guard": '"quorum"'}, "", f"{G}.guard", 'must be "none", "majority" or "etcd"'),
        ({"guard": '"etcd"'}, "", f"{G}.guard", "needs an [etcd] table"),
        ({"guard": '"majority"'}, "", f"{G}.voters", "needs voters"),
        ({"guard": '"majority"', "voters": "[]"}, "", f"{G}.voters", "needs voters"),
        ({"voters": VOTERS}, "", f"{G}.voters", 'only with guard = "majority"'),
        ({"guard": '"etcd"', "voters": VOTERS}, ETCD, f"{G}.voters", "only with"),
        (
            {"guard": '"majority"', "voters": VOTERS, "on_arbiter_loss": '"hold"'},
            "",
            f"{G}.on_arbiter_loss",
            'only with guard = "etcd"',
        ),
        ({"lease": '"5s"'}, "", f"{G}.lease", "only with a guard"),
        (
            {"guard": '"etcd"', "on_arbiter_loss": '"keep"'},
            ETCD,
            f"{G}.on_arbiter_loss",
            'must be "hold" or "release"',
        ),
        (
            {"guard": '"majority"', "voters": '["192.0.2.11", "192.0.2.11"]'},
            "",
            f"{G}.voters[1]",
            "listed twice",
        ),
        (
            {"guard": '"majority"', "voters": '["2001:db8::11"]'},
            "",
            f"{G}.voters[0]",
            "IPv6 but the host id",
        ),
        (
            {
                "guard": '"majority"',
                "voters": '["192.0.2.11", "192.0.2.14"]',
                "peers": '["192.0.2.12"]',
            },
            "",
            f"{G}.voters[1]",
            "neither this host's id nor one of the group's peers",
        ),
        (
            {"guard": '"majority"', "voters": '["239.1.1.1"]'},
            "",
            f"{G}.voters[0]",
            "not a unicast address",
        ),
        (
            {"guard": '"etcd"', "lease": '"1s"'},
            ETCD,
            f"{G}.lease",
            "must be at least 1.5s and 2 x timeout (1.5s), got 1s",
        ),
        (
            {"guard": '"etcd"', "timeout": '"1s"', "lease": '"1.5s"'},
            ETCD,
            f"{G}.lease",
            "2 x timeout (2s), got 1.5s",
        ),
        ({"guard": '"etcd"', "lease": '"0s"'}, ETCD, f"{G}.lease", "positive duration"),
    ],
)
def test_errors_name_the_key(
    tmp_path: Path, keys: dict[str, str], top: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, doc(group(**keys), top=top))
    check(load_error(path), path, key, fragment)
