"""Pins the storage layout: these are Distribution's paths, byte for byte (see paths.go)."""

from __future__ import annotations

import pytest

from registry.digests import Digest
from registry.storage import paths
from registry.storage.checked import validate_path

H = "4d3c" + "0" * 60
D = Digest("sha256", H)
R = "/docker/registry/v2/repositories"

TABLE = [
    (paths.blob_data(D), f"/docker/registry/v2/blobs/sha256/4d/{H}/data"),
    (paths.layer_link("lib/app", D), f"{R}/lib/app/_layers/sha256/{H}/link"),
    (paths.revision_link("lib/app", D), f"{R}/lib/app/_manifests/revisions/sha256/{H}/link"),
    (paths.tags_dir("lib/app"), f"{R}/lib/app/_manifests/tags"),
    (paths.tag_current_link("lib/app", "v1.0"), f"{R}/lib/app/_manifests/tags/v1.0/current/link"),
    (paths.tag_index_link("lib/app", "v1.0", D), f"{R}/lib/app/_manifests/tags/v1.0/index/sha256/{H}/link"),
    (paths.upload_data("lib/app", "u-1"), f"{R}/lib/app/_uploads/u-1/data"),
    (paths.upload_started_at("lib/app", "u-1"), f"{R}/lib/app/_uploads/u-1/startedat"),
    (paths.upload_hashstate("lib/app", "u-1", "sha256", 42), f"{R}/lib/app/_uploads/u-1/pyhashstate-sha256-42"),
    (paths.referrer_link("lib/app", D, D), f"{R}/lib/app/_referrers/sha256/{H}/sha256/{H}/link"),
    (paths.repository("a/b/c"), f"{R}/a/b/c"),
    (paths.usage_file("lib", "w-host-42"), f"{R}/lib/_usage/w-host-42"),
    (paths.revisions_dir("lib/app"), f"{R}/lib/app/_manifests/revisions"),
    (paths.quarantine_blob(D), f"/docker/registry/v2/_quarantine/blobs/sha256/{H}/data"),
    (paths.gc_probe("p-1"), "/docker/registry/v2/_gc/p-1"),
    (paths.referrers_root("lib/app"), f"{R}/lib/app/_referrers"),
    (paths.tag_index_dir("lib/app", "v1.0"), f"{R}/lib/app/_manifests/tags/v1.0/index"),
]


@pytest.mark.parametrize("built,expected", TABLE, ids=[t[1].rsplit("/", 3)[-3] for t in TABLE])
def test_layout(built: str, expected: str) -> None:
    assert built == expected
    assert validate_path(built) == built


def test_our_hash_states_never_collide_with_distributions() -> None:
    # Distribution keeps Go-encoded states under hashstates/; ours must not share that name.
    assert "/hashstates/" not in paths.upload_hashstate("r", "u", "sha256", 1)
