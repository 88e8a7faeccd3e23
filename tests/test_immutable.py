"""Immutable tags: an existing tag under a rule cannot be moved to another digest or deleted (alone
or with its manifest), re-pushing the same digest is accepted, other tags and repositories are not
affected; and hostile ``quotas``/``immutabletags`` configurations get clear errors from
``registry config check``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import falcon.testing
import pytest

from registry.app import create_app
from registry.config import ConfigError
from registry.config.settings import compile_glob, parse_size, quota_rules
from registry.plugins import create_plugin_manager
from tests.conftest import Pusher

SCRIPT = Path(sys.executable).with_name("registry")
OCI = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def c(driver) -> falcon.testing.TestClient:
    config = {"version": 0.1, "storage": {driver.name: {}, "delete": {"enabled": True}},
              "immutabletags": [{"repository": "prod/**", "tags": ["v*", "release-?"]}]}
    return falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=driver))


def denied(r, *words: str) -> None:
    assert r.status_code == 403, (r.status_code, r.text)
    (error,) = r.json["errors"]
    assert error["code"] == "DENIED"
    for w in words:
        assert w in error["message"], error["message"]


def test_overwrite_refused_same_digest_accepted(c) -> None:
    p = Pusher(c)
    d1, raw1 = p.image("prod/app", "v1", layers=(b"one",))
    # The same manifest again under the same tag: fine (clients retry pushes).
    assert c.simulate_put("/v2/prod/app/manifests/v1", body=raw1, headers={"Content-Type": OCI}).status_code == 201
    d2, raw2 = p.image("prod/app", None, layers=(b"two",))  # pushed by digest: allowed
    r = c.simulate_put("/v2/prod/app/manifests/v1", body=raw2, headers={"Content-Type": OCI})
    denied(r, "'v1'", "prod/app", "immutabletags[0]", d1, d2)
    assert r.json["errors"][0]["detail"] == {"tag": "v1", "digest": d1, "rule": 0}
    assert c.simulate_head("/v2/prod/app/manifests/v1").headers["Docker-Content-Digest"] == d1
    # A new immutable tag may be created once; tags outside the rule move freely.
    assert c.simulate_put("/v2/prod/app/manifests/release-2", body=raw2, headers={"Content-Type": OCI}).status_code == 201
    denied(c.simulate_put("/v2/prod/app/manifests/release-2", body=raw1, headers={"Content-Type": OCI}))
    for raw in (raw1, raw2, raw1):
        assert c.simulate_put("/v2/prod/app/manifests/latest", body=raw, headers={"Content-Type": OCI}).status_code == 201
        assert c.simulate_put("/v2/prod/app/manifests/release-10", body=raw,
                              headers={"Content-Type": OCI}).status_code == 201  # ? is one character
    # Other repositories are not covered.
    p.image("dev/app", "v1", layers=(b"one",))
    p.image("dev/app", "v1", layers=(b"two",))
    p.image("production", "v1", layers=(b"one",))
    p.image("production", "v1", layers=(b"two",))


def test_delete_refused(c) -> None:
    p = Pusher(c)
    d, _ = p.image("prod/team/app", "v1", layers=(b"one",))
    denied(c.simulate_delete("/v2/prod/team/app/manifests/v1"), "deleting tag 'v1'", "immutable")
    denied(c.simulate_delete(f"/v2/prod/team/app/manifests/{d}"), f"deleting manifest {d}", "'v1'")
    assert c.simulate_head("/v2/prod/team/app/manifests/v1").status_code == 200
    assert c.simulate_head(f"/v2/prod/team/app/manifests/{d}").status_code == 200
    # Untagged, or tagged only outside the rule: deletable.
    d2, _ = p.image("prod/team/app", "latest", layers=(b"two",))
    assert c.simulate_delete("/v2/prod/team/app/manifests/latest").status_code == 202
    assert c.simulate_delete(f"/v2/prod/team/app/manifests/{d2}").status_code == 202
    assert c.simulate_delete("/v2/prod/team/app/manifests/v9").status_code == 404  # no such tag: as without rules


def test_globs() -> None:
    assert compile_glob("team-a/*").match("team-a/web") and not compile_glob("team-a/*").match("team-a/web/x")
    assert compile_glob("team-a/**").match("team-a/web/x") and compile_glob("**/cache").match("cache")
    assert compile_glob("**/cache").match("a/b/cache") and not compile_glob("**/cache").match("a/bcache")
    assert compile_glob("v?", tag=True).match("v1") and not compile_glob("v?", tag=True).match("v10")
    assert (parse_size("10GiB"), parse_size("1.5 kB"), parse_size("7"), parse_size(0)) == (10 << 30, 1500, 7, 0)
    assert quota_rules({"quotas": [{"pattern": "a", "limit": "1MiB"}]})[0].limit == 1 << 20
    with pytest.raises(ConfigError, match=r"quotas\[0\].limit"):
        quota_rules({"quotas": [{"pattern": "a", "limit": "1XB"}]})


HOSTILE = {
    "version": 0.1,
    "storage": {"inmemory": None},
    "quotas": [
        {"pattern": "team-a/[abc]", "limit": "10GiB"},
        {"pattern": "ok/*", "limit": -5},
        {"pattern": "ok/*", "limit": "10 XB"},
        {"pattern": "Team/*", "limit": "1GB", "scope": "galaxy"},
        {"pattern": "/lead", "limit": "-1GiB"},
        {"limit": 5},
    ],
    "immutabletags": [{"repository": "prod/*", "tags": ["v*", "bad tag"]}, {"repository": "a/***"}],
}


@pytest.mark.skipif(not SCRIPT.exists(), reason="the registry script is not installed")
def test_hostile_config_gets_clear_errors(tmp_path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(json.dumps(HOSTILE))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    r = subprocess.run([str(SCRIPT), "config", "check", str(path)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 1, r.stdout
    lines = r.stdout.splitlines()
    expected = [
        "immutabletags[0].tags[1]: 'bad tag': ' ' cannot appear in a tag",
        "immutabletags[1].repository: 'a/***': '***' is not a pattern",
        "quotas[0].pattern: 'team-a/[abc]': '[' cannot appear in a repository name",
        "quotas[1].limit: -5 is negative",
        "quotas[2].limit: '10 XB': unknown unit 'XB'",
        "quotas[3].pattern: 'Team/*': 'T' cannot appear in a repository name",
        "quotas[3].scope: 'galaxy' is not one of ['repository', 'namespace']",
        "quotas[4].limit: '-1GiB' is negative",
        "quotas[4].pattern: '/lead' can never match",
        "quotas[5]: 'pattern' is a required property",
    ]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
    assert "Traceback" not in r.stdout + r.stderr
    # And `registry serve` refuses it the same way.
    r = subprocess.run([str(SCRIPT), "serve", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "quotas[2].limit: '10 XB': unknown unit 'XB'" in r.stderr
