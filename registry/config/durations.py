"""Go durations, as Distribution writes them (``500ms``, ``2h45m``)."""

from __future__ import annotations

import re
from typing import Any

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: Any) -> float:
    """A Go duration (``500ms``, ``1h30m``) in seconds; a bare number is nanoseconds, as in Distribution.

    :raises ValueError: for anything else (Go also refuses a unitless string other than ``0``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration {value!r}")
    if not isinstance(value, str):
        return value / 1e9
    text, sign = value.strip(), 1.0
    if text[:1] in ("+", "-"):
        sign, text = (-1.0 if text[0] == "-" else 1.0), text[1:]
    if text == "0":
        return 0.0
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"invalid duration {value!r}")
    return sign * total
