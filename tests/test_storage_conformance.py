"""The exported driver suite: on the inmemory driver by subclassing, and installed, by name, through
``pytest --pyargs registry.testing.conformance`` the way a plugin author or an operator runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from registry.storage.inmemory import InMemoryDriver
from registry.testing.conformance import DriverSuite


class TestInMemoryConformance(DriverSuite):
    @pytest.fixture
    def driver(self) -> InMemoryDriver:
        return InMemoryDriver()


def run_pyargs(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run the suite in a fresh interpreter, as ``pytest --pyargs`` from any directory."""
    command = [sys.executable, "-m", "pytest", "--pyargs", "registry.testing.conformance", *options]
    return subprocess.run(
        [*command, "-q", "-p", "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )


def passed(result: subprocess.CompletedProcess[str]) -> int:
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not re.search(r"\d+ (failed|error)", summary), summary
    match = re.search(r"(\d+) passed", summary)
    assert match, summary
    return int(match.group(1))


def write_yaml(path: Path, mapping: dict) -> Path:
    path.write_text(json.dumps(mapping))  # JSON is YAML
    return path


@pytest.mark.slow
def test_pyargs_on_filesystem(tmp_path: Path) -> None:
    pytest.importorskip("registry_filesystem")
    root = tmp_path / "root"
    config = write_yaml(tmp_path / "fs.yaml", {"rootdirectory": str(root)})
    result = run_pyargs(tmp_path, "--registry-storage-driver=filesystem", f"--registry-storage-config={config}")
    assert passed(result) >= 30
    # The suite ran here, and every test removed its prefix: only the (empty) temp directory remains.
    assert [p.name for p in root.iterdir()] == [".tmp~"]
    assert list((root / ".tmp~").iterdir()) == []


@pytest.mark.slow
def test_pyargs_without_options_tests_inmemory(tmp_path: Path) -> None:
    assert passed(run_pyargs(tmp_path)) >= 30


def test_pyargs_refuses_an_unknown_driver_once(tmp_path: Path) -> None:
    result = run_pyargs(tmp_path, "--registry-storage-driver=no-such-driver")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "no such storage driver is installed (installed: " in result.stderr
    assert "inmemory" in result.stderr


def test_pyargs_refuses_a_config_that_is_not_a_mapping(tmp_path: Path) -> None:
    config = tmp_path / "list.yaml"
    config.write_text("- rootdirectory\n")
    result = run_pyargs(tmp_path, "--registry-storage-driver=inmemory", f"--registry-storage-config={config}")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "must hold a mapping of driver parameters" in result.stderr


def test_pytest_plugin_is_import_light() -> None:
    """Loaded into every pytest run where the registry is installed: it must cost nothing."""
    code = (
        "import sys; import registry.testing.pytest_plugin; "
        "heavy = {'yaml', 'jsonschema', 'stevedore', 'falcon', 'registry.plugins', 'registry.testing.conformance'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
