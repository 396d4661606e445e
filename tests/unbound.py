"""A real recursive resolver for end-to-end DNS tests: Debian's ``unbound``.

``Unbound.create(netns=..., stubs=[(zone, address, port)])`` then ``start()``
runs ``unbound -d -c unbound.conf`` in the foreground in its own temporary
directory (no chroot, no user switch, no remote control, iterator only),
listening on 127.0.0.1 on a free port, with one ``stub-zone`` per stub and
``local-zone: "ZONE" nodefault`` for the special-use names (``.test``) it
would otherwise answer itself. ``start`` returns once unbound answers
(``localhost.``, a built-in local zone, so the stubs are not asked). ``stop``:
SIGTERM, then SIGKILL; the directory is removed, also when the start failed.

Without ``unbound`` the test skips, except with ``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from bind import find_tool, free_port, terminate

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def require_unbound() -> str:
    found = find_tool("unbound")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("unbound not found; CI=true, so this is a failure, not a skip")
    pytest.skip("unbound not found (Debian: apt-get install unbound)")


@dataclass
class Unbound:
    directory: Path
    binary: str
    port: int
    stubs: tuple[tuple[str, str, int], ...]
    netns: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, *, stubs: Sequence[tuple[str, str, int]], netns: str | None = None) -> Unbound:
        return cls(
            directory=Path(tempfile.mkdtemp(prefix="rais-unbound-")),
            binary=require_unbound(),
            port=free_port(),
            stubs=tuple(stubs),
            netns=netns,
        )

    @property
    def server(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def log_file(self) -> Path:
        return self.directory / "unbound.log"

    def config(self) -> str:
        d = self.directory
        tops = sorted({zone.rstrip(".").rsplit(".", 1)[-1] + "." for zone, _, _ in self.stubs})
        lines = [
            "server:",
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{d}"',
            f'  pidfile: "{d}/unbound.pid"',
            f'  logfile: "{self.log_file}"',
            "  use-syslog: no",
            "  verbosity: 1",
            f"  interface: {HOST}@{self.port}",
            f"  port: {self.port}",
            "  do-ip6: no",
            '  module-config: "iterator"',
            "  do-not-query-localhost: no",
            *(f'  local-zone: "{top}" nodefault' for top in tops),
            "remote-control:",
            "  control-enable: no",
        ]
        for zone, address, port in self.stubs:
            lines += ["stub-zone:", f'  name: "{zone}"', f"  stub-addr: {address}@{port}"]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        try:
            conf = self.directory / "unbound.conf"
            conf.write_text(self.config())
            wrap = ["ip", "netns", "exec", self.netns] if self.netns else []
            with (self.directory / "stderr").open("wb") as err:
                self.process = subprocess.Popen(
                    [*wrap, self.binary, "-d", "-c", str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def log_tail(self, chars: int = 3000) -> str:
        out = ""
        for f in (self.directory / "stderr", self.log_file):
            with contextlib.suppress(OSError):
                out += f.read_text(errors="replace")[-chars:]
        return out

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        wrap = ["ip", "netns", "exec", self.netns] if self.netns else []
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"unbound exited {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"unbound not ready after {START_TIMEOUT} s:\n{self.log_tail()}")
            dig = ["dig", "+tries=1", "+time=1", f"@{HOST}", "-p", f"{self.port}", "localhost"]
            out = subprocess.run(
                [*wrap, *dig],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            if "status: NOERROR" in out:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.05)

    def stop(self) -> None:
        try:
            terminate(self.process, STOP_TIMEOUT)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
