"""Acquire and release scripts: run with a timeout and environment variables."""

from __future__ import annotations

import asyncio
import contextlib
import os


class ScriptRunner:
    """Runs a script (None: nothing to run, success) and reports (ok, reason)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.runs = 0

    async def run(self, script: str | None, env: dict[str, str]) -> tuple[bool, str]:
        if not script:
            return True, ""
        self.runs += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                script,
                env={**os.environ, **env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return False, f"{script}: {exc.strerror or exc}"
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            return False, f"{script}: timed out after {self.timeout:g}s"
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            detail = f": {tail[0][:200]}" if tail else ""
            return False, f"{script}: exit status {proc.returncode}{detail}"
        return True, ""


class FakeScripts:
    """Records calls; scripts named in ``failing`` fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.failing: set[str] = set()

    async def run(self, script: str | None, env: dict[str, str]) -> tuple[bool, str]:
        if not script:
            return True, ""
        self.calls.append((script, env))
        if script in self.failing:
            return False, f"{script}: exit status 1"
        return True, ""
