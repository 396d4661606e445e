"""What the bench scripts share: the machine line of a README heading, and
SIGTERM/SIGHUP turned into KeyboardInterrupt so that a run's cleanup runs."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType


def machine(extra: str = "") -> str:
    """Architecture, CPU model and cores, kernel, Python (and ``extra``)."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    text = (
        f"{platform.machine()} ({model}, {os.cpu_count()} cores), "
        f"kernel {platform.release()}, Python {platform.python_version()}"
    )
    return f"{text}, {extra}" if extra else text


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so that cleanup runs."""
    old = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def add_to_readme(
    path: Path,
    heading: str,
    intro: str,
    section: str,
    *,
    subheading: str = "",
    method: str = "",
) -> None:
    """Put ``section`` at the end of ``heading``'s part of the README (before
    the next ``## `` heading), so that a later run lands under its own heading
    even when other benches have added theirs since. A missing heading is
    added at the end with ``intro``; a missing ``subheading`` at the end of
    the part with ``method``."""
    text = path.read_text() if path.exists() else ""
    if heading not in text:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{intro}\n"
    start = text.index(heading)
    nxt = text.find("\n## ", start + len(heading))
    end = len(text) if nxt < 0 else nxt + 1
    part = text[start:end].rstrip("\n") + "\n"
    if subheading and subheading not in part:
        part += f"\n{subheading}\n\n{method}\n"
    part += "\n" + section.rstrip("\n") + "\n"
    path.write_text(text[:start] + part + ("\n" + text[end:] if end < len(text) else ""))
