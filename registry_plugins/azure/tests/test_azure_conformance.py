"""The exported driver suite against Azurite, run the way an operator runs it:
``pytest --pyargs registry.testing.conformance --registry-storage-driver=azure --registry-storage-config=FILE``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_exported_suite_passes_on_azurite(azurite, container_name: str, tmp_path: Path) -> None:
    config = tmp_path / "azure.yaml"
    # A small block size, so that the suite's multi-MiB writes span several staged blocks.
    config.write_text(json.dumps(azurite.options(container_name, rootdirectory="suite/root", blocksize=1 << 20)))
    command = [sys.executable, "-m", "pytest", "--pyargs", "registry.testing.conformance",
               "--registry-storage-driver=azure", f"--registry-storage-config={config}", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert not re.search(r"\d+ (failed|error)", summary), summary
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 80, summary
