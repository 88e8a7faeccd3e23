"""``registry du``: exact bytes per repository on repositories sharing blobs (checked against what
was pushed), the total counting shared blobs once, prefixes, the command's table and JSON, and
``--rebuild`` making the quota counters equal to the walk."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import falcon.testing
import pytest

from registry.app import create_app
from registry.ops.quota import read_usage
from registry.ops.usage import disk_usage, format_table, rebuild_counters, split_arguments
from registry.plugins import create_plugin_manager
from registry.storage.store import Store
from tests.conftest import Pusher, sha256

SCRIPT = Path(sys.executable).with_name("registry")


class Expected:
    """What a push put in each repository, computed from the pushed bytes themselves."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, int]] = {}

    def add(self, repo: str, blob: bytes) -> None:
        self.repos.setdefault(repo, {})[sha256(blob)] = len(blob)

    def total(self, repos=None) -> int:
        union: dict[str, int] = {}
        for name, blobs in self.repos.items():
            if repos is None or name in repos:
                union.update(blobs)
        return sum(union.values())


def push_shared_set(c: falcon.testing.TestClient) -> Expected:
    """Three repositories sharing a base layer, one sharing a whole image, one re-pushing a blob."""
    rnd = random.Random(7)
    base, app1, app2 = rnd.randbytes(3000), rnd.randbytes(1234), rnd.randbytes(777)
    p, exp = Pusher(c), Expected()
    for repo, layers in (("team-a/web", (base, app1)), ("team-a/api", (base, app2)), ("solo", (app2,)),
                         ("team-a/web", (base,))):
        d, raw = p.image(repo, tag=f"t{len(layers)}", layers=layers)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        for blob in (config, raw, *layers):
            exp.add(repo, blob)
    p.blob("solo", app2)  # already linked: counted once
    return exp


def test_du_exact_on_shared_blobs(driver) -> None:
    config = {"version": 0.1, "storage": {driver.name: {}}}
    c = falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=driver))
    exp = push_shared_set(c)
    report = disk_usage(Store(driver))
    got = {r.name: r.bytes for r in report.repositories}
    assert got == {name: sum(blobs.values()) for name, blobs in exp.repos.items()}
    assert {r.name: r.blobs for r in report.repositories} == {n: len(b) for n, b in exp.repos.items()}
    assert report.total_bytes == exp.total() < sum(got.values())  # shared blobs once in the total
    # Biggest first.
    assert [r.bytes for r in report.repositories] == sorted(got.values(), reverse=True)
    team = disk_usage(Store(driver), ["team-a"])
    assert [r.name for r in team.repositories] == ["team-a/web", "team-a/api"]
    assert team.total_bytes == exp.total({"team-a/web", "team-a/api"})
    assert disk_usage(Store(driver), ["team"]).repositories == []  # a prefix is whole components
    rows = format_table(report)
    assert rows[0] == ("REPOSITORY", "SIZE", "BYTES", "BLOBS") and rows[-1][2] == str(exp.total())


def test_rebuild_makes_counters_equal_to_the_walk(driver) -> None:
    plain = {"version": 0.1, "storage": {driver.name: {}, "delete": {"enabled": True}}}
    c = falcon.testing.TestClient(create_app(plain, create_plugin_manager(), driver=driver))
    exp = push_shared_set(c)  # pushed without quotas: no counters
    assert read_usage(driver, "team-a") == (0, 0)
    rebuild_counters(Store(driver))
    for name, blobs in exp.repos.items():
        assert read_usage(driver, name)[0] == sum(blobs.values())
    team = sum(sum(exp.repos[n].values()) for n in ("team-a/web", "team-a/api"))
    assert read_usage(driver, "team-a") == (0, team)
    # Now counted incrementally on top of the base, and a second rebuild agrees with that.
    quota = {**plain, "quotas": [{"pattern": "team-a", "scope": "namespace", "limit": team + 100}]}
    c = falcon.testing.TestClient(create_app(quota, create_plugin_manager(), driver=driver))
    Pusher(c).blob("team-a/new", b"x" * 60)
    r = c.simulate_post("/v2/team-a/new/blobs/uploads/", params={"digest": sha256(b"y" * 60)}, body=b"y" * 60)
    assert r.status_code == 403 and r.json["errors"][0]["code"] == "DENIED"
    assert read_usage(driver, "team-a") == (0, team + 60)
    rebuild_counters(Store(driver))
    assert read_usage(driver, "team-a") == (0, team + 60)


def test_split_arguments() -> None:
    assert split_arguments(["config.yml", "a"], lambda p: False) == ("config.yml", ["a"])
    assert split_arguments(["team-a", "b"], lambda p: False) == (None, ["team-a", "b"])
    assert split_arguments(["cfg"], lambda p: p == "cfg") == ("cfg", [])


@pytest.mark.skipif(not SCRIPT.exists(), reason="the registry script is not installed")
def test_du_command_on_filesystem(tmp_path) -> None:
    pytest.importorskip("registry_filesystem")
    root = tmp_path / "root"
    config = {"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(root)}},
              "quotas": [{"pattern": "**", "limit": "1GiB"}]}
    c = falcon.testing.TestClient(create_app(config, create_plugin_manager()))
    exp = push_shared_set(c)
    path = tmp_path / "config.yml"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}

    def du(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([str(SCRIPT), "du", *args], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return r

    out = json.loads(du(str(path), "--json").stdout)
    assert {r["name"]: r["bytes"] for r in out["repositories"]} == {n: sum(b.values()) for n, b in exp.repos.items()}
    assert out["total"] == {"bytes": exp.total(), "blobs": len({d for b in exp.repos.values() for d in b}),
                            "repositories": 3}
    lines = du(str(path), "team-a").stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "SIZE", "BYTES", "BLOBS"]
    assert [line.split()[0] for line in lines[1:3]] == ["team-a/web", "team-a/api"]
    assert lines[-1].startswith("TOTAL") and str(exp.total({"team-a/web", "team-a/api"})) in lines[-1]
    env["REGISTRY_CONFIGURATION_PATH"] = str(path)  # the configuration from the environment, only a prefix given
    assert json.loads(du("solo", "--json").stdout)["total"]["bytes"] == exp.total({"solo"})
    r = du("--rebuild")
    assert "rebuilt the usage counters of 3 repositories" in r.stdout
    assert read_usage(c.app.registry_context.store.driver, "team-a/web")[0] == sum(exp.repos["team-a/web"].values())
    bad = subprocess.run([str(SCRIPT), "du", "Not_A/Name"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "not a repository name" in bad.stderr
