"""Wheels of the core and of every plugin build, install into a fresh virtual environment, and load:
`registry plugins` there lists every one, with the descriptions of their drivers, and the composed
configuration schema knows their sections. This is what `pip install registry registry-s3 ...` gives a
user, not the editable checkout the other tests run in.

Our wheels are installed with --no-index from the freshly built dist/ (a name like `registry` must
never resolve to something else on an index); their third-party dependencies come from the
package index (pip's cache makes a second run quick).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600
PLUGIN_DIRS = sorted(p.parent for p in [*ROOT.glob("registry_plugins/*/pyproject.toml"),
                                        *ROOT.glob("contrib/plugins/*/pyproject.toml")])


def _project(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())["project"]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _run(cmd: list[str], extra_env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    env.update(extra_env or {})
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, **kw)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_wheels_install_into_a_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    projects = [ROOT, *PLUGIN_DIRS]
    # One build backend for all of them (what each pyproject's build-system asks for), instead of an
    # isolated build environment per project: the same wheels, in a third of the time.
    backend = tmp_path / "backend"
    requires = sorted({r for p in projects for r in tomllib.loads((p / "pyproject.toml").read_text())
                       ["build-system"]["requires"]})
    _run([sys.executable, "-m", "pip", "install", "-q", "--target", str(backend), *requires])
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
          *map(str, projects)], extra_env={"PYTHONPATH": str(backend)})
    wheels = sorted(dist.glob("*.whl"))
    names = {_project(p)["name"] for p in projects}
    built = {_normal(w.name.split("-")[0]) for w in wheels}
    assert built == {_normal(n) for n in names}, (built, names)
    # Package data ships: the core's schemas, every plugin's schema.json.
    with zipfile.ZipFile(next(w for w in wheels if w.name.startswith("registry-0"))) as zf:
        assert "registry/schemas/config.json" in zf.namelist()

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", *map(str, wheels)])
    # Their dependencies (not ours: those are installed), then a consistency check.
    ours = {_normal(n) for n in names}
    r = _run([py, "-c", "import json, importlib.metadata as m; print(json.dumps("
              "[r for d in m.distributions() for r in (d.requires or []) if 'extra ==' not in r]))"])
    requirements = sorted({req for req in json.loads(r.stdout)
                           if _normal(re.match(r"\s*([A-Za-z0-9._-]+)", req).group(1)) not in ours})
    if requirements:
        _run([py, "-m", "pip", "install", "-q", *requirements])
    _run([py, "-m", "pip", "check"])
    print(f"{len(wheels)} wheels, {len(requirements)} requirements")

    registry = str(venv / "bin" / "registry")
    listed = json.loads(_run([registry, "plugins", "--json"], cwd=tmp_path).stdout)
    by_dist = {p["distribution"]: p for p in listed}
    for name in names - {"registry"}:
        assert name in by_dist, f"{name} installed from its wheel but not loaded: {sorted(by_dist)}"
    assert by_dist["registry-filesystem"]["descriptions"]["filesystem"]
    # Loaded from site-packages, not from this checkout.
    where = _run([py, "-c", "import registry, registry_s3; print(registry.__file__, registry_s3.__file__)"],
                 cwd=tmp_path).stdout
    assert str(ROOT) not in where and str(venv) in where, where
    schema = json.loads(_run([registry, "config", "schema"], cwd=tmp_path).stdout)
    assert {"s3", "azure", "rgw", "filesystem"} <= set(schema["properties"]["storage"]["properties"])
    assert {"htpasswd", "token"} <= set(schema["properties"]["auth"]["properties"])
    assert _run([registry, "config", "check"], cwd=tmp_path).stdout.strip() == "OK"
