"""``rais dev``: a local demo cluster in one process, no root needed.

Every host is a real agent (real protocol core, real UDP control traffic over
127.0.0.X unicast, real admin API on 127.0.0.1:7400+N); only the service
interface is simulated (addresses are kept in memory, not configured). Type
commands to crash hosts, bring them back, fail their health test or quiesce
them, and watch the addresses move.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rais.admin.status import render
from rais.admin.status_view import status_json
from rais.base.ip import IP, ip_key
from rais.config import AgentConfig, AuthConfig, GroupConfig, HostConfig
from rais.dns.config import GroupDnsConfig
from rais.dns.server import DnsServer, ZoneData
from rais.drivers.fake_addresses import FakeAddresses, FakeAnnouncer
from rais.drivers.scripts import ScriptRunner
from rais.runtime.agent import Agent
from rais.runtime.group import Drivers

HELP = """commands:
  status            the group as host 1 sees it (any host: status N)
  load N L          set host N's load to L of capacity 1000 (DNS sheds above 800,
                    takes it back at or below 600)
  kill N            crash host N (no goodbye; its addresses expire after ~1 s)
  stop N            stop host N gracefully (SIGTERM: release, announce the leave)
  start N           start host N again
  fail N / heal N   make host N's health test fail / pass
  quiesce N / unquiesce N
  quit"""


DNS_NAME = "www.rais.test."


@dataclass
class DevHost:
    index: int
    control: IP
    config: AgentConfig
    addresses: FakeAddresses = field(default_factory=FakeAddresses)
    agent: Agent | None = None
    task: asyncio.Task[int] | None = None


class DevCluster:
    def __init__(
        self, hosts: int, spares: int, port: int, api_base: int, state: Path, heartbeat: float
    ) -> None:
        key = secrets.token_bytes(32)
        controls: list[IP] = [ipaddress.ip_address(f"127.0.0.{i + 1}") for i in range(hosts)]
        self.hosts: list[DevHost] = []
        for i, control in enumerate(controls):
            n = i + 1
            preferred = ipaddress.ip_interface(f"198.51.100.{n}/24") if i < hosts - spares else None
            group = GroupConfig(
                name="www",
                address=ipaddress.ip_address("239.192.0.1"),
                port=port,
                interface="demo0",
                preferred=preferred,
                heartbeat=heartbeat,
                timeout=3 * heartbeat,
                orphan_timeout=60.0,
                peers=tuple(c for c in controls if c != control),
                garp_count=1,
                dns=GroupDnsConfig(DNS_NAME, "rais.test.", high=800, low=600),
            )
            config = AgentConfig(
                file="(rais dev)",
                host=HostConfig(
                    control=(control,),
                    api=("127.0.0.1", api_base + n),
                    state_dir=str(state / f"host{n}"),
                ),
                auth=AuthConfig(key_file="(generated)", keys=(key,)),
                groups=(group,),
            )
            self.hosts.append(DevHost(n, control, config))

    def _drivers(self, host: DevHost) -> object:
        from rais.core import wire
        from rais.drivers.transport import UdpTransport

        def make(group: GroupConfig, control: tuple[IP, ...]) -> Drivers:
            return Drivers(
                transport=UdpTransport(
                    control, group.address, group.port, peers=group.peers, steady=wire.steady
                ),
                addresses=host.addresses,
                announcer=FakeAnnouncer(),
                scripts=ScriptRunner(),
            )

        return make

    async def start(self, host: DevHost) -> None:
        if host.task is not None and not host.task.done():
            return
        host.agent = Agent(host.config, drivers=self._drivers(host))  # type: ignore[arg-type]
        host.task = asyncio.get_running_loop().create_task(host.agent.run(install_signals=False))
        await asyncio.wait(
            [host.task, asyncio.ensure_future(host.agent.ready.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if host.task.done():
            host.task.result()

    async def stop(self, host: DevHost) -> None:
        if host.agent is not None and host.task is not None and not host.task.done():
            host.agent.stop()
            await host.task

    async def kill(self, host: DevHost) -> None:
        """A crash: no leave; the addresses stay until their lifetime runs out."""
        if host.task is None or host.task.done() or host.agent is None:
            return
        lifetime = max((r.lifetime for r in host.agent.groups.values()), default=1)
        for runner in host.agent.groups.values():
            runner.stop()
        host.agent.groups.clear()
        host.agent.stop()
        await host.task

        def expire() -> None:
            # what the kernel does to addresses whose lifetime was not refreshed
            if host.task is not None and host.task.done():
                for table in host.addresses.interfaces.values():
                    table.clear()

        asyncio.get_running_loop().call_later(lifetime + 0.5, expire)

    def zones(self) -> list[ZoneData]:
        """Every member computes the same answer: ask the first live one that
        is not warming up (just started), else the first live one."""
        views = [
            h.agent.dns.zones()
            for h in self.hosts
            if h.agent is not None and h.task is not None and not h.task.done()
        ]
        for zones in views:
            if not any(z.warming for z in zones):
                return zones
        return views[0] if views else []

    def dns_answer(self) -> str:
        for h in self.hosts:
            if h.agent is not None and h.task is not None and not h.task.done():
                gd = h.agent.dns.groups.get("www")
                if gd is not None and gd.answer is not None:
                    return " ".join(str(a) for a in gd.answer.addresses) or "(none)"
        return "-"

    def summary(self) -> str:
        """One line: who leads and who holds which address, from the hosts' own
        interfaces (simulated) and the first live host's view."""
        up = [h for h in self.hosts if h.agent is not None and h.task and not h.task.done()]
        leader = "-"
        if up and up[0].agent is not None:
            groups = up[0].agent.status().groups
            leader = (groups[0].leader or "-") if groups else "-"
        held = []
        for h in self.hosts:
            for ip, _ in sorted(h.addresses.snapshot("demo0"), key=lambda a: ip_key(a[0])):
                held.append(f"{ip}@host{h.index}")
        down = [f"host{h.index}" for h in self.hosts if h not in up]
        line = f"[live] leader {leader} | {' '.join(held) or 'no addresses held'}"
        line += f" | dns {self.dns_answer()}"
        return line + (f" | down: {' '.join(down)}" if down else "")

    async def watch(self) -> None:
        """Print the summary whenever it changes (the live view)."""
        last = ""
        while True:
            line = self.summary()
            if line != last:
                print(line, flush=True)
                last = line
            await asyncio.sleep(0.2)

    def status(self, host: DevHost) -> str:
        if host.agent is None or host.task is None or host.task.done():
            return f"host {host.index} is down\n"
        return render(status_json(host.agent.status()))


async def run_dev(
    hosts: int = 4,
    spares: int = 1,
    port: int = 17401,
    api_base: int = 7400,
    dns_port: int = 5353,
) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    with tempfile.TemporaryDirectory(prefix="rais-dev-") as tmp:
        cluster = DevCluster(hosts, spares, port, api_base, Path(tmp), 0.1)
        for h in cluster.hosts:
            await cluster.start(h)
        server: DnsServer | None = DnsServer(("127.0.0.1", dns_port), cluster.zones)
        assert server is not None
        try:
            await server.start()
        except OSError as exc:
            print(f"rais dev: no DNS on 127.0.0.1:{dns_port} ({exc.strerror}); try --dns-port")
            server = None
        print(f"rais dev: {hosts} hosts ({spares} hot spare), group www, service addresses")
        print("198.51.100.N on a simulated interface; admin API of host N on 127.0.0.1:", end="")
        print(f"{api_base}+N (rais status --api 127.0.0.1:{api_base + 1}).")
        if server is not None:
            print(f"DNS: dig @127.0.0.1 -p {server.port} www.rais.test")
        print(f"dashboard: http://127.0.0.1:{api_base + 1}/ (any host N: port {api_base}+N)")
        print(HELP)
        await asyncio.sleep(1.0)
        print(cluster.status(cluster.hosts[0]), flush=True)
        watcher = asyncio.get_running_loop().create_task(cluster.watch())
        try:
            await _repl(cluster)
        finally:
            watcher.cancel()
            if server is not None:
                await server.close()
            await asyncio.gather(*(cluster.stop(h) for h in cluster.hosts), return_exceptions=True)
    return 0


async def _repl(cluster: DevCluster) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            await asyncio.Event().wait()  # no terminal: run until interrupted
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        if cmd in ("quit", "exit", "q"):
            return
        try:
            host = cluster.hosts[int(args[0]) - 1] if args else cluster.hosts[0]
        except (ValueError, IndexError):
            print(f"no host {args[0]!r}")
            continue
        if cmd == "status":
            print(cluster.status(host), flush=True)
        elif cmd == "kill":
            await cluster.kill(host)
        elif cmd == "stop":
            await cluster.stop(host)
        elif cmd == "start":
            await cluster.start(host)
        elif cmd in ("fail", "heal") and host.agent is not None:
            for r in host.agent.groups.values():
                r.test_result(cmd == "heal", "operator (rais dev)")
        elif cmd == "load" and host.agent is not None and len(args) == 2 and args[1].isdigit():
            for r in host.agent.groups.values():
                r.load_sample(int(args[1]), 1000)
        elif cmd == "quiesce" and host.agent is not None:
            host.agent.api.quiesce(None)
        elif cmd == "unquiesce" and host.agent is not None:
            host.agent.api.unquiesce(None)
        else:
            print(HELP)
