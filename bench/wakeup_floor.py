"""What a wake-up costs on this machine before rais does anything: the floor
under bench/cpu_events.py's "CPU per received info".

A sender process sends one 144-byte datagram to 127.0.0.1 every ``--gap-ms``
(default 3 ms, as cpu_events.py paces its peers); the receiver measures its
own thread CPU time (``time.thread_time_ns``) from just after one datagram's
handling to just after the next one's, i.e. one whole wake-up: the return
from ``epoll_wait``, the event loop, reading the socket. Receivers, each a
separate run:

* ``block``: a blocking ``recv`` loop, no event loop (the kernel's part and
  the least Python can do);
* ``epoll``: ``select.epoll`` and a non-blocking ``recv``;
* ``asyncio-reader``: asyncio with ``loop.add_reader`` and a ``recv`` loop to
  EAGAIN (how rais.drivers.receive reads);
* ``asyncio-protocol``: asyncio's ``DatagramProtocol`` (how rais read before).

Each with a 100 ms timer running beside it, as an agent's heartbeat. Prints
the median and p90 over ``--samples`` datagrams (the first 20 dropped). Run::

    flock /tmp/bench.lock .venv/bin/python bench/wakeup_floor.py [--samples 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import select
import socket
import statistics
import subprocess
import sys
import time

from benchkit import machine  # type: ignore[import-not-found, unused-ignore]

PORT = 17999
MODES = ("block", "epoll", "asyncio-reader", "asyncio-protocol")


def send(samples: int, gap: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(samples):
        s.sendto(b"x" * 144, ("127.0.0.1", PORT))
        time.sleep(gap)
    s.sendto(b"END", ("127.0.0.1", PORT))


def sender(samples: int, gap: float) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--send", "--samples", str(samples), "--gap-ms"]
    return subprocess.Popen([*argv, str(gap * 1000)])


def plain(mode: str, samples: int, gap: float) -> list[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", PORT))
    ep = select.epoll()
    if mode == "epoll":
        sock.setblocking(False)
        ep.register(sock.fileno(), select.EPOLLIN)
    proc = sender(samples, gap)
    out: list[int] = []
    last = time.thread_time_ns()
    while True:
        if mode == "epoll":
            ep.poll(0.1)
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                continue
        else:
            data = sock.recv(2048)
        now = time.thread_time_ns()
        out.append(now - last)
        last = now
        if data == b"END":
            break
    proc.wait()
    sock.close()
    return out


async def looped(mode: str, samples: int, gap: float) -> list[int]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    out: list[int] = []
    last = [time.thread_time_ns()]

    def handle(data: bytes) -> None:
        now = time.thread_time_ns()
        out.append(now - last[0])
        last[0] = now
        if data == b"END" and not done.done():
            done.set_result(None)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", PORT))
    sock.setblocking(False)
    if mode == "asyncio-protocol":

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                handle(data)

        transport, _ = await loop.create_datagram_endpoint(Proto, sock=sock)
    else:

        def ready() -> None:
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    return
                handle(data)

        loop.add_reader(sock.fileno(), ready)

    def tick() -> None:
        loop.call_later(0.1, tick)

    tick()
    proc = sender(samples, gap)
    await done
    proc.wait()
    if mode == "asyncio-protocol":
        transport.close()
    else:
        loop.remove_reader(sock.fileno())
        sock.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--gap-ms", type=float, default=3.0)
    parser.add_argument("--send", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    gap = args.gap_ms / 1000
    if args.send:
        send(args.samples, gap)
        return 0
    print(f"{machine()}, {args.samples} datagrams {args.gap_ms:g} ms apart\n")
    print("| receiver | µs of CPU per wake-up: median | p90 |\n|---|---|---|")
    for mode in MODES:
        if mode.startswith("asyncio"):
            got = asyncio.run(looped(mode, args.samples, gap))
        else:
            got = plain(mode, args.samples, gap)
        kept = sorted(got[20:])
        median = statistics.median(kept) / 1000
        print(f"| {mode} | {median:.0f} | {kept[len(kept) * 9 // 10] / 1000:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
