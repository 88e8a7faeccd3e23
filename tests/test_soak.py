"""The soak script (`make soak`) still runs: a few seconds of its load, with the trend limits lifted
(a few seconds say nothing about growth; the real run is ten minutes, outside `make test`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "contrib" / "soak" / "soak.py"


@pytest.mark.slow
def test_soak_script_smoke() -> None:
    pytest.importorskip("registry_filesystem")
    result = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "4", "--sample-every", "1", "--rate", "60", "--clients", "4",
         "--max-rss-growth-mb", "1000", "--max-fd-growth", "1000"],
        capture_output=True, text=True, timeout=120,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "errors: 0 " in out and "soak: OK" in out, out[-4000:]
    rows = [line for line in out.splitlines() if line.strip().endswith(" 0") and "s " in line]
    assert len(rows) >= 4, out  # one sample a second, each with its RSS and descriptor count
    assert "'push':" in out and "RSS " in out and "fds " in out
