"""Asks DNS servers about one name every ``interval`` until a stop file appears,
without waiting for answers (each query has its own timeout), and writes one
JSON line per query: send and receive times (wall clock), server index,
rcode (or "timeout"), addresses. Run inside a namespace by the e2e tests:

    python tests/dnswatch.py OUT STOPFILE NAME INTERVAL HOST:PORT [HOST:PORT ...]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode


async def ask(name: str, index: int, host: str, port: int) -> dict[str, Any]:
    sent = time.time()
    query = dns.message.make_query(name, "A")
    try:
        r = await dns.asyncquery.udp(query, host, port=port, timeout=1.5)
    except dns.exception.Timeout:
        return {"t": sent, "rt": time.time(), "server": index, "rcode": "timeout", "addrs": []}
    addrs = sorted(rd.address for rrset in r.answer for rd in rrset if rrset.rdtype == 1)
    rcode = dns.rcode.to_text(r.rcode())
    return {"t": sent, "rt": time.time(), "server": index, "rcode": rcode, "addrs": addrs}


async def main(out: str, stop: str, name: str, interval: float, servers: list[str]) -> None:
    targets = [(s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])) for s in servers]
    tasks: list[asyncio.Task[dict[str, Any]]] = []
    while not os.path.exists(stop):
        for i, (host, port) in enumerate(targets):
            tasks.append(asyncio.create_task(ask(name, i, host, port)))
        await asyncio.sleep(interval)
    results = await asyncio.gather(*tasks)
    with open(out, "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:]))
