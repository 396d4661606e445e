"""Durations as operators write them: "100ms", "1.5s", "2m", "1h", "1d" (or bare seconds)."""

from __future__ import annotations

import re

_UNITS = {"us": 0.000001, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError with a readable message."""
    m = _RE.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (write e.g. 100ms, 2s, 5m, 1h)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]
