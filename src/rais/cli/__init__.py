"""The ``rais`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rais import __version__
from rais.base.durations import parse_duration


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rais", description="Failover and load balancing of service addresses."
    )
    parser.add_argument("--version", action="version", version=f"rais {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="run the deterministic cluster simulator")
    sim.add_argument("--hosts", type=int, default=3)
    sim.add_argument("--spares", type=int, default=0, help="hot spares among the hosts")
    sim.add_argument("--observers", type=int, default=0)
    sim.add_argument("--duration", type=_duration, default=60.0, help="virtual seconds")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--seeds", type=int, default=1, help="run this many seeds from --seed")
    sim.add_argument("--heartbeat", type=_duration, default=0.1)
    sim.add_argument("--timeout", type=_duration, default=0.0, help="default 3 x heartbeat")
    sim.add_argument("--orphan-timeout", type=_duration, default=8.0)
    sim.add_argument("--loss", type=float, default=0.0, help="background loss per datagram")
    sim.add_argument("--faults", choices=("none", "random"), default="none")
    sim.add_argument("--networks", type=int, default=2, help="control networks (1-4)")
    sim.add_argument("--ipv6", action="store_true", help="IPv6 host ids and addresses")
    sim.add_argument(
        "--exact-duplicates", action="store_true", help="deliver every copy of every datagram"
    )
    sim.add_argument(
        "--late-steady",
        action="store_true",
        help="hold datagrams that change nothing until the receiver wakes (rais.drivers.quiet)",
    )
    sim.add_argument(
        "--old",
        type=float,
        default=0.0,
        help="chance that a host boots as the version-1 release (a mixed group)",
    )
    sim.add_argument(
        "--sets",
        type=float,
        default=0.0,
        help="chance that a host with a preferred address prefers an address set",
    )
    sim.add_argument(
        "--guard",
        choices=("none", "majority", "etcd"),
        default="none",
        help="the cores' guard (majority: every host votes; etcd: a simulated arbiter)",
    )
    sim.add_argument("--lease", type=_duration, default=2.0, help="the guard's lease")
    sim.add_argument(
        "--on-arbiter-loss", choices=("hold", "release"), default="hold", help="guard etcd"
    )
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.add_argument("--trace", metavar="FILE", help="write the event trace ('-' for stdout)")

    agent = sub.add_parser("agent", help="run the daemon on this host")
    agent.add_argument("--config", required=True, metavar="FILE")
    agent.add_argument("--log-format", choices=("text", "json"), help="overrides the config")

    check = sub.add_parser("check-config", help="validate a config file (exit 2 if bad)")
    check.add_argument("file")

    api_help = "admin API address (default: from --config, else 127.0.0.1:7400)"
    status = sub.add_parser("status", help="show the groups as this host sees them")
    status.add_argument("--json", action="store_true")
    for name in ("quiesce", "unquiesce"):
        p = sub.add_parser(name, help=f"{name} this host (every group, or one)")
        p.add_argument("--group", metavar="G")
    ev = sub.add_parser("events", help="recent events of this host's groups")
    ev.add_argument("--follow", "-f", action="store_true", help="then print new ones as they come")
    mv = sub.add_parser("move", help="pin a service address to a host (release before acquire)")
    mv.add_argument("address", help="a service address; for an address set, any of it (or A,B,...)")
    mv.add_argument("host", help="the host id (first control address) to move it to")
    fb = sub.add_parser("failback", help="give a service address back to its preferred host now")
    fb.add_argument("address", help="a service address; for an address set, any of it (or A,B,...)")
    for p in (mv, fb):
        p.add_argument("--group", metavar="G", help="default: the group that has the address")
    pa = sub.add_parser(
        "pause", help="keep this host's addresses in place while its agent restarts"
    )
    pa.add_argument(
        "--for",
        dest="duration",
        required=True,
        metavar="DURATION",
        help="the longest the restart may take (e.g. 30s; from 2 x timeout, at least 2s, to 5m)",
    )
    for p in (status, sub.choices["quiesce"], sub.choices["unquiesce"], mv, fb, ev, pa):
        p.add_argument("--api", metavar="HOST:PORT", help=api_help)
        p.add_argument("--config", metavar="FILE", help="read the API address and token from it")

    dev = sub.add_parser("dev", help="a local demo cluster (no root needed)")
    dev.add_argument("--hosts", type=int, default=4)
    dev.add_argument("--spares", type=int, default=1)
    dev.add_argument("--port", type=int, default=17401, help="UDP port of the control traffic")
    dev.add_argument("--api-base", type=int, default=7400, help="host N's API is on base+N")
    dev.add_argument("--dns-port", type=int, default=5353, help="the demo's DNS on 127.0.0.1")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sim":
        from rais.sim.cli import run_sim

        return run_sim(args)
    from rais.cli import commands

    handler = {
        "agent": commands.agent,
        "check-config": commands.check_config,
        "status": commands.status,
        "quiesce": commands.quiesce,
        "unquiesce": commands.unquiesce,
        "events": commands.events,
        "move": commands.move,
        "failback": commands.failback,
        "pause": commands.pause,
        "dev": commands.dev,
    }[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
