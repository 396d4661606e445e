"""The operator commands behind ``rais``: agent, check-config, status, quiesce, dev."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from rais.config import ConfigError, load


def _setup_logging(fmt: str) -> None:
    if fmt == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(_JsonFormatter())
        logging.basicConfig(level=logging.INFO, handlers=[handler])
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def agent(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"rais: {exc}", file=sys.stderr)
        return 2
    _setup_logging(args.log_format or config.host.log_format)
    from rais.runtime import sched
    from rais.runtime.agent import Agent

    # Before the event loop and its threads: they inherit it.
    sched.apply(config.host.scheduler_slice, config.host.realtime, config.host.nice)
    try:
        return asyncio.run(Agent(config).run())
    except (OSError, ExceptionGroup) as exc:
        print(f"rais: cannot start: {_first(exc)}", file=sys.stderr)
        return 1


def _first(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def check_config(args: argparse.Namespace) -> int:
    try:
        config = load(args.file)
    except ConfigError as exc:
        print(f"rais: {exc}", file=sys.stderr)
        return 2
    groups = ", ".join(g.name for g in config.groups) or "none"
    print(f"{args.file}: OK (host {config.host.control[0]}, groups: {groups})")
    return 0


def _api(args: argparse.Namespace) -> tuple[str, str | None]:
    token = None
    address = "127.0.0.1:7400"
    if args.config:
        try:
            config = load(args.config)
        except ConfigError as exc:
            raise SystemExit(f"rais: {exc}") from exc
        host, port = config.host.api
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if config.host.api_token_file:
            token = Path(config.host.api_token_file).read_text().strip()
    if args.api:
        address = args.api
    return f"http://{address}", token


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    base, token = _api(args)
    data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
    req = urllib.request.Request(base + path, method=method, data=data)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise SystemExit(f"rais: {base}{path}: {exc.code} {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"rais: cannot reach the agent at {base}: {exc}") from exc


def status(args: argparse.Namespace) -> int:
    from rais.admin.status import render

    data = _call(args, "GET", "/v1/status")
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render(data), end="")
    return 0


def _change(args: argparse.Namespace, what: str) -> int:
    path = f"/v1/{what}" + (f"?group={args.group}" if args.group else "")
    data = _call(args, "POST", path)
    print(f"{what}d: {', '.join(data['groups']) or 'no groups'}")
    return 0


def quiesce(args: argparse.Namespace) -> int:
    return _change(args, "quiesce")


def unquiesce(args: argparse.Namespace) -> int:
    return _change(args, "unquiesce")


def events(args: argparse.Namespace) -> int:
    from rais.runtime.events import line

    seq = 0
    for rec in _call(args, "GET", "/v1/events?since=0"):
        print(line(rec), flush=True)
        seq = max(seq, int(rec["seq"]))
    if not args.follow:
        return 0
    base, token = _api(args)
    req = urllib.request.Request(f"{base}/v1/stream?since={seq}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req) as resp:
            kind = ""
            for raw in resp:
                text = raw.decode(errors="replace").rstrip("\r\n")
                if text.startswith("event:"):
                    kind = text[6:].strip()
                elif text.startswith("data:") and kind == "event":
                    rec = json.loads(text[5:])
                    if int(rec["seq"]) > seq:
                        seq = int(rec["seq"])
                        print(line(rec), flush=True)
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(f"rais: lost the agent at {base}: {exc}") from exc
    except KeyboardInterrupt:
        return 0
    return 0


def move(args: argparse.Namespace) -> int:
    query = urllib.parse.urlencode(
        {"address": args.address, "host": args.host} | ({"group": args.group} if args.group else {})
    )
    data = _call(args, "POST", f"/v1/move?{query}")
    print(f"group {data['group']}: {data['address']} pinned to {data['host']}")
    return 0


def failback(args: argparse.Namespace) -> int:
    query = urllib.parse.urlencode(
        {"address": args.address} | ({"group": args.group} if args.group else {})
    )
    data = _call(args, "POST", f"/v1/failback?{query}")
    print(f"group {data['group']}: {data['address']} goes back to its preferred host")
    return 0


def pause(args: argparse.Namespace) -> int:
    """``rais pause --for DURATION``: restart the agent in place within DURATION
    (then restart it: ``systemctl restart rais``)."""
    data = _call(args, "POST", "/v1/pause", {"for": args.duration})
    groups = ", ".join(data["groups"]) or "no groups"
    print(f"paused for {data['for_s']:g}s: {groups}; restart the agent now")
    return 0


def dev(args: argparse.Namespace) -> int:
    from rais.cli.dev import run_dev

    try:
        return asyncio.run(
            run_dev(args.hosts, args.spares, args.port, args.api_base, args.dns_port)
        )
    except KeyboardInterrupt:
        return 0
