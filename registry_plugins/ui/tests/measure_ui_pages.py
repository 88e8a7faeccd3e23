"""Times the UI's pages on `registry serve` (filesystem driver): the catalog of 100,000 repositories
(bench's nested tree, 100 per namespace) and a repository of 1,000 tags. Not a test; run from the
repository's root: ``.venv/bin/python registry_plugins/ui/tests/measure_ui_pages.py [WORKDIR]``.
The numbers in docs/ui.md ("How much each page costs") come from it."""

from __future__ import annotations

import hashlib
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[2]), str(HERE)]

from ui_harness import Image, Registry  # noqa: E402

from bench.workloads import build_catalog_tree, catalog_names  # noqa: E402

REPOS, TAGS, RUNS = 100_000, 1_000, 15


def main() -> int:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="ui-measure-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "root"
    t = time.monotonic()
    layer = "sha256:" + hashlib.sha256(b"bench catalog layer").hexdigest()
    build_catalog_tree(root, catalog_names(REPOS, "nested"), layer)
    print(f"tree of {REPOS:,} repositories ready in {time.monotonic() - t:.1f}s")
    registry = Registry(work, "log:\n  accesslog:\n    disabled: true\nui:\n  enabled: true\n", root=root)
    try:
        image = Image("amd64")
        registry.push("big/tags", "seed", image.manifest, image.blobs())
        for i in range(TAGS):
            r = registry.http.put(f"{registry.url}/v2/big/tags/manifests/t{i:04d}", data=image.manifest, timeout=30,
                                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 201, r.text

        def median_ms(label: str, path: str, params: dict[str, str], pattern: str) -> None:
            registry.http.get(registry.url + path, params=params, timeout=60)  # warm-up
            times = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                resp = registry.http.get(registry.url + path, params=params, timeout=60)
                times.append((time.perf_counter() - t0) * 1000)
                assert resp.status_code == 200, resp.text
            shown = len(re.findall(pattern, resp.text)) if pattern else 0
            suffix = f", {shown} shown" if pattern else ""
            print(f"{label}: {statistics.median(times):.1f} ms median of {RUNS}{suffix}")

        repo = 'class="repository"'
        median_ms(f"catalog first page n=100 of {REPOS + 1:,}", "/ui/", {"n": "100"}, repo)
        median_ms("catalog page in the middle", "/ui/", {"n": "100", "last": "team-0500/app-050049"}, repo)
        median_ms("catalog prefix search q=team-0999/", "/ui/", {"n": "100", "q": "team-0999/"}, repo)
        median_ms(f"repository page n=50 of {TAGS + 1:,} tags", "/ui/r/big/tags", {"n": "50"}, "data-tag=")
        median_ms("repository page in the middle", "/ui/r/big/tags", {"n": "50", "last": "t0500"}, "data-tag=")
        median_ms("manifest page", "/ui/r/big/tags/-/m/t0001", {}, "")
        median_ms("(the API) /v2/_catalog?n=100", "/v2/_catalog", {"n": "100"}, "")
    finally:
        registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
