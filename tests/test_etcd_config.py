"""``[etcd]`` of the config file (src/rais/config/etcd.py, docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import check, doc, load_error, write

from rais.config import load
from rais.config.etcd import EtcdConfig


def etcd(body: str) -> str:
    return doc(top=f"[etcd]\n{body}\n")


def test_no_etcd_table_no_etcd(tmp_path: Path) -> None:
    assert load(write(tmp_path, doc())).etcd is None


def test_the_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, etcd('endpoints = ["http://192.0.2.21:2379/"]'))).etcd
    assert cfg == EtcdConfig(endpoints=("http://192.0.2.21:2379",))
    assert (cfg.prefix, cfg.ttl, cfg.user, cfg.password, cfg.ca_file) == (
        "/rais/",
        2.0,
        None,
        None,
        None,
    )


def test_every_key(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client-key.pem"):
        (tmp_path / name).write_text("PEM\n")
    (tmp_path / "etcd.password").write_text("  s3cret \n")
    text = etcd(
        'endpoints = ["https://192.0.2.21:2379", "https://[2001:db8::22]:2379", '
        '"https://etcd3.example:2379"]\n'
        'prefix = "/site/rais/"\n'
        'ttl = "5s"\n'
        'ca_file = "ca.pem"\n'
        'cert_file = "client.pem"\n'
        'key_file = "client-key.pem"\n'
        'user = "rais"\n'
        'password_file = "etcd.password"'
    )
    cfg = load(write(tmp_path, text)).etcd
    assert cfg == EtcdConfig(
        endpoints=(
            "https://192.0.2.21:2379",
            "https://[2001:db8::22]:2379",
            "https://etcd3.example:2379",
        ),
        prefix="/site/rais/",
        ttl=5.0,
        ca_file=f"{tmp_path}/ca.pem",
        cert_file=f"{tmp_path}/client.pem",
        key_file=f"{tmp_path}/client-key.pem",
        user="rais",
        password_file=f"{tmp_path}/etcd.password",
        password="s3cret",
    )


URL = 'endpoints = ["http://192.0.2.21:2379"]'
TLS = 'endpoints = ["https://192.0.2.21:2379"]'

BAD = [
    ("no endpoints", "prefix = '/r/'", "etcd.endpoints", "missing"),
    ("empty endpoints", "endpoints = []", "etcd.endpoints", "at least one"),
    ("a string", 'endpoints = "http://a:1"', "etcd.endpoints", "array of strings"),
    ("no scheme", 'endpoints = ["192.0.2.21:2379"]', "etcd.endpoints[0]", "http://HOST:PORT"),
    ("grpc", 'endpoints = ["unix://x:1"]', "etcd.endpoints[0]", "http://HOST:PORT"),
    ("no port", 'endpoints = ["http://192.0.2.21"]', "etcd.endpoints[0]", "give the port"),
    ("bad port", 'endpoints = ["http://192.0.2.21:99999"]', "etcd.endpoints[0]", "not a URL"),
    ("a path", 'endpoints = ["http://a:2379/v3"]', "etcd.endpoints[0]", "only scheme"),
    ("twice", 'endpoints = ["http://a:2379", "http://a:2379/"]', "etcd.endpoints[1]", "twice"),
    ("prefix", f'{URL}\nprefix = "rais"', "etcd.prefix", 'start and end with "/"'),
    ("ttl short", f"{URL}\nttl = 1", "etcd.ttl", "whole seconds, 2s to 120s"),
    ("ttl long", f'{URL}\nttl = "1h"', "etcd.ttl", "got 1h"),
    ("ttl part", f'{URL}\nttl = "2.5s"', "etcd.ttl", "whole seconds"),
    ("ttl zero", f"{URL}\nttl = 0", "etcd.ttl", "positive"),
    ("ca no tls", f'{URL}\nca_file = "group.key"', "etcd.ca_file", "no endpoint is https"),
    ("ca missing", f'{TLS}\nca_file = "nope.pem"', "etcd.ca_file", "cannot read"),
    ("cert alone", f'{TLS}\ncert_file = "group.key"', "etcd.key_file", "go together"),
    ("key alone", f'{TLS}\nkey_file = "group.key"', "etcd.key_file", "go together"),
    ("user alone", f'{URL}\nuser = "rais"', "etcd.password_file", "go together"),
    ("pw alone", f'{URL}\npassword_file = "group.key"', "etcd.password_file", "go together"),
    ("pw missing", f'{URL}\nuser = "r"\npassword_file = "no"', "etcd.password_file", "cannot read"),
    ("unknown", f"{URL}\nendpoint = 1", "etcd.endpoint", "did you mean 'endpoints'"),
    ("password", f'{URL}\npassword = "x"', "etcd.password", "unknown key"),
]


@pytest.mark.parametrize(("case", "body", "key", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_etcd(tmp_path: Path, case: str, body: str, key: str, fragment: str) -> None:
    path = write(tmp_path, etcd(body))
    check(load_error(path), path, key, fragment)


def test_the_table_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'etcd = "http://a:2379"\n' + doc())
    check(load_error(path), path, "etcd", "must be a table")


def test_the_documented_example_loads(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    example = text[text.index("```toml\n[etcd]\n") + 8 : text.index("```", text.index("[etcd]\n"))]
    for name in ("etcd-ca.pem", "etcd-client.pem", "etcd-client-key.pem", "etcd.password"):
        (tmp_path / name).write_text("x\n")
    cfg = load(write(tmp_path, doc(top=example.replace("/etc/rais/", f"{tmp_path}/"))))
    assert cfg.etcd is not None and len(cfg.etcd.endpoints) == 3 and cfg.etcd.password == "x"
