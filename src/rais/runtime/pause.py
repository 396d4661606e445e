"""The pause record: what a pausing agent leaves in ``state_dir`` for its next
process (``rais pause``; docs/protocol.md, "Restarting in place").

While paused the agent writes ``state_dir/pause``: the boot id and until when
(the monotonic clock, which every process of one boot shares) its pause lasts.
What each group holds is in its held file (rais.runtime.state). A new process
that finds the record of this boot with at least ``KERNEL_MARGIN`` left takes
over the held addresses that are still configured instead of removing them;
otherwise (no record, another boot, too late) it removes the leftovers as after
a crash. The record is consumed either way.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from rais.core.pause import KERNEL_MARGIN

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID) -> str:
    """This boot's id ('' where the kernel does not say)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class PauseRecord:
    """``state_dir/pause``; ``boot`` is this boot's id (tests give their own)."""

    def __init__(self, state_dir: str, boot: str) -> None:
        self.path = Path(state_dir) / "pause"
        self.boot = boot

    def write(self, until: float) -> None:
        """This agent pauses until ``until`` (monotonic seconds)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name("pause.tmp")
        tmp.write_text(json.dumps({"boot": self.boot, "until": until}) + "\n")
        os.replace(tmp, self.path)

    def take(self, now: float) -> float | None:
        """Consume the record: until when the previous process's pause lasts, if
        it is of this boot and at least ``KERNEL_MARGIN`` is left at ``now``
        (monotonic); else None."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        finally:
            self.clear()
        if not isinstance(data, dict) or not self.boot or data.get("boot") != self.boot:
            return None
        until = data.get("until")
        if not isinstance(until, int | float) or now + KERNEL_MARGIN > until:
            return None
        return float(until)

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
