"""Tests of the [test.NAME] / [load.NAME] readers (src/rais/probes/parse.py)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from rais.base.section import Invalid
from rais.probes.parse import parse_loads, parse_tests
from rais.probes.spec import LoadSpec, TestSpec

BASE = "/etc/rais"


def read_tests(text: str) -> dict[str, TestSpec]:
    data: dict[str, Any] = tomllib.loads(text).get("test", {})
    return parse_tests(data, BASE)


def read_loads(text: str) -> dict[str, LoadSpec]:
    data: dict[str, Any] = tomllib.loads(text).get("load", {})
    return parse_loads(data, BASE)


# ---------------------------------------------------------------- valid tables


def test_every_test_kind_with_defaults() -> None:
    specs = read_tests(
        """
        [test.db]
        kind = "tcp"
        host = "192.0.2.5"
        port = 5432

        [test.web]
        kind = "http"
        url = "https://www.example.com:8443/health"

        [test.script]
        kind = "command"
        command = "pgrep -x nginx"

        [test.maint]
        kind = "file"
        path = "maintenance"
        """
    )
    assert list(specs) == ["db", "web", "script", "maint"]
    assert specs["db"] == TestSpec("db", "tcp", host="192.0.2.5", port=5432)
    assert specs["web"] == TestSpec("web", "http", url="https://www.example.com:8443/health")
    assert specs["web"].expect_status == (200,)
    assert specs["web"].tls_verify is True
    assert specs["script"] == TestSpec("script", "command", command="pgrep -x nginx")
    assert specs["maint"] == TestSpec("maint", "file", path="/etc/rais/maintenance")
    assert specs["maint"].fail_if == "exists"
    assert (specs["db"].interval, specs["db"].timeout, specs["db"].rise, specs["db"].fall) == (
        2.0,
        1.0,
        2,
        2,
    )


def test_every_test_key() -> None:
    specs = read_tests(
        """
        [test.web]
        kind = "http"
        interval = "500ms"
        timeout = 0.25
        rise = 3
        fall = 1
        url = "http://[2001:db8::1]:8080/"
        expect_status = [200, 204]
        body_contains = "OK"
        tls_verify = false

        [test.db6]
        kind = "tcp"
        host = "2001:DB8::0005"
        port = 1

        [test.up]
        kind = "file"
        path = "/run/up"
        fail_if = "missing"
        """
    )
    assert specs["web"] == TestSpec(
        "web",
        "http",
        interval=0.5,
        timeout=0.25,
        rise=3,
        fall=1,
        url="http://[2001:db8::1]:8080/",
        expect_status=(200, 204),
        body_contains="OK",
        tls_verify=False,
    )
    assert specs["db6"].host == "2001:db8::5"  # normalised
    assert specs["up"] == TestSpec("up", "file", path="/run/up", fail_if="missing")


def test_a_short_interval_shortens_the_default_timeout() -> None:
    spec = read_tests('[test.t]\nkind = "command"\ncommand = "true"\ninterval = "300ms"')["t"]
    assert (spec.interval, spec.timeout) == (0.3, 0.3)


def test_timeout_equal_to_interval_is_fine() -> None:
    spec = read_tests('[test.t]\nkind = "command"\ncommand = "true"\ninterval = 1\ntimeout = "1s"')
    assert spec["t"].timeout == 1.0


def test_every_load_kind() -> None:
    specs = read_loads(
        """
        [load.cpu]
        kind = "cpu"

        [load.wan]
        kind = "net"
        interfaces = ["eth0", "eth1.100"]

        [load.lan]
        kind = "net"
        interfaces = ["eth2"]
        capacity = 125000000
        interval = "10s"
        timeout = "5s"

        [load.app]
        kind = "command"
        command = "/usr/local/bin/load"

        [load.fixed]
        kind = "static"
        load = 0
        capacity = 4294967295
        """
    )
    assert specs == {
        "cpu": LoadSpec("cpu", "cpu"),
        "wan": LoadSpec("wan", "net", interfaces=("eth0", "eth1.100")),
        "lan": LoadSpec(
            "lan", "net", interval=10.0, timeout=5.0, interfaces=("eth2",), capacity=125_000_000
        ),
        "app": LoadSpec("app", "command", command="/usr/local/bin/load"),
        "fixed": LoadSpec("fixed", "static", load=0, capacity=2**32 - 1),
    }


def test_empty_tables() -> None:
    assert parse_tests({}, BASE) == {}
    assert parse_loads({}, BASE) == {}


# ---------------------------------------------------------------- bad tests

TCP = 'kind = "tcp"\nhost = "192.0.2.5"\nport = 80\n'
HTTP = 'kind = "http"\nurl = "http://192.0.2.5/"\n'


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        # kind
        ('host = "192.0.2.5"', "test.t.kind", "missing: the kind of test, one of tcp, http"),
        ('kind = "ping"', "test.t.kind", "must be one of tcp, http, command, file, got 'ping'"),
        ("kind = 1", "test.t.kind", "must be a string, got an integer: 1"),
        ('kind = ""', "test.t.kind", "must not be empty"),
        # unknown keys and keys of another kind
        (TCP + "prot = 80", "test.t.prot", "unknown key (did you mean 'port'?)"),
        (TCP + "xyzzy = 1", "test.t.xyzzy", "unknown key (known keys: kind, interval"),
        (TCP + 'url = "http://x/"', "test.t.url", "not a key of a tcp test"),
        (HTTP + "port = 80", "test.t.port", "not a key of a http test"),
        ('kind = "file"\npath = "x"\ncommand = "true"', "test.t.command", "file test"),
        ('kind = "command"\ncommand = "true"\nfail_if = "missing"', "test.t.fail_if", "command"),
        # required keys
        ('kind = "tcp"\nport = 80', "test.t.host", "missing: a tcp test needs host"),
        ('kind = "tcp"\nhost = "192.0.2.5"', "test.t.port", "missing: a tcp test needs port"),
        ('kind = "http"', "test.t.url", "missing: a http test needs url"),
        ('kind = "command"', "test.t.command", "missing: a command test needs command"),
        ('kind = "file"', "test.t.path", "missing: a file test needs path"),
        # tcp values
        ('kind = "tcp"\nhost = "db.example"\nport = 80', "test.t.host", "not an IP address"),
        ('kind = "tcp"\nhost = "192.0.2.5"\nport = 0', "test.t.port", "must be 1..65535, got 0"),
        ('kind = "tcp"\nhost = "192.0.2.5"\nport = 65536', "test.t.port", "1..65535"),
        ('kind = "tcp"\nhost = "192.0.2.5"\nport = "80"', "test.t.port", "must be an integer"),
        ('kind = "tcp"\nhost = "192.0.2.5"\nport = true', "test.t.port", "got a boolean"),
        # http values
        ('kind = "http"\nurl = "ftp://x/"', "test.t.url", "must start with http:// or https://"),
        ('kind = "http"\nurl = "www.example.com"', "test.t.url", "http:// or https://"),
        ('kind = "http"\nurl = "http:///health"', "test.t.url", "has no host"),
        ('kind = "http"\nurl = "http://x:99999/"', "test.t.url", "not a valid URL"),
        ('kind = "http"\nurl = "http://x/a b"', "test.t.url", "must not contain whitespace"),
        ('kind = "http"\nurl = ""', "test.t.url", "must not be empty"),
        (HTTP + "expect_status = 200", "test.t.expect_status", "must be an array of HTTP"),
        (HTTP + "expect_status = []", "test.t.expect_status", "at least one status code"),
        (HTTP + "expect_status = [200, 99]", "test.t.expect_status[1]", "100..599, got 99"),
        (HTTP + "expect_status = [600]", "test.t.expect_status[0]", "100..599, got 600"),
        (HTTP + 'expect_status = ["200"]', "test.t.expect_status[0]", "must be an integer"),
        (HTTP + "expect_status = [true]", "test.t.expect_status[0]", "got a boolean"),
        (HTTP + "expect_status = [204, 204]", "test.t.expect_status[1]", "listed twice"),
        (HTTP + 'body_contains = ""', "test.t.body_contains", "must not be empty"),
        (HTTP + 'tls_verify = "no"', "test.t.tls_verify", "must be true or false"),
        # file values
        ('kind = "file"\npath = "x"\nfail_if = "gone"', "test.t.fail_if", '"exists" or'),
        ('kind = "file"\npath = 3', "test.t.path", "must be a string"),
        # timing and counts
        (TCP + "rise = 0", "test.t.rise", "must be 1..4294967295, got 0"),
        (TCP + "fall = -1", "test.t.fall", "must be 1..4294967295, got -1"),
        (TCP + "fall = 4294967296", "test.t.fall", "got 4294967296"),
        (TCP + "rise = 1.5", "test.t.rise", "must be an integer, got a float"),
        (TCP + 'interval = "2 parsecs"', "test.t.interval", "not a duration"),
        (TCP + 'interval = "0s"', "test.t.interval", "must be a positive duration"),
        (TCP + "timeout = -1", "test.t.timeout", "must be a positive duration"),
        (TCP + 'timeout = "3s"', "test.t.timeout", "must not be above interval (the default 2s)"),
        (TCP + 'interval = "1s"\ntimeout = "1001ms"', "test.t.timeout", "above interval (1s)"),
    ],
)
def test_bad_test(body: str, key: str, fragment: str) -> None:
    with pytest.raises(Invalid) as info:
        read_tests(f"[test.t]\n{body}\n")
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"_web": {}}, "test", "test name '_web' must be 1-64 letters"),
        ({"a.b": {}}, "test", "test name 'a.b'"),
        ({"": {}}, "test", "test name ''"),
        ({"x" * 65: {}}, "test", "must be 1-64"),
        ({"web": 3}, "test.web", "must be a table ([test.web]), got an integer: 3"),
        ({"web": [1]}, "test.web", "got an array"),
    ],
)
def test_bad_test_names_and_tables(data: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_tests(data, BASE)
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)


def test_the_test_table_must_be_a_table() -> None:
    bad: Any = [1]
    with pytest.raises(Invalid) as info:
        parse_tests(bad, BASE)
    assert (info.value.key, info.value.message) == (
        "test",
        "must be a table of [test.NAME] tables, got an array",
    )


def test_first_bad_test_is_reported() -> None:
    with pytest.raises(Invalid) as info:
        read_tests(f'[test.ok]\n{TCP}\n[test.bad]\nkind = "tcp"\n')
    assert info.value.key == "test.bad.host"


# ---------------------------------------------------------------- bad loads

NET = 'kind = "net"\ninterfaces = ["eth0"]\n'


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ("interval = 1", "load.l.kind", "missing: the kind of load, one of cpu, net, command"),
        ('kind = "disk"', "load.l.kind", "must be one of cpu, net, command, static, got 'disk'"),
        ('kind = "cpu"\ninterfaces = ["eth0"]', "load.l.interfaces", "it has no keys of its own"),
        ('kind = "cpu"\ncapacity = 4', "load.l.capacity", "not a key of a cpu load"),
        ('kind = "cpu"\nintervall = "1s"', "load.l.intervall", "did you mean 'interval'?"),
        ('kind = "command"\ncommand = "x"\nload = 1', "load.l.load", "not a key of a command"),
        ('kind = "static"\nload = 1\ncapacity = 2\ncommand = "x"', "load.l.command", "static"),
        ('kind = "net"', "load.l.interfaces", "missing: a net load needs interfaces"),
        ('kind = "net"\ninterfaces = []', "load.l.interfaces", "at least one interface"),
        ('kind = "net"\ninterfaces = "eth0"', "load.l.interfaces", "must be an array of strings"),
        ('kind = "net"\ninterfaces = [1]', "load.l.interfaces[0]", "must be a string"),
        ('kind = "net"\ninterfaces = ["eth0", "../x"]', "load.l.interfaces[1]", "not an interface"),
        ('kind = "net"\ninterfaces = ["a234567890123456"]', "load.l.interfaces[0]", "interface"),
        ('kind = "net"\ninterfaces = [".."]', "load.l.interfaces[0]", "not an interface name"),
        ('kind = "net"\ninterfaces = ["eth0", "eth0"]', "load.l.interfaces[1]", "listed twice"),
        (NET + "capacity = 0", "load.l.capacity", "must be 1..4294967295, got 0"),
        (NET + "capacity = 4294967296", "load.l.capacity", "1..4294967295"),
        (NET + 'capacity = "1G"', "load.l.capacity", "must be an integer"),
        ('kind = "command"', "load.l.command", "missing: a command load needs command"),
        ('kind = "static"\ncapacity = 1', "load.l.load", "missing: a static load needs load"),
        ('kind = "static"\nload = 1', "load.l.capacity", "missing: a static load needs capacity"),
        ('kind = "static"\nload = -1\ncapacity = 1', "load.l.load", "0..4294967295, got -1"),
        ('kind = "static"\nload = 1\ncapacity = 0', "load.l.capacity", "1..4294967295, got 0"),
        ('kind = "static"\nload = 4294967296\ncapacity = 1', "load.l.load", "0..4294967295"),
        ('kind = "cpu"\ninterval = "soon"', "load.l.interval", "not a duration"),
        ('kind = "cpu"\ninterval = "1s"\ntimeout = "2s"', "load.l.timeout", "above interval"),
    ],
)
def test_bad_load(body: str, key: str, fragment: str) -> None:
    with pytest.raises(Invalid) as info:
        read_loads(f"[load.l]\n{body}\n")
    assert info.value.key == key, str(info.value)
    assert fragment in info.value.message, str(info.value)


def test_bad_load_names_and_tables() -> None:
    with pytest.raises(Invalid) as info:
        parse_loads({"-cpu": {"kind": "cpu"}}, BASE)
    assert (info.value.key, info.value.message) == (
        "load",
        "load name '-cpu' must be 1-64 letters, digits, '_' or '-' (not first)",
    )
    with pytest.raises(Invalid) as info:
        parse_loads({"cpu": "cpu"}, BASE)
    assert info.value.key == "load.cpu"
    assert "must be a table ([load.cpu]), got a string" in info.value.message
