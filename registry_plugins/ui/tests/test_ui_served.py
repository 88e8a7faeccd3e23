"""The UI served by `registry serve`: under ``http.prefix``, and behind the nginx recipe
(contrib/nginx/registry-cluster.conf) in front of two processes sharing one storage root, where a
delete form served by one process is accepted by the other (``ui.secret`` shared)."""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_harness import TIMEOUT, Image, Registry  # noqa: E402

from tests.nginx import nginx_cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'(?:href|action)="([^"]+)"', page)]


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def test_under_http_prefix(tmp_path):
    registry = Registry(tmp_path, "ui:\n  enabled: true\n", prefix="/reg/")
    try:
        image = Image("amd64")
        registry.push("team/app", "v1", image.manifest, image.blobs())
        registry.push("team/app", "v2", image.manifest, {})
        http = registry.http
        catalog = http.get(f"{registry.url}/reg/ui/", timeout=TIMEOUT)
        assert catalog.status_code == 200
        links = hrefs(catalog.text)
        assert links and all(link.startswith("/reg/ui/") for link in links), links
        assert "/reg/ui/r/team/app" in links
        assert http.get(f"{registry.url}/reg/ui/static/style.css", timeout=TIMEOUT).status_code == 200

        repo = http.get(f"{registry.url}/reg/ui/r/team/app", timeout=TIMEOUT).text
        assert all(link.startswith("/reg/ui/") for link in hrefs(repo))
        confirm = http.get(f"{registry.url}/reg/ui/r/team/app/-/delete", params={"tag": "v2"}, timeout=TIMEOUT)
        assert 'action="/reg/ui/r/team/app/-/delete"' in confirm.text
        done = http.post(f"{registry.url}/reg/ui/r/team/app/-/delete", timeout=TIMEOUT, allow_redirects=False,
                         data={"tag": "v2", "csrf": csrf_of(confirm.text)})
        assert done.status_code == 303 and done.headers["Location"].startswith("/reg/ui/r/team/app?deleted=v2")
        assert http.get(f"{registry.base}/v2/team/app/manifests/v2", timeout=TIMEOUT).status_code == 404
        assert http.get(f"{registry.base}/v2/team/app/manifests/v1", timeout=TIMEOUT).status_code == 200
    finally:
        registry.stop()


def test_behind_the_nginx_cluster_recipe(tmp_path):
    root = tmp_path / "shared-root"
    extra = f"ui:\n  secret: {'n' * 48}\n"
    backends = [Registry(tmp_path, extra, name=f"p{i}", root=root) for i in range(2)]
    try:
        image = Image("amd64")
        backends[0].push("lib/app", "v1", image.manifest, image.blobs())
        for tag in ("a", "b", "c", "d"):
            backends[1].push("lib/app", tag, image.manifest, {})
        with nginx_cluster(tmp_path, [b.host for b in backends]) as url, requests.Session() as s:
            s.trust_env = False
            upstreams = set()
            for tag in ("a", "b", "c", "d"):
                page = s.get(f"{url}/ui/r/lib/app", timeout=TIMEOUT)
                assert page.status_code == 200 and f'data-tag="{tag}"' in page.text
                assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
                confirm = s.get(f"{url}/ui/r/lib/app/-/delete", params={"tag": tag}, timeout=TIMEOUT)
                done = s.post(f"{url}/ui/r/lib/app/-/delete", data={"tag": tag, "csrf": csrf_of(confirm.text)},
                              timeout=TIMEOUT, allow_redirects=False)
                assert done.status_code == 303, done.text
                upstreams |= {confirm.headers["X-Registry-Upstream"], done.headers["X-Registry-Upstream"]}
                assert s.get(f"{url}/v2/lib/app/manifests/{tag}", timeout=TIMEOUT).status_code == 404
            assert len(upstreams) == 2  # forms made by one process were accepted by the other
            tags = re.findall(r'data-tag="([^"]+)"', s.get(f"{url}/ui/r/lib/app", timeout=TIMEOUT).text)
            assert tags == ["v1"]
    finally:
        for b in backends:
            b.stop()
