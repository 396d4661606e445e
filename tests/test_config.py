"""Tests of the config loader (src/rais/config/__init__.py, docs/configuration.md)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from rais import config
from rais.config import AgentConfig, ConfigError, GroupConfig, load

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

HOST = 'control = ["192.0.2.11"]'
AUTH = 'key_file = "group.key"'


def group(**keys: str | None) -> str:
    """A [[group]] table; keyword values are TOML text, None leaves the key out."""
    fields: dict[str, str | None] = {
        "name": '"www"',
        "address": '"239.192.0.1:7401"',
        "interface": '"eth0"',
        "preferred": '"192.0.2.101/24"',
        "heartbeat": '"100ms"',
        "timeout": '"300ms"',
    }
    fields.update(keys)
    return "[[group]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)


def doc(*groups: str, host: str = HOST, auth: str = AUTH, top: str = "") -> str:
    body = "\n".join(groups) if groups else group()
    return f"{top}\n[host]\n{host}\n\n[auth]\n{auth}\n\n{body}"


def write(tmp_path: Path, text: str, key: str = "  the group secret \n") -> str:
    (tmp_path / "group.key").write_text(key)
    path = tmp_path / "rais.toml"
    path.write_text(text)
    return str(path)


def load_error(path: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value


def check(err: ConfigError, path: str, key: str, fragment: str) -> None:
    assert err.key == key, str(err)
    assert err.file == path
    assert str(err).startswith(f"{path}: {key}: "), str(err)
    assert fragment in str(err), str(err)


# ---------------------------------------------------------------- valid files

FULL = """
[host]
control = ["192.0.2.11", "198.51.100.11"]
api = "127.0.0.1:7411"
api_token_file = "{d}/api.token"
state_dir = "{d}/state"
log_format = "json"

[auth]
key_file = "{d}/group.key"
previous_key_file = "{d}/group.key.old"

[[group]]
name = "www"
address = "239.192.0.1:7401"
interface = "eth0"
preferred = "192.0.2.101/24"
heartbeat = "100ms"
timeout = "300ms"
orphan_timeout = "24h"
peers = ["192.0.2.12", "192.0.2.13"]
ttl = 4
observer = false
acquire_script = "/etc/rais/acquire.sh"
release_script = "/etc/rais/release.sh"
script_timeout = "10s"
garp_count = 5
garp_interval = "200ms"
announce_interval = "1m"

[[group]]
name = "dns-watch"
address = "239.192.0.2:7402"
interface = "eth1"
heartbeat = 0.5
timeout = 2
observer = true
"""


def test_full_example(tmp_path: Path) -> None:
    (tmp_path / "api.token").write_text("tok\n")
    (tmp_path / "group.key.old").write_bytes(b"\told key\n\n")
    path = write(tmp_path, FULL.format(d=tmp_path))
    cfg = load(path)
    assert isinstance(cfg, AgentConfig)
    assert cfg.file == path
    ip = ipaddress.ip_address
    assert cfg.host.control == (ip("192.0.2.11"), ip("198.51.100.11"))
    assert cfg.host.api == ("127.0.0.1", 7411)
    assert cfg.host.api_token_file == f"{tmp_path}/api.token"
    assert cfg.host.state_dir == f"{tmp_path}/state"
    assert cfg.host.log_format == "json"
    assert cfg.auth.key_file == f"{tmp_path}/group.key"
    assert cfg.auth.previous_key_file == f"{tmp_path}/group.key.old"
    assert cfg.auth.keys == (b"the group secret", b"old key")
    www, watch = cfg.groups
    assert www == GroupConfig(
        name="www",
        address=ip("239.192.0.1"),
        port=7401,
        interface="eth0",
        preferred=ipaddress.IPv4Interface("192.0.2.101/24"),
        heartbeat=0.1,
        timeout=0.3,
        orphan_timeout=86400.0,
        peers=(ip("192.0.2.12"), ip("192.0.2.13")),
        ttl=4,
        observer=False,
        acquire_script="/etc/rais/acquire.sh",
        release_script="/etc/rais/release.sh",
        script_timeout=10.0,
        garp_count=5,
        garp_interval=0.2,
        announce_interval=60.0,
    )
    assert (watch.name, watch.port, watch.interface) == ("dns-watch", 7402, "eth1")
    assert (watch.preferred, watch.observer) == (None, True)
    assert (watch.heartbeat, watch.timeout) == (0.5, 2.0)


def test_minimal_example_gets_the_defaults(tmp_path: Path) -> None:
    text = doc(group(preferred=None, heartbeat=None, timeout=None))
    cfg = load(write(tmp_path, text, key="k"))
    assert cfg.host.control == (ipaddress.ip_address("192.0.2.11"),)
    assert cfg.host.api == ("127.0.0.1", 7400)
    assert cfg.host.api_token_file is None
    assert cfg.host.state_dir == "/var/lib/rais"
    assert cfg.host.log_format == "text"
    assert cfg.auth.keys == (b"k",)
    assert cfg.auth.previous_key_file is None
    (www,) = cfg.groups
    defaults = GroupConfig(
        name="www", address=ipaddress.ip_address("239.192.0.1"), port=7401, interface="eth0"
    )
    assert www == defaults
    assert www.preferred is None  # a hot spare


@pytest.mark.parametrize("groups", ["", "group = []"])
def test_no_groups_is_allowed(tmp_path: Path, groups: str) -> None:
    text = f"{groups}\n[host]\n{HOST}\n[auth]\n{AUTH}\n"
    assert load(write(tmp_path, text)).groups == ()


def test_relative_paths_are_taken_from_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "old.key").write_text("old")
    auth = AUTH + '\nprevious_key_file = "old.key"'
    text = doc(group(acquire_script='"up.sh"'), host=HOST + '\nstate_dir = "state"', auth=auth)
    cfg = load(write(tmp_path, text))
    assert cfg.auth.key_file == f"{tmp_path}/group.key"
    assert cfg.auth.keys == (b"the group secret", b"old")
    assert cfg.host.state_dir == f"{tmp_path}/state"
    assert cfg.groups[0].acquire_script == f"{tmp_path}/up.sh"


def test_ipv6(tmp_path: Path) -> None:
    host = 'control = ["2001:db8::11"]\napi = "[::1]:7400"'
    grp = group(address='"[ff02::1:7]:7401"', preferred='"2001:db8:1::101/64"')
    cfg = load(write(tmp_path, doc(grp, host=host)))
    assert cfg.host.api == ("::1", 7400)
    (www,) = cfg.groups
    assert (www.address, www.port) == (ipaddress.ip_address("ff02::1:7"), 7401)
    assert www.preferred == ipaddress.IPv6Interface("2001:db8:1::101/64")


def test_unicast_address_with_peers(tmp_path: Path) -> None:
    grp = group(address='"192.0.2.11:7401"', peers='["192.0.2.12"]')
    (www,) = load(write(tmp_path, doc(grp))).groups
    assert www.peers == (ipaddress.ip_address("192.0.2.12"),)


def test_same_port_on_different_multicast_groups_is_fine(tmp_path: Path) -> None:
    b = group(name='"b"', address='"239.192.0.2:7401"', preferred='"192.0.2.102/24"')
    assert len(load(write(tmp_path, doc(group(), b))).groups) == 2


def test_tests_loads_and_failback(tmp_path: Path) -> None:
    top = (
        '[test.web]\nkind = "http"\nurl = "http://127.0.0.1:8080/"\nrise = 3\n'
        '[test.maint]\nkind = "file"\npath = "/etc/rais/down"\n'
        '[load.cpu]\nkind = "cpu"\ninterval = "1s"\n'
    )
    cfg = load(
        write(
            tmp_path,
            doc(
                group(
                    tests='["web", "maint"]',
                    loads='["cpu"]',
                    load_scale="100",
                    load_combine='"sum"',
                    placement='"random"',
                    failback='"manual"',
                    failback_delay='"30s"',
                ),
                group(name='"b"', address='"239.192.0.2:7401"', preferred=None, tests='["web"]'),
                top=top,
            ),
        )
    )
    www, b = cfg.groups
    assert (www.tests, www.loads, www.load_scale, www.load_combine) == (
        ("web", "maint"),
        ("cpu",),
        100,
        "sum",
    )
    assert (www.placement, www.failback, www.failback_delay) == ("random", "manual", 30.0)
    assert b.tests == ("web",) and b.loads == () and b.failback == "immediate"
    assert list(cfg.tests) == ["web", "maint"] and cfg.tests["web"].rise == 3
    assert cfg.loads["cpu"].interval == 1.0
    zero = load(write(tmp_path, doc(group(failback_delay='"0s"'))))
    assert zero.groups[0].failback_delay == 0.0


def test_link_tracking_is_on_by_default(tmp_path: Path) -> None:
    (www,) = load(write(tmp_path, doc(group()))).groups
    assert www.track_link is True and www.link_hold == 1.0
    (off,) = load(write(tmp_path, doc(group(track_link="false", link_hold='"0s"')))).groups
    assert off.track_link is False and off.link_hold == 0.0
    (held,) = load(write(tmp_path, doc(group(link_hold='"2.5s"')))).groups
    assert held.link_hold == 2.5


# ---------------------------------------------------------------- bad files


def g(**keys: str | None) -> str:
    """A file with one group, changed by ``keys``."""
    return doc(group(**keys))


def h(extra: str) -> str:
    """A file with ``extra`` added to [host]."""
    return doc(host=f"{HOST}\n{extra}")


WEB = '[test.web]\nkind = "http"\nurl = "http://127.0.0.1:8080/health"\n'

B = group(name='"b"', address='"239.192.0.2:7401"', preferred='"192.0.2.102/24"')
B_PEERS = B.replace('"239.192.0.2:7401"', '"239.192.0.3:7401"\npeers = ["192.0.2.13"]')

BAD: list[tuple[str, str, str, str]] = [
    # TOML itself
    ("syntax-error", doc() + "ttl =\n", "(syntax)", "line"),
    ("syntax-duplicate-key", doc() + 'name = "again"\n', "(syntax)", "line"),
    # unknown keys, at every level
    ("unknown-top", doc(top="bogus = 1"), "bogus", "unknown key"),
    ("unknown-host", h('state_dri = "/x"'), "host.state_dri", "'state_dir'"),
    ("unknown-auth", doc(auth=AUTH + '\nkeyfile = "x"'), "auth.keyfile", "unknown key"),
    ("unknown-group", g(heartbeet='"1s"'), "group.www.heartbeet", "'heartbeat'"),
    ("unknown-no-name", g(name=None, nmae='"w"'), "group[0].nmae", "'name'"),
    # sections
    ("no-host", f"[auth]\n{AUTH}\n", "host", "missing"),
    ("no-auth", f"[host]\n{HOST}\n", "auth", "missing"),
    ("host-not-table", f'host = "x"\n[auth]\n{AUTH}\n', "host", "must be a table"),
    ("group-not-array", doc(group().replace("[[group]]", "[group]")), "group", "array of tables"),
    (
        "group-item-not-table",
        f"group = [1]\n[host]\n{HOST}\n[auth]\n{AUTH}\n",
        "group[0]",
        "must be a table",
    ),
    # [host]
    ("control-missing", doc(host='api = "127.0.0.1:7400"'), "host.control", "missing"),
    ("control-empty", doc(host="control = []"), "host.control", "at least one"),
    ("control-string", doc(host='control = "192.0.2.11"'), "host.control", "must be an array"),
    ("control-item-int", doc(host="control = [1]"), "host.control[0]", "must be a string"),
    (
        "control-duplicate",
        doc(host='control = ["192.0.2.11", "192.0.2.11"]'),
        "host.control[1]",
        "listed twice",
    ),
    ("control-malformed", doc(host='control = ["192.0.2.300"]'), "host.control[0]", "192.0.2.300"),
    ("control-multicast", doc(host='control = ["239.1.1.1"]'), "host.control[0]", "not a unicast"),
    ("api-bad-ip", h('api = "127.0.0.256:7400"'), "host.api", "not an IP address"),
    ("api-no-port", h('api = "127.0.0.1"'), "host.api", "address:port"),
    ("api-port-0", h('api = "127.0.0.1:0"'), "host.api", "1..65535"),
    ("api-port-big", h('api = "127.0.0.1:65536"'), "host.api", "65536"),
    ("api-port-name", h('api = "127.0.0.1:http"'), "host.api", "not a number"),
    ("api-v6-unbracketed", h('api = "::1:7400"'), "host.api", "brackets"),
    ("api-v4-bracketed", h('api = "[127.0.0.1]:7400"'), "host.api", "only IPv6"),
    ("api-port-unicode", h('api = "127.0.0.1:\u0667\u0664"'), "host.api", "not a number"),
    ("api-multicast", h('api = "239.1.1.1:7400"'), "host.api", "multicast"),
    ("api-public-no-token", h('api = "192.0.2.11:7400"'), "host.api", "api_token_file"),
    ("api-int", h("\napi = 7400"), "host.api", "must be a string"),
    ("log-format", h('log_format = "xml"'), "host.log_format", "'xml'"),
    ("state-dir-empty", h('state_dir = " "'), "host.state_dir", "empty"),
    ("token-missing", h('api_token_file = "nope"'), "host.api_token_file", "cannot read"),
    # [auth]
    ("key-file-key-missing", doc(auth=""), "auth.key_file", "missing"),
    ("key-file-absent", doc(auth='key_file = "nope.key"'), "auth.key_file", "cannot read"),
    ("key-file-unreadable", doc(auth='key_file = "."'), "auth.key_file", "cannot read"),
    ("key-file-int", doc(auth="key_file = 5"), "auth.key_file", "must be a string"),
    (
        "previous-absent",
        doc(auth=AUTH + '\nprevious_key_file = "old"'),
        "auth.previous_key_file",
        "cannot read",
    ),
    # [[group]]: names
    ("name-missing", g(name=None), "group[0].name", "missing"),
    ("name-empty", g(name='""'), "group[0].name", "empty"),
    ("name-chars", g(name='"a/b"'), "group[0].name", "'a/b'"),
    ("name-int", g(name="1"), "group[0].name", "must be a string"),
    ("name-duplicate", doc(group(), B.replace('"b"', '"www"')), "group.www.name", "used twice"),
    # addresses and ports
    ("address-missing", g(address=None), "group.www.address", "missing"),
    ("address-malformed", g(address='"239.192.0:7401"'), "group.www.address", "not an IP address"),
    ("port-0", g(address='"239.192.0.1:0"'), "group.www.address", "1..65535"),
    ("port-big", g(address='"239.192.0.1:70000"'), "group.www.address", "70000"),
    ("address-int", g(address="7401"), "group.www.address", "must be a string"),
    ("address-unicast", g(address='"192.0.2.50:7401"'), "group.www.address", "not multicast"),
    (
        "family-v6-group",
        g(address='"[ff02::1:7]:7401"'),
        "group.www.address",
        "IPv6 but the host id",
    ),
    (
        "family-v4-group",
        doc(host='control = ["2001:db8::11"]'),
        "group.www.address",
        "IPv4 but the host id",
    ),
    (
        "address-port-twice",
        doc(group(), B.replace("239.192.0.2", "239.192.0.1")),
        "group.b.address",
        "239.192.0.1:7401 is already used by group www",
    ),
    (
        "peers-port-twice",
        doc(group(peers='["192.0.2.12"]'), B_PEERS),
        "group.b.address",
        "port 7401",
    ),
    ("peers-string", g(peers='"192.0.2.12"'), "group.www.peers", "must be an array"),
    ("peers-malformed", g(peers='["192.0.2.12", "192.0.2"]'), "group.www.peers[1]", "'192.0.2'"),
    (
        "peers-duplicate",
        g(peers='["192.0.2.12", "192.0.2.12"]'),
        "group.www.peers[1]",
        "listed twice",
    ),
    ("peers-self", g(peers='["192.0.2.11"]'), "group.www.peers[0]", "own control address"),
    ("peers-family", g(peers='["2001:db8::12"]'), "group.www.peers[0]", "IPv6 but the host id"),
    # interface, preferred, observer
    ("interface-missing", g(interface=None), "group.www.interface", "missing"),
    ("interface-empty", g(interface='""'), "group.www.interface", "empty"),
    ("interface-list", g(interface='["eth0"]'), "group.www.interface", "must be a string"),
    (
        "preferred-no-prefix",
        g(preferred='"192.0.2.101"'),
        "group.www.preferred",
        "add one, e.g. 192.0.2.101/24",
    ),
    (
        "preferred-malformed",
        g(preferred='"192.0.2.1011/24"'),
        "group.www.preferred",
        "192.0.2.1011/24",
    ),
    (
        "preferred-bad-prefix",
        g(preferred='"192.0.2.101/33"'),
        "group.www.preferred",
        "192.0.2.101/33",
    ),
    ("preferred-word", g(preferred='"eth0"'), "group.www.preferred", "not an IP address"),
    ("preferred-network", g(preferred='"192.0.2.0/24"'), "group.www.preferred", "network"),
    ("preferred-and-observer", g(observer="true"), "group.www.observer", "remove preferred"),
    ("observer-string", g(preferred=None, observer='"yes"'), "group.www.observer", "true or false"),
    (
        "preferred-twice",
        doc(group(), B.replace("192.0.2.102/24", "192.0.2.101/25")),
        "group.b.preferred",
        "192.0.2.101 is already preferred by group www",
    ),
    # durations
    ("heartbeat-word", g(heartbeat='"fast"'), "group.www.heartbeat", "not a duration: 'fast'"),
    ("heartbeat-negative", g(heartbeat='"-1s"'), "group.www.heartbeat", "'-1s'"),
    ("heartbeat-zero", g(heartbeat='"0ms"'), "group.www.heartbeat", "positive duration, got 0ms"),
    ("heartbeat-zero-number", g(heartbeat="0"), "group.www.heartbeat", "positive duration, got 0s"),
    ("heartbeat-nan", g(heartbeat="nan"), "group.www.heartbeat", "positive duration"),
    ("heartbeat-bool", g(heartbeat="true"), "group.www.heartbeat", "got a boolean: true"),
    (
        "timeout-equal",
        g(timeout='"100ms"'),
        "group.www.timeout",
        "must be above heartbeat (100ms), got 100ms",
    ),
    (
        "timeout-below",
        g(timeout='"50ms"'),
        "group.www.timeout",
        "must be above heartbeat (100ms), got 50ms",
    ),
    (
        "timeout-default",
        g(heartbeat='"1s"', timeout=None),
        "group.www.timeout",
        "above heartbeat (1s), got the default 0.3s",
    ),
    (
        "orphan-equal",
        g(orphan_timeout='"300ms"'),
        "group.www.orphan_timeout",
        "must be above timeout (300ms), got 300ms",
    ),
    ("script-timeout-zero", g(script_timeout='"0s"'), "group.www.script_timeout", "positive"),
    ("garp-interval-bad", g(garp_interval='"2x"'), "group.www.garp_interval", "'2x'"),
    (
        "announce-list",
        g(announce_interval='["10s"]'),
        "group.www.announce_interval",
        "got an array",
    ),
    # integers and scripts
    ("ttl-0", g(ttl="0"), "group.www.ttl", "1..255, got 0"),
    ("ttl-256", g(ttl="256"), "group.www.ttl", "1..255, got 256"),
    ("ttl-string", g(ttl='"1"'), "group.www.ttl", "must be an integer"),
    ("ttl-bool", g(ttl="true"), "group.www.ttl", "must be an integer"),
    ("garp-count-negative", g(garp_count="-1"), "group.www.garp_count", "at least 0, got -1"),
    ("garp-count-float", g(garp_count="1.5"), "group.www.garp_count", "got a float"),
    ("script-empty", g(acquire_script='""'), "group.www.acquire_script", "empty"),
    ("script-list", g(release_script='["x"]'), "group.www.release_script", "must be a string"),
    # issue 4: tests, loads, placement, failback
    ("tests-unknown", g(tests='["web"]'), "group.www.tests[0]", "no [test.web] is defined"),
    (
        "tests-twice",
        doc(group(tests='["web", "web"]'), top=WEB),
        "group.www.tests[1]",
        "listed twice",
    ),
    ("loads-unknown", g(loads='["cpu"]'), "group.www.loads[0]", "no [load.cpu] is defined"),
    ("tests-not-list", g(tests='"web"'), "group.www.tests", "must be an array"),
    ("combine", g(load_combine='"avg"'), "group.www.load_combine", '"max" or "sum"'),
    ("scale-0", g(load_scale="0"), "group.www.load_scale", "got 0"),
    ("placement", g(placement='"first"'), "group.www.placement", '"least-loaded" or "random"'),
    ("failback", g(failback='"never"'), "group.www.failback", '"immediate" or "manual"'),
    ("failback-delay", g(failback_delay='"-1s"'), "group.www.failback_delay", "duration"),
    ("link-hold", g(link_hold='"-1s"'), "group.www.link_hold", "duration"),
    ("track-link", g(track_link='"yes"'), "group.www.track_link", "true or false"),
    ("test-rise-0", doc(top=WEB + "rise = 0\n"), "test.web.rise", "got 0"),
    (
        "test-bad-url",
        doc(top='[test.web]\nkind = "http"\nurl = "ftp://x"\n'),
        "test.web.url",
        "http",
    ),
]


@pytest.mark.parametrize(("case", "text", "key", "fragment"), BAD, ids=[c[0] for c in BAD])
def test_bad_config(tmp_path: Path, case: str, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    check(load_error(path), path, key, fragment)


def test_the_documented_message_form(tmp_path: Path) -> None:
    path = write(tmp_path, doc(group(timeout='"100ms"')))
    assert str(load_error(path)) == (
        f"{path}: group.www.timeout: must be above heartbeat (100ms), got 100ms"
    )


@pytest.mark.parametrize("contents", ["", " \n\t\n"])
@pytest.mark.parametrize("key", ["auth.key_file", "auth.previous_key_file", "host.api_token_file"])
def test_empty_key_files(tmp_path: Path, contents: str, key: str) -> None:
    (tmp_path / "empty").write_text(contents)
    section, name = key.split(".")
    host, auth = HOST, AUTH
    if section == "host":
        host += f'\n{name} = "empty"'
    elif name == "key_file":
        auth = 'key_file = "empty"'
    else:
        auth += f'\n{name} = "empty"'
    path = write(tmp_path, doc(host=host, auth=auth))
    check(load_error(path), path, key, f"{tmp_path}/empty is empty")


def test_unreadable_config_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    check(load_error(path), path, "(file)", "cannot read")


def test_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rais.toml"
    path.write_bytes(b'[host]\ncontrol = ["\xff"]\n')
    check(load_error(str(path)), str(path), "(syntax)", "not valid TOML")


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[host]\ncontrol = ["192.0.2.11",,]\n')
    check(load_error(path), path, "(syntax)", "line 2")


# ---------------------------------------------------------------- the docs


def _doc_example() -> str:
    m = re.search(r"```toml\n(.*?)```", DOCS.read_text(), re.S)
    assert m, "docs/configuration.md has no toml example"
    return m.group(1)


def test_docs_example_loads(tmp_path: Path) -> None:
    for name in ("group.key", "group.key.old", "api.token"):
        (tmp_path / name).write_text("secret\n")
    text = _doc_example().replace("/etc/rais/", f"{tmp_path}/")
    cfg = load(write(tmp_path, text))
    assert [g.name for g in cfg.groups]


def test_docs_name_every_key() -> None:
    text = DOCS.read_text()
    for key in (*config._TOP, *config._HOST, *config._AUTH, *config._GROUP):
        assert f"`{key}`" in text, key
