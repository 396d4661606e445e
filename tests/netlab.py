"""A network-namespace lab for end-to-end tests (needs root and iproute2).

Layout for ``lab(n_hosts, client=True)`` named NAME (``PREFIX-PID-N``)::

    NAME-br   bridge namespace: Linux bridge br0 (no STP, no multicast snooping)
    NAME-h1   eth0 192.0.2.11/24, 2001:db8::11/64  -- veth --  br0 port "h1"
    ...
    NAME-hN   eth0 192.0.2.(10+N)/24, 2001:db8::(10+N)/64
    NAME-c    eth0 192.0.2.200/24, 2001:db8::200/64 (only with client=True)

Every eth0 is up with MULTICAST on, lo is up, the lab's own IPv6 addresses are
added with ``nodad``; sysctls stay at the kernel defaults (DAD on,
``arp_accept=0``). Only 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32 are
used; the namespaces have no link to the outside.

Use it as a context manager::

    with lab(2, client=True) as net:
        net.run("h1", "ip", "addr")

or through the ``make_lab`` fixture (import ``lab_fixture`` into the test
module; it calls ``require_root()`` first)::

    from netlab import Lab, LabFactory, lab_fixture  # noqa: F401

    @pytest.mark.e2e
    def test_x(make_lab: LabFactory) -> None:
        net = make_lab(2, client=True)

Everything a lab made is deleted when it ends, also after a failure (veths
die with their namespaces). Namespaces left by killed runs are removed when
the next lab starts (``remove_stale``), or by hand with
``python tests/netlab.py --clean``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from rais.base.ip import IP as IP  # re-exported for the e2e tests

T = TypeVar("T")

PREFIX = "rais-e2e"
CLIENT = "c"
BRIDGE = "br"
CMD_TIMEOUT = 10.0

_counter = itertools.count(1)


# -- environment ------------------------------------------------------------


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require_root() -> None:
    """Skip the calling test unless it can build a lab: root, iproute2 present.

    Not root: skip. Root but something missing: skip, except with CI=true,
    where a skip would hide that the e2e tests never ran, so it fails."""
    if os.geteuid() != 0:
        pytest.skip("e2e: needs root (network namespaces, raw sockets)")
    problem = _lab_problem()
    if problem is None:
        return
    if _ci():
        pytest.fail(f"e2e: {problem}; CI=true and root, so this is a failure, not a skip")
    pytest.skip(f"e2e: {problem}")


def _lab_problem() -> str | None:
    if shutil.which("ip") is None:
        return "iproute2 'ip' not found"
    try:
        out = subprocess.run(["ip", "-V"], capture_output=True, text=True, timeout=CMD_TIMEOUT)
    except OSError as exc:
        return f"'ip -V' failed: {exc}"
    if out.returncode != 0 or "iproute2" not in out.stdout + out.stderr:
        return f"'ip -V' does not look like iproute2: {(out.stdout + out.stderr).strip()!r}"
    if not os.path.isdir("/proc/self/ns") or not os.path.exists("/proc/self/ns/net"):
        return "no network namespace support (/proc/self/ns/net)"
    return None


def _ip(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    for _ in range(5):
        try:
            proc = subprocess.run(
                ["ip", *argv],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=CMD_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"ip {' '.join(argv)}: timed out") from exc
        # A dump that raced a change (an agent refreshing an address lifetime)
        # may miss entries: iproute2 says so on stderr; ask again.
        if "Dump was interrupted" not in proc.stderr:
            break
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise RuntimeError(f"ip {' '.join(argv)}: exit {proc.returncode}: {detail}")
    return proc.stdout


def _json(text: str) -> Any:
    text = text.strip()
    return json.loads(text) if text else []


def namespaces() -> list[str]:
    """Every named network namespace (``ip netns list``)."""
    return [entry["name"] for entry in _json(_ip("-j", "netns", "list"))]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(prefix: str = PREFIX, *, everything: bool = False) -> list[str]:
    """Delete the ``PREFIX-PID-...`` namespaces whose PID is not running (left
    by killed runs); ``everything=True`` deletes all ``PREFIX-*`` namespaces
    (only when no lab is running). Returns the names deleted."""
    removed = []
    for name in namespaces():
        if not name.startswith(prefix + "-"):
            continue
        pid_text = name[len(prefix) + 1 :].split("-", 1)[0]
        stale = everything or (pid_text.isdigit() and not _pid_alive(int(pid_text)))
        if stale:
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


# -- the lab ----------------------------------------------------------------


class Lab:
    """A running lab; hosts are named "h1".."hN", the client "c", the bridge "br"."""

    def __init__(self, name: str, n_hosts: int, client: bool) -> None:
        self.name = name
        self.hosts = tuple(f"h{i}" for i in range(1, n_hosts + 1))
        self.client = CLIENT if client else None
        self.made: list[str] = []
        """Namespaces created so far (deleted in this order reversed)."""

    # names and addresses

    def ns(self, host: str) -> str:
        """The namespace name of ``host`` ("h1", "c", "br")."""
        return f"{self.name}-{host}"

    def members(self) -> list[str]:
        return [*self.hosts, *([self.client] if self.client else [])]

    @staticmethod
    def ipv4(host: str) -> ipaddress.IPv4Address:
        """The lab's own IPv4 address of ``host`` on eth0."""
        if host == CLIENT:
            return ipaddress.IPv4Address("192.0.2.200")
        return ipaddress.IPv4Address(f"192.0.2.{10 + int(host[1:])}")

    @staticmethod
    def ipv6(host: str) -> ipaddress.IPv6Address:
        """The lab's own IPv6 address of ``host`` on eth0."""
        if host == CLIENT:
            return ipaddress.IPv6Address("2001:db8::200")
        return ipaddress.IPv6Address(f"2001:db8::{10 + int(host[1:])}")

    # commands

    def run(
        self, host: str, *argv: str, check: bool = True, timeout: float = CMD_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host``'s namespace (``ip netns exec``), output captured."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.ns(host), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{host}: {' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def ip(self, host: str, *argv: str, check: bool = True) -> str:
        """``ip -n NS argv...``: stdout."""
        return _ip("-n", self.ns(host), *argv, check=check)

    def sysctl(self, host: str, key: str, value: str | int) -> None:
        """Set ``key`` (dotted, as for sysctl) in ``host``'s namespace."""
        path = "/proc/sys/" + key.replace(".", "/")
        self.run(host, "sh", "-c", f'echo {value} > "$1"', "sh", path)

    # observation

    def address_info(self, host: str, interface: str = "eth0") -> list[dict[str, Any]]:
        """The ``addr_info`` entries of ``ip -j addr show dev IF`` (flags such as
        ``tentative`` appear as keys)."""
        links = _json(self.ip(host, "-j", "addr", "show", "dev", interface))
        return [info for link in links for info in link.get("addr_info", [])]

    def addresses(self, host: str, interface: str = "eth0") -> set[IP]:
        """The addresses on ``host``'s eth0 (link-local included)."""
        return {ipaddress.ip_address(info["local"]) for info in self.address_info(host, interface)}

    def neigh(self, host: str, address: IP | str, interface: str = "eth0") -> str | None:
        """The MAC (lower case) ``host`` has for ``address`` in its neighbour
        table, None if it has none (or an entry without one: INCOMPLETE, FAILED)."""
        entries = _json(self.ip(host, "-j", "neigh", "show", "to", str(address), "dev", interface))
        for entry in entries:
            mac = entry.get("lladdr")
            if mac:
                return str(mac).lower()
        return None

    def mac(self, host: str, interface: str = "eth0") -> str:
        """The MAC address (lower case) of ``host``'s eth0."""
        links = _json(self.ip(host, "-j", "link", "show", "dev", interface))
        return str(links[0]["address"]).lower()

    def mac_bytes(self, host: str, interface: str = "eth0") -> bytes:
        return bytes.fromhex(self.mac(host, interface).replace(":", ""))

    def ping(self, host: str, address: IP | str, timeout: float = 1.0) -> bool:
        """One ICMP echo from ``host`` to ``address``; True if answered within
        ``timeout``. Uses ``ping -c1 -W1`` when installed, else an equivalent
        raw-socket echo in Python (iputils is not everywhere)."""
        target = str(ipaddress.ip_address(address))
        if shutil.which("ping"):
            wait = str(max(1, round(timeout)))
            proc = self.run(host, "ping", "-c1", f"-W{wait}", target, check=False)
        else:
            proc = self.run(host, sys.executable, "-c", _PING, target, str(timeout), check=False)
        return proc.returncode == 0

    def reaches(self, host: str, address: IP | str, timeout: float = 5.0) -> bool:
        """Pings from ``host`` until one is answered or ``timeout`` passes.

        For preconditions: one echo can go unanswered on a loaded machine
        (the first neighbour solicitation for a fresh IPv6 address is
        retried only after a second), which says nothing about the product."""
        deadline = time.monotonic() + timeout
        while True:
            if self.ping(host, address):
                return True
            if time.monotonic() >= deadline:
                return False


_PING = r"""
import ipaddress, os, socket, struct, sys, time
target, timeout = ipaddress.ip_address(sys.argv[1]), float(sys.argv[2])
ident, payload = os.getpid() & 0xFFFF, b"rais-netlab-ping"
if target.version == 6:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    msg, want = struct.pack("!BBHHH", 128, 0, 0, ident, 1) + payload, 129
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + payload
    total = sum(struct.unpack("!%dH" % (len(body) // 2), body))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    msg, want = body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:], 0
s.sendto(msg, (str(target), 0))
deadline = time.monotonic() + timeout
while (left := deadline - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data, src = s.recvfrom(4096)
    except TimeoutError:
        break
    if target.version == 4:
        data = data[(data[0] & 15) * 4 :]
    src_ip = ipaddress.ip_address(src[0].split("%")[0])
    if src_ip == target and data[0] == want and data[4:6] == struct.pack("!H", ident):
        sys.exit(0)
sys.exit(1)
"""


def _build(net: Lab) -> None:
    br = net.ns(BRIDGE)
    _ip("netns", "add", br)
    net.made.append(br)
    _ip(
        "-n",
        br,
        "-batch",
        "-",
        stdin="link set lo up\n"
        "link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0\n"
        "link set br0 up\n",
    )
    for member in net.members():
        ns = net.ns(member)
        _ip("netns", "add", ns)
        net.made.append(ns)
        v4, v6 = net.ipv4(member), net.ipv6(member)
        _ip(
            "-n",
            ns,
            "-batch",
            "-",
            stdin=f"link set lo up\n"
            f"link add eth0 type veth peer name {member} netns {br}\n"
            f"link set eth0 multicast on up\n"
            f"addr add {v4}/24 dev eth0\n"
            f"addr add {v6}/64 dev eth0 nodad\n",
        )
    _ip(
        "-n",
        br,
        "-batch",
        "-",
        stdin="".join(f"link set {m} master br0 up\n" for m in net.members()),
    )


@contextlib.contextmanager
def lab(n_hosts: int, prefix: str = PREFIX, *, client: bool = False) -> Iterator[Lab]:
    """Build a lab (see the module docstring), yield it, delete it."""
    if not 1 <= n_hosts <= 100:
        raise ValueError(f"n_hosts must be 1..100, not {n_hosts}")
    remove_stale(prefix)
    net = Lab(f"{prefix}-{os.getpid()}-{next(_counter)}", n_hosts, client)
    try:
        _build(net)
        yield net
    finally:
        delete_namespaces(net.made, "lab teardown")


def delete_namespaces(made: list[str], what: str) -> None:
    """Delete the namespaces in ``made`` (newest first) and empty it; raises
    once, naming ``what``, if any could not be deleted."""
    errors = []
    for ns in reversed(made):
        try:
            _ip("netns", "del", ns)
        except RuntimeError as exc:
            errors.append(str(exc))
    made.clear()
    if errors:
        raise RuntimeError(f"{what}: " + "; ".join(errors))


LabFactory = Callable[..., Lab]
"""``make_lab(n_hosts, *, client=False, prefix=PREFIX) -> Lab``."""


@pytest.fixture(name="make_lab")
def lab_fixture() -> Iterator[LabFactory]:
    """Factory fixture ``make_lab``: builds labs, all deleted after the test.
    Skips (or fails, see ``require_root``) where no lab can be built."""
    require_root()
    with contextlib.ExitStack() as stack:

        def make(n_hosts: int, *, client: bool = False, prefix: str = PREFIX) -> Lab:
            return stack.enter_context(lab(n_hosts, prefix, client=client))

        yield make


# -- waiting ----------------------------------------------------------------


async def wait_for(
    probe: Callable[[], T | None], timeout: float, interval: float = 0.02
) -> tuple[T | None, float]:
    """Poll ``probe`` until it returns something truthy or ``timeout`` seconds
    pass; returns (last value, seconds elapsed)."""
    start = time.monotonic()
    while True:
        value = probe()
        elapsed = time.monotonic() - start
        if value or elapsed >= timeout:
            return value, elapsed
        await asyncio.sleep(interval)


if __name__ == "__main__":
    if "--clean" in sys.argv[1:]:
        gone = remove_stale(everything="--all" in sys.argv[1:])
        print("removed:", " ".join(gone) or "nothing")
    else:
        print("usage: python tests/netlab.py --clean [--all]")
