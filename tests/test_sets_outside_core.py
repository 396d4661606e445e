"""Address sets outside the core: the ``preferred`` list in the config, the
held file's keys, the status JSON and table."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from clusterkit import Cluster, make_config, service
from test_config import check, doc, group, load_error, write

from rais.admin.status import group_status, render
from rais.admin.status_view import AgentStatus, status_json
from rais.config import load
from rais.config.keys import core_settings
from rais.core.addr import pack
from rais.runtime.state import HeldFile

V6 = pack("2001:db8::1")


def test_preferred_accepts_a_list_whose_first_address_is_the_key(tmp_path: Path) -> None:
    grp = group(preferred='["192.0.2.101/24", "2001:db8::101/64", "192.0.2.102/24"]')
    www = load(write(tmp_path, doc(grp))).groups[0]
    assert www.preferred == ipaddress.ip_interface("192.0.2.101/24")
    assert www.extras == (
        ipaddress.ip_interface("2001:db8::101/64"),
        ipaddress.ip_interface("192.0.2.102/24"),
    )
    settings = core_settings(www)
    assert settings["preferred"] == pack("192.0.2.101")
    assert settings["extras"] == ((pack("2001:db8::101"), 64), (pack("192.0.2.102"), 24))
    # A string is a set of one, as before.
    assert load(write(tmp_path, doc(group()))).groups[0].extras == ()


@pytest.mark.parametrize(
    ("value", "key", "fragment"),
    [
        ("[]", "group.www.preferred", "empty list"),
        ('["192.0.2.101/24", "192.0.2.101/25"]', "group.www.preferred[1]", "listed twice"),
        ('["192.0.2.101/24", "2001:db8::1"]', "group.www.preferred[1]", "no prefix length"),
        ('["192.0.2.101/24", 7]', "group.www.preferred[1]", "must be a string"),
    ],
)
def test_a_bad_preferred_list_is_refused(
    tmp_path: Path, value: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, doc(group(preferred=value)))
    check(load_error(path), path, key, fragment)


def test_no_two_groups_share_an_address_of_a_set(tmp_path: Path) -> None:
    a = group(preferred='["192.0.2.101/24", "2001:db8::101/64"]')
    b = group(name='"db"', address='"239.192.0.2:7401"', preferred='"2001:db8::101/64"')
    path = write(tmp_path, doc(a, b))
    check(load_error(path), path, "group.db.preferred", "already preferred by group www")


def test_the_held_file_remembers_the_key_of_each_other_address(tmp_path: Path) -> None:
    path = tmp_path / "held"
    key, extra = ipaddress.ip_address("198.51.100.1"), ipaddress.ip_address("2001:db8::1")
    held = HeldFile(path)
    held.add(key, 24)
    held.add(extra, 64, key)
    assert path.read_text() == "198.51.100.1/24\n2001:db8::1/64 of 198.51.100.1\n"
    again = HeldFile(path)
    assert again.load() == {(key, 24), (extra, 64)}
    assert again.loaded_keys() == {(extra, 64): key}
    held.discard(extra, 64)
    assert held.keys() == {}


def test_the_status_shows_sets_and_leaves_other_groups_byte_for_byte() -> None:
    c = Cluster(
        [make_config(1, extras=((V6, 64),)), make_config(2), make_config(3, spare=True, old=True)]
    )
    c.run_until(1.0)
    g = group_status(c.view(0), {})
    out = status_json(AgentStatus("x", "192.0.2.1", 1, (), (g,)))["groups"][0]
    row = next(a for a in out["addresses"] if a["address"] == "198.51.100.1/24")
    assert row["set"] == ["198.51.100.1/24", "2001:db8::1/64"]
    (held,) = out["sets"]
    assert held["up"] == ["198.51.100.1/24"] and held["waiting"] == ["2001:db8::1/64"]
    assert "192.0.2.3" in held["why"]
    me = next(h for h in out["hosts"] if h["id"] == "192.0.2.1")
    assert me["preferred_set"] == ["198.51.100.1/24", "2001:db8::1/64"]
    text = render({"groups": [out]})
    assert "held set 198.51.100.1/24: up 198.51.100.1/24; WAITING 2001:db8::1/64" in text
    # A group without sets has none of the new fields.
    other = status_json(AgentStatus("x", "192.0.2.2", 1, (), (group_status(c.view(1), {}),)))
    plain = other["groups"][0]
    assert "sets" not in plain
    assert all("set" not in a for a in plain["addresses"] if a["address"] != "198.51.100.1/24")
    assert c.holders(service(1)) == [0]
