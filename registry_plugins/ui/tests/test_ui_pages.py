"""The UI's pages in-process: what each shows, escaping, paging, bounded storage work, deletes with
their CSRF token, and the access controller deciding what each viewer sees (htpasswd with rules)."""

from __future__ import annotations

import html
import re
import sys
import urllib.parse
from pathlib import Path

import markupsafe
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_harness import (  # noqa: E402
    HOSTILE,
    OCI_INDEX,
    SBOM_TYPE,
    SIGNATURE_TYPE,
    Image,
    api_push,
    artifact,
    basic,
    index_of,
    push_image,
    sha256,
    ui_app,
    write_auth_files,
)

from registry.digests import parse_digest  # noqa: E402


def hrefs(page: str) -> list[str]:
    return [urllib.parse.unquote(html.unescape(h)) for h in re.findall(r'href="([^"]+)"', page)]


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF field in the form"
    return m.group(1)


@pytest.fixture
def populated():
    amd, arm = Image("amd64"), Image("arm64", "v8", labels={"org.example.note": HOSTILE})
    with ui_app() as (client, app, counter):
        push_image(client, "library/app", "amd", amd)
        push_image(client, "library/app", "arm", arm)
        index = index_of([amd, arm], {"org.example.description": HOSTILE})
        api_push(client, "library/app", "multi", index, media_type=OCI_INDEX)
        sig, sig_blobs = artifact(amd.manifest, SIGNATURE_TYPE, b"signature", {"org.example.sig": HOSTILE})
        api_push(client, "library/app", sha256(sig), sig, sig_blobs)
        sbom, sbom_blobs = artifact(amd.manifest, SBOM_TYPE, b'{"spdxVersion": "SPDX-2.3"}')
        api_push(client, "library/app", sha256(sbom), sbom, sbom_blobs)
        sbom_sig, sbom_sig_blobs = artifact(sbom, SIGNATURE_TYPE, b"signature of the sbom")
        api_push(client, "library/app", sha256(sbom_sig), sbom_sig, sbom_sig_blobs)
        yield client, {"amd": amd, "arm": arm, "index": index, "sig": sig, "sbom": sbom, "sbom_sig": sbom_sig}


def test_catalog_repository_index_manifest_and_referrers(populated):
    client, it = populated
    catalog = client.simulate_get("/ui/")
    assert catalog.status_code == 200
    assert "/ui/r/library/app" in hrefs(catalog.text)

    repo = client.simulate_get("/ui/r/library/app")
    assert repo.status_code == 200
    rows = dict(re.findall(r'<tr class="tag" data-tag="([^"]+)">(.*?)</tr>', repo.text, re.S))
    assert sorted(rows) == ["amd", "arm", "multi"]
    assert "linux/amd64" in rows["multi"] and "linux/arm64/v8" in rows["multi"]
    assert OCI_INDEX in rows["multi"]
    amd = it["amd"]
    amd_total = len(amd.manifest) + len(amd.config) + len(amd.layer)
    assert f"{amd_total / 1024:.1f} KiB" in rows["amd"] or f"{amd_total} B" in rows["amd"]
    assert 'datetime="2024-05-06T07:08:09+00:00"' in rows["amd"]  # the config's created
    assert 'title="2024-05-06 07:08:09 UTC"' in rows["amd"]
    assert "docker pull falconframework.org/library/app:amd" in repo.text
    assert "podman pull falconframework.org/library/app:amd" in repo.text

    index_page = client.simulate_get("/ui/r/library/app/-/m/multi")
    assert index_page.status_code == 200
    children = re.findall(r'<tr class="child"><td class="child-platform">([^<]+)</td>', index_page.text)
    assert children == ["linux/amd64", "linux/arm64/v8"]
    assert f"/ui/r/library/app/-/m/{amd.digest}" in hrefs(index_page.text)
    arm = it["arm"]
    index_total = len(it["index"]) + sum(len(i.manifest) + len(i.config) + len(i.layer) for i in (amd, arm))
    assert f'id="total-size" title="{index_total} bytes"' in index_page.text
    assert f"skopeo copy --all docker://falconframework.org/library/app@{sha256(it['index'])}" in index_page.text

    page = client.simulate_get(f"/ui/r/library/app/-/m/{amd.digest}").text
    assert f'title="{len(amd.layer)} bytes"' in page
    assert 'id="platform">linux/amd64<' in page
    tree = page[page.index('id="referrers"'):]
    # Grouped by artifact type, sorted; the SBOM's own signature nested under it.
    assert tree.index(SBOM_TYPE) < tree.index(SIGNATURE_TYPE)
    sbom_item = tree[tree.index(sha256(it["sbom"])[:19]):]
    assert SIGNATURE_TYPE in sbom_item and sha256(it["sbom_sig"])[:19] in sbom_item
    for ref in ("sig", "sbom", "sbom_sig"):
        assert f"/ui/r/library/app/-/m/{sha256(it[ref])}" in hrefs(page)

    sig_page = client.simulate_get(f"/ui/r/library/app/-/m/{sha256(it['sig'])}").text
    assert f'id="subject" href="/ui/r/library/app/-/m/{amd.digest}"' in sig_page
    assert f'id="artifact-type">{SIGNATURE_TYPE}<' in sig_page


def test_hostile_values_are_escaped(populated):
    client, it = populated
    escaped = str(markupsafe.escape(HOSTILE))
    pages = [client.simulate_get("/ui/r/library/app/-/m/multi").text,
             client.simulate_get(f"/ui/r/library/app/-/m/{sha256(it['sig'])}").text,
             client.simulate_get(f"/ui/r/library/app/-/m/{it['arm'].digest}").text]
    for page in pages:
        assert "<script>window.__pwned" not in page and "<img src=x" not in page
        assert escaped in page  # shown, as text
    # Names and tags cannot carry markup (the spec's grammar), and the UI refuses what does not fit it.
    r = client.simulate_get("/ui/r/<script>/-/m/latest")
    assert r.status_code == 404 and "<script>" not in r.text
    r = client.simulate_get("/ui/", params={"q": "<script>alert(1)</script>"})
    assert r.status_code == 400 and "<script>alert" not in r.text


def test_security_headers_on_every_page(populated):
    client, it = populated
    for path in ("/ui/", "/ui/r/library/app", "/ui/r/library/app/-/m/amd", "/ui/r/nope",
                 "/ui/r/library/app/-/delete?tag=amd", "/ui/static/style.css"):
        r = client.simulate_get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script" not in client.simulate_get("/ui/r/library/app").text  # no script at all: CSP holds


def test_prefix_search_and_pagination():
    names = ["a", "a/b", "a/b/c", "a-b", "ab", "abc/d", "b", "b/a", "c"]
    image = Image("amd64")
    with ui_app() as (client, app, counter):
        for name in names:
            push_image(client, name, "v1", image)

        def walk(q: str, n: int) -> list[str]:
            seen, params = [], {"q": q, "n": str(n)}
            for _ in range(20):
                page = client.simulate_get("/ui/", params=params).text
                seen += [html.unescape(x) for x in re.findall(r'class="repository" href="/ui/r/[^"]+">([^<]+)<', page)]
                nxt = re.search(r'id="next" rel="next" href="([^"]+)"', page)
                if not nxt:
                    return seen
                params = dict(re.findall(r"[?&]([a-z]+)=([^&]*)", html.unescape(nxt.group(1))))
                params = {k: urllib.parse.unquote(v) for k, v in params.items()}
            raise AssertionError("pagination did not end")

        everything = walk("", 2)
        assert everything == names  # path order: a, a/b, a/b/c, a-b, ...
        assert walk("a", 2) == ["a", "a/b", "a/b/c", "a-b", "ab", "abc/d"]
        assert walk("a/", 1) == ["a/b", "a/b/c"]
        assert walk("ab", 5) == ["ab", "abc/d"]
        assert walk("b/", 5) == ["b/a"]
        assert walk("zz", 5) == []


def _populate_catalog(app, count: int) -> None:
    store = app.registry_context.store
    raw = Image("amd64").manifest
    d = parse_digest(sha256(raw))
    for i in range(count):
        store.put_manifest(f"org{i % 10}/repo{i:05d}", d, raw)


@pytest.mark.parametrize("page_size", [20])
def test_catalog_page_storage_calls_do_not_grow_with_the_catalog(page_size):
    calls = {}
    for count in (200, 3000):
        with ui_app() as (client, app, counter):
            _populate_catalog(app, count)
            client.simulate_get("/ui/", params={"n": str(page_size)})  # warm the listing cache
            before = counter.total()
            page = client.simulate_get("/ui/", params={"n": str(page_size), "last": "org3/repo00013"})
            assert page.status_code == 200
            assert len(re.findall(r'class="repository"', page.text)) == page_size
            calls[count] = counter.total() - before
    print("catalog page storage calls", calls)
    assert calls[3000] <= calls[200] + 2, calls
    assert calls[3000] <= 6 * page_size + 10, calls


def test_repository_page_reads_only_its_tags():
    calls = {}
    images = [Image("amd64", payload=f"payload {i}".encode()) for i in range(3)]
    for count in (100, 1000):
        with ui_app() as (client, app, counter):
            store = app.registry_context.store
            for image in images:
                push_image(client, "big/repo", "seed", image)
            for i in range(count):
                image = images[i % 3]
                store.tag("big/repo", f"t{i:04d}", parse_digest(image.digest))
            client.simulate_get("/ui/r/big/repo", params={"n": "25"})  # the config summaries, cached
            before = counter.total()
            page = client.simulate_get("/ui/r/big/repo", params={"n": "25", "last": "t0050"})
            assert page.status_code == 200
            tags = re.findall(r'data-tag="([^"]+)"', page.text)
            assert tags == [f"t{i:04d}" for i in range(51, 76)]
            calls[count] = counter.total() - before
            assert dict(counter.calls)  # counted at all
    # One listing of the tag names, then per shown tag: its link and the manifest's revision link.
    print("repository page storage calls", calls)
    assert calls[1000] == calls[100], calls
    assert calls[1000] <= 3 * 25 + 10, calls


def test_delete_a_tag_and_a_manifest_with_confirmation(populated):
    client, it = populated
    confirm = client.simulate_get("/ui/r/library/app/-/delete", params={"tag": "arm"})
    assert confirm.status_code == 200 and 'id="confirm-delete"' in confirm.text
    token = csrf_of(confirm.text)
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    missing = client.simulate_post("/ui/r/library/app/-/delete", body="tag=arm", headers=form)
    forged = client.simulate_post("/ui/r/library/app/-/delete", body="tag=arm&csrf=1.abc", headers=form)
    other_repo = client.simulate_post("/ui/r/library/other/-/delete", body=f"tag=arm&csrf={token}", headers=form)
    cross_site = client.simulate_post("/ui/r/library/app/-/delete", body=f"tag=arm&csrf={token}",
                                      headers={**form, "Origin": "http://evil.example"})
    assert [r.status_code for r in (missing, forged, other_repo, cross_site)] == [403] * 4
    assert client.simulate_get("/v2/library/app/manifests/arm").status_code == 200

    done = client.simulate_post("/ui/r/library/app/-/delete", body=f"tag=arm&csrf={token}", headers=form)
    assert done.status_code == 303 and done.headers["Location"].startswith("/ui/r/library/app?deleted=arm")
    assert client.simulate_get("/v2/library/app/manifests/arm").status_code == 404
    # The manifest stays, by digest.
    assert client.simulate_get(f"/v2/library/app/manifests/{it['arm'].digest}").status_code == 200
    assert 'data-tag="arm"' not in client.simulate_get("/ui/r/library/app").text

    digest = it["amd"].digest
    page = client.simulate_get(f"/ui/r/library/app/-/m/{digest}").text
    assert f"/ui/r/library/app/-/delete?digest={digest}" in hrefs(page)
    done = client.simulate_post("/ui/r/library/app/-/delete", body=f"digest={digest}&csrf={token}", headers=form)
    assert done.status_code == 303
    assert client.simulate_get(f"/v2/library/app/manifests/{digest}").status_code == 404
    assert client.simulate_get("/v2/library/app/manifests/amd").status_code == 404  # its tags went with it


def test_no_delete_without_storage_delete_enabled():
    with ui_app(delete=False) as (client, app, counter):
        push_image(client, "x/y", "v1", Image("amd64"))
        repo = client.simulate_get("/ui/r/x/y").text
        assert "/-/delete" not in repo
        assert client.simulate_get("/ui/r/x/y/-/delete", params={"tag": "v1"}).status_code == 403
        r = client.simulate_post("/ui/r/x/y/-/delete", body="tag=v1&csrf=0.0",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code in (403, 405)
        assert client.simulate_get("/v2/x/y/manifests/v1").status_code == 200


@pytest.fixture
def htpasswd_app(tmp_path):
    htpasswd, rules = write_auth_files(tmp_path / "auth")
    config = {"auth": {"htpasswd": {"realm": "ui-test", "path": str(htpasswd), "rules": str(rules)}}}
    with ui_app(config, ui={"secret": "s" * 40}) as (client, app, counter):
        image = Image("amd64")
        for name, user in (("public/tools", "alice"), ("alice/app", "alice"), ("bob/app", "bob")):
            push_image(client, name, "v1", image, headers=basic(user)) if name != "public/tools" else None
        # public/ is pullable by anyone, pushable by nobody: its content is put through the store.
        store = app.registry_context.store
        d = parse_digest(image.digest)
        store.put_manifest("public/tools", d, image.manifest)
        store.tag("public/tools", "v1", d)
        yield client, app


def names_in(page: str) -> list[str]:
    return re.findall(r'class="repository" href="/ui/r/[^"]+">([^<]+)<', page)


def test_htpasswd_each_viewer_sees_what_the_rules_let_them_pull(htpasswd_app):
    client, app = htpasswd_app
    assert names_in(client.simulate_get("/ui/").text) == ["public/tools"]
    assert names_in(client.simulate_get("/ui/", headers=basic("alice")).text) == ["alice/app", "public/tools"]
    assert names_in(client.simulate_get("/ui/", headers=basic("bob")).text) == ["alice/app", "bob/app",
                                                                               "public/tools"]

    anonymous = client.simulate_get("/ui/r/alice/app")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == 'Basic realm="ui-test"'
    assert "v1" not in re.sub(r"<[^>]+>", "", anonymous.text.split("<main>")[1])
    login = client.simulate_get("/ui/login")
    assert login.status_code == 401 and login.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = client.simulate_get("/ui/", headers={"Authorization": "Basic YWxpY2U6d3Jvbmc="})
    assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers

    alice = client.simulate_get("/ui/r/alice/app", headers=basic("alice")).text
    assert 'id="identity">alice<' in alice and "/ui/r/alice/app/-/delete?tag=v1" in hrefs(alice)


def test_htpasswd_bob_cannot_delete_alices_tag(htpasswd_app):
    client, app = htpasswd_app
    page = client.simulate_get("/ui/r/alice/app", headers=basic("bob"))
    assert page.status_code == 200 and 'data-tag="v1"' in page.text
    assert "/-/delete" not in page.text  # no form, no link
    assert client.simulate_get("/ui/r/alice/app/-/delete", params={"tag": "v1"},
                               headers=basic("bob")).status_code == 403
    # A forged POST with a CSRF token that is valid for bob and this repository: the access
    # controller still refuses it.
    from registry_ui.auth import Csrf

    token = Csrf("s" * 40).token("bob", "alice/app")
    forged = client.simulate_post("/ui/r/alice/app/-/delete", body=f"tag=v1&csrf={token}",
                                  headers={**basic("bob"), "Content-Type": "application/x-www-form-urlencoded"})
    assert forged.status_code == 403 and "may not delete" in forged.text
    assert client.simulate_get("/v2/alice/app/manifests/v1", headers=basic("alice")).status_code == 200
    # The same token in alice's hands is not hers: tokens are bound to the identity.
    as_alice = client.simulate_post("/ui/r/alice/app/-/delete", body=f"tag=v1&csrf={token}",
                                    headers={**basic("alice"), "Content-Type": "application/x-www-form-urlencoded"})
    assert as_alice.status_code == 403


def test_the_ui_section_is_validated_and_documented():
    from registry.config.validate import validate
    from registry.plugins import create_plugin_manager as pm

    base = {"version": "0.1", "storage": {"inmemory": {}}}
    assert validate({**base, "ui": {"title": "Mine", "pagesize": 30, "path": "/browse"}}, pm()) == []
    problems = validate({**base, "ui": {"pagesize": 0, "path": "ui", "secret": "short", "colour": "red"}}, pm())
    assert [p.split(":")[0] for p in problems] == ["ui.colour", "ui.pagesize", "ui.path", "ui.secret"], problems
    from registry_ui.plugin import SCHEMA

    docs = (Path(__file__).resolve().parents[3] / "docs" / "ui.md").read_text()
    for key, prop in SCHEMA["properties"].items():
        assert prop.get("description"), key
        assert f"`{key}`" in docs, f"docs/ui.md does not describe ui.{key}"


def test_disabled_absent_and_moved():
    image = Image("amd64")
    with ui_app(ui={"enabled": False}) as (client, app, counter):
        assert client.simulate_get("/ui/").status_code == 404
    with ui_app(ui={"path": "/browse", "title": "Browse <it>", "pagesize": 1}) as (client, app, counter):
        push_image(client, "one/a", "v1", image)
        push_image(client, "one/b", "v1", image)
        assert client.simulate_get("/ui/").status_code == 404
        page = client.simulate_get("/browse/").text
        assert names_in_at(page, "/browse") == ["one/a"] and "Browse &lt;it&gt;" in page  # pagesize 1
        assert "/browse/?n=1&amp;last=one/a" in page
        many = client.simulate_get("/browse/", params={"n": "100000"}).text  # clamped to maxpagesize
        assert names_in_at(many, "/browse") == ["one/a", "one/b"]
        assert client.simulate_get("/browse/r/one/a/-/m/sha256:00").status_code == 404
        assert client.simulate_get("/browse/r/one/a/-/m/nope").status_code == 404
        assert client.simulate_get("/browse/r/one/zzz").status_code == 404
        assert client.simulate_get("/browse/", params={"last": "../../etc"}).status_code == 400


def names_in_at(page: str, base: str) -> list[str]:
    return re.findall(rf'class="repository" href="{re.escape(base)}/r/[^"]+">([^<]+)<', page)


@pytest.mark.parametrize("method,path,query,body", [
    ("GET", "/ui/r/%2e%2e/%2e%2e/etc", "", None),
    ("GET", "/ui/r/a/../b", "", None),
    ("GET", "/ui/r/" + "a" * 300, "", None),
    ("GET", "/ui/r/library/app/-/m/..%2f..%2fblobs", "", None),
    ("GET", "/ui/r/library/app/-/m/sha256:" + "0" * 64, "", None),
    ("GET", "/ui/r/library/app/-/m/sha512:" + "a" * 10, "", None),
    ("GET", "/ui/static/..%2fpages.py", "", None),
    ("GET", "/ui/static/missing.css", "", None),
    ("GET", "/ui/", "n=-1&last=", None),
    ("GET", "/ui/", "n=abc&q=%00", None),
    ("GET", "/ui/r/library/app", "n=0&last=%ff", None),
    ("GET", "/ui/r/library/app/-/delete", "tag=a&digest=b", None),
    ("GET", "/ui/r/library/app/-/delete", "tag=" + "x" * 200, None),
    ("GET", "/ui/login", "next=//evil.example/", None),
    ("POST", "/ui/r/library/app/-/delete", "", b"tag=amd&csrf=" + b"9" * 5000),
    ("POST", "/ui/r/library/app/-/delete", "", b"\xff\xfe"),
    ("POST", "/ui/r/library/app/-/delete", "", b"&".join([b"a=b"] * 100)),
    ("PUT", "/ui/", "", b"x"),
    ("DELETE", "/ui/r/library/app", "", None),
])
def test_hostile_requests_get_a_page_not_a_crash(populated, method, path, query, body):
    client, it = populated
    r = client.simulate_request(method, path, query_string=query, body=body,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code < 500, r.text
    assert r.status_code != 200 or method == "GET"
    assert "Traceback" not in r.text
    if "login" in path:
        assert "evil.example" not in r.headers.get("Location", "")
    # Nothing was deleted.
    assert client.simulate_get("/v2/library/app/manifests/amd").status_code == 200


def test_read_only_mode_offers_no_delete_and_refuses_the_post():
    image = Image("amd64")
    with ui_app({"storage": {"inmemory": {}, "delete": {"enabled": True},
                             "maintenance": {"readonly": {"enabled": True}}}}) as (client, app, counter):
        store = app.registry_context.store
        d = parse_digest(image.digest)
        store.put_manifest("ro/app", d, image.manifest)
        store.tag("ro/app", "v1", d)  # read-only refuses pushes: written through the store
        assert "/-/delete" not in client.simulate_get("/ui/r/ro/app").text
        r = client.simulate_post("/ui/r/ro/app/-/delete", body="tag=v1&csrf=x",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code >= 400
        assert store.resolve_tag("ro/app", "v1") == d


def test_registry_plugins_lists_ui():
    import subprocess

    out = subprocess.run([sys.executable, "-m", "registry.cli", "plugins"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    (line,) = [x for x in out.splitlines() if x.split()[:1] == ["ui"]]
    assert "registry-ui" in line and "routes" in line


def test_a_delete_through_the_ui_sends_the_apis_delete_event(tmp_path):
    from registry import hookimpl

    events: list[dict] = []

    class Recorder:
        @hookimpl
        def registry_event(self, event):
            events.append(event)

    htpasswd, rules = write_auth_files(tmp_path / "auth")
    config = {"auth": {"htpasswd": {"realm": "ui-test", "path": str(htpasswd), "rules": str(rules)}}}
    with ui_app(config, plugins=(Recorder(),)) as (client, app, counter):
        image = Image("amd64")
        push_image(client, "alice/app", "v1", image, headers=basic("alice"))
        confirm = client.simulate_get("/ui/r/alice/app/-/delete", params={"tag": "v1"}, headers=basic("alice"))
        events.clear()
        done = client.simulate_post("/ui/r/alice/app/-/delete", body=f"tag=v1&csrf={csrf_of(confirm.text)}",
                                    headers={**basic("alice"), "Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 303
    assert [(e["action"], e["target"], e["actor"]) for e in events] == [
        ("delete", {"repository": "alice/app", "tag": "v1"}, {"name": "alice"})]
