"""The documentation site builds with `mkdocs build --strict`: a broken link, a missing anchor or a
nav entry without its page fails `make test`. Pages left out of the nav do not (MkDocs notes them at
INFO level), so a page can land before the nav line that lists it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = [sys.executable, "-m", "mkdocs"]
BUILD_TIMEOUT = 180


def _have_mkdocs() -> bool:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _have_mkdocs() and not os.environ.get("CI"),
    reason="mkdocs/mkdocs-material not installed: pip install -e '.[docs]' (make install does)",
)


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([*MKDOCS, "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT)


def test_site_builds_strictly(tmp_path):
    r = build(ROOT / "mkdocs.yml", tmp_path / "site")
    warnings = [line for line in r.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert r.returncode == 0 and not warnings, r.stderr[-6000:]
    index = (tmp_path / "site" / "index.html").read_text()
    assert "Quickstart" in index
    # Every page of docs/ is built, in the nav or not.
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert (tmp_path / "site" / page.stem / "index.html").is_file() or page.stem == "index", page.name


def _mini_site(tmp_path: Path, pages: dict[str, str], nav: list) -> Path:
    """A site with the project's mkdocs.yml settings (validation, hooks) and these pages."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in pages.items():
        (docs / name).write_text(text)
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    config["nav"] = nav
    config["hooks"] = [str(ROOT / h) for h in config.get("hooks", [])]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "link, found",
    [
        ("[x](missing.md)", "missing.md"),
        ("[x](other.md#no-such-heading)", "no-such-heading"),
        ("[x](../no/such/file.py)", "no/such/file.py"),
    ],
)
def test_a_broken_link_fails_the_build(tmp_path, link, found):
    config = _mini_site(tmp_path, {"index.md": f"# Home\n\n{link}\n", "other.md": "# Other\n\n## Real\n"},
                        ["index.md", "other.md"])
    r = build(config, tmp_path / "site")
    assert r.returncode != 0, r.stderr
    assert found in r.stderr


def test_a_page_outside_the_nav_does_not_fail(tmp_path):
    config = _mini_site(tmp_path, {"index.md": "# Home\n\n[ok](other.md#real)\n", "other.md": "# Other\n\n## Real\n",
                                   "extra.md": "# Not in the nav yet\n"}, ["index.md", "other.md"])
    r = build(config, tmp_path / "site")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "site" / "extra" / "index.html").is_file()


def test_make_docs_targets_exist():
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    r = subprocess.run([make, "-n", "-C", str(ROOT), "docs"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "mkdocs serve" in r.stdout and "127.0.0.1" in r.stdout, r.stdout + r.stderr
