"""The UI in a real browser: headless Chromium driven by Selenium, against `registry serve`.

A multi-arch image pushed with skopeo (`copy --all` of an OCI layout), referrers (a signature with a
hostile annotation, an SBOM, the SBOM's signature) attached with oras-py; the browser follows the
links from the catalog to the repository, the index, one platform's manifest and its referrer,
deletes a tag through the confirmation form, and checks what each page shows. With htpasswd and
access rules: anonymous, alice and bob each see what the rules let them pull. A screenshot of each
page is kept under the test's tmp dir, or under ``$UI_TEST_ARTIFACTS`` when set.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import processes

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_harness import (  # noqa: E402
    HOSTILE,
    OCI_EMPTY,
    OCI_MANIFEST,
    SBOM_TYPE,
    SIGNATURE_TYPE,
    TIMEOUT,
    USERS,
    Image,
    Registry,
    Serving,
    _env,
    sha256,
    unavailable,
    write_auth_files,
    write_oci_layout,
)

pytestmark = pytest.mark.clients

CHROMIUM = ("chromium", "chromium-browser")


def _tool(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator:
    chromium, chromedriver = _tool(*CHROMIUM), _tool("chromedriver")
    if chromium is None or chromedriver is None:
        unavailable("chromium and chromium-driver (Debian) are not installed")
    try:
        from selenium import webdriver
    except ImportError:
        unavailable("selenium is not installed (registry-ui's [test] extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,800", "--no-proxy-server", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(tmp_path) -> Iterator:
    out = Path(os.environ["UI_TEST_ARTIFACTS"]) if os.environ.get("UI_TEST_ARTIFACTS") else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)

    def take(driver, name: str) -> Path:
        path = out / f"{name}.png"
        # The whole page, beyond the window's height (Chromium's DevTools protocol).
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))
        assert path.stat().st_size > 1000
        return path

    return take


def skopeo_push(tmp_path: Path, registry: Registry, name: str, tag: str, images: list[Image],
                creds: str | None = None) -> str:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        unavailable("skopeo is not installed")
    layout = tmp_path / f"layout-{name.replace('/', '-')}"
    index_digest = write_oci_layout(layout, images, tag)
    auth = ["--dest-creds", creds] if creds else ["--dest-no-creds"]
    subprocess.run([skopeo, "--insecure-policy", "copy", "-q", "--all", "--dest-tls-verify=false", *auth,
                    f"oci:{layout}:{tag}", f"docker://{registry.host}/{name}:{tag}"],
                   check=True, timeout=120, capture_output=True, env=_env(tmp_path))
    return index_digest


def oras_attach(tmp_path: Path, registry: Registry, name: str, subject: dict, artifact_type: str, payload: bytes,
                annotations: dict[str, str] | None = None) -> tuple[str, bytes]:
    """Attach an OCI 1.1 referrer to ``subject`` (a descriptor) with oras-py; ``(digest, manifest bytes)``.

    oras-py 0.2's ``push(subject=...)`` cannot set ``artifactType``, so the manifest is built here and
    sent with its own ``upload_blob`` (POST + PUT of each blob) and ``upload_manifest`` (which PUTs
    ``json.dumps`` of it); it is PUT by digest, so the referrer adds no tag to the repository.
    """
    try:
        import oras.client
        import oras.provider
    except ImportError:
        unavailable("oras-py is not installed (registry-ui's [test] extra)")

    class Oras(oras.client.OrasClient):
        # Without oras-py's retry decorator, which sleeps for minutes on an error before failing.
        do_request = oras.provider.Registry.do_request.__wrapped__

    client = Oras(hostname=registry.host, insecure=True)
    client.session.trust_env = False  # loopback only
    client.session.request = functools.partial(client.session.request, timeout=TIMEOUT)
    files = tmp_path / "oras-blobs"
    files.mkdir(exist_ok=True)
    empty = b"{}"
    config = {"mediaType": OCI_EMPTY, "digest": sha256(empty), "size": len(empty)}
    layer = {"mediaType": artifact_type, "digest": sha256(payload), "size": len(payload)}
    for descriptor, data in ((config, empty), (layer, payload)):
        path = files / descriptor["digest"].split(":")[1]
        path.write_bytes(data)
        r = client.upload_blob(str(path), f"{registry.host}/{name}", descriptor)
        assert r.status_code in (200, 201), r.text
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                "config": config, "layers": [layer], "subject": subject,
                "annotations": {"org.opencontainers.image.created": "2025-01-02T03:04:05Z", **(annotations or {})}}
    digest = sha256(json.dumps(manifest).encode())  # what requests' json= sends
    r = client.upload_manifest(manifest, client.get_container(f"{registry.host}/{name}@{digest}"))
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest == sha256(r.request.body)
    assert r.headers.get("OCI-Subject") == subject["digest"]
    return digest, r.request.body


def descriptor(registry: Registry, name: str, reference: str) -> dict:
    """The subject descriptor from a HEAD of the pushed manifest, as oras and cosign take it."""
    r = registry.http.head(f"{registry.url}/v2/{name}/manifests/{reference}", timeout=TIMEOUT,
                           headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    return {"mediaType": r.headers["Content-Type"], "digest": r.headers["Docker-Content-Digest"],
            "size": int(r.headers["Content-Length"])}


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:
    r = Registry(tmp_path, "ui:\n  title: Test registry\n")
    try:
        yield r
    finally:
        r.stop()


def _wait_title(driver, contains: str) -> None:
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, TIMEOUT).until(ec.title_contains(contains))


def _wait_page(driver, title: str) -> None:
    """Until the page titled exactly ``title`` has loaded (after a click: not the page before it)."""
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, TIMEOUT).until(ec.title_is(title))


def test_browse_from_the_catalog_to_a_referrer_and_delete_a_tag(browser, registry, tmp_path, shots):
    from selenium.webdriver.common.by import By

    amd, arm = Image("amd64"), Image("arm64", "v8")
    index_digest = skopeo_push(tmp_path, registry, "library/app", "multi", [amd, arm])
    for tag in ("stable", "old"):
        r = registry.http.put(f"{registry.url}/v2/library/app/manifests/{tag}", data=amd.manifest, timeout=TIMEOUT,
                              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201
    platform = descriptor(registry, "library/app", amd.digest)
    assert platform["digest"] == amd.digest
    sig_digest, _ = oras_attach(tmp_path, registry, "library/app", platform, SIGNATURE_TYPE, b"a signature",
                                {"org.example.note": HOSTILE})
    sbom_digest, sbom = oras_attach(tmp_path, registry, "library/app", platform, SBOM_TYPE,
                                    b'{"spdxVersion": "SPDX-2.3"}')
    oras_attach(tmp_path, registry, "library/app", {"mediaType": OCI_MANIFEST, "digest": sbom_digest,
                                                     "size": len(sbom)}, SIGNATURE_TYPE, b"a signature of the SBOM")
    registry.push("other/thing", "v1", amd.manifest, amd.blobs())

    b = browser
    b.get(f"{registry.url}/ui/")
    _wait_title(b, "Repositories")
    names = [a.text for a in b.find_elements(By.CSS_SELECTOR, "a.repository")]
    assert names == ["library/app", "other/thing"]
    shots(b, "1-catalog")

    b.find_element(By.LINK_TEXT, "library/app").click()
    _wait_page(b, "library/app · Test registry")
    rows = {r.get_attribute("data-tag"): r for r in b.find_elements(By.CSS_SELECTOR, "tr.tag")}
    assert sorted(rows) == ["multi", "old", "stable"]
    platforms = [p.text for p in rows["multi"].find_elements(By.CSS_SELECTOR, ".platform")]
    assert platforms == ["linux/amd64", "linux/arm64/v8"]
    assert "application/vnd.oci.image.index.v1+json" in rows["multi"].text
    created = rows["stable"].find_element(By.TAG_NAME, "time")
    assert created.get_attribute("title") == "2024-05-06 07:08:09 UTC" and created.text.endswith("ago")
    assert f"docker pull {registry.host}/library/app:" in b.find_element(By.ID, "pull-commands").text
    shots(b, "2-repository")

    rows["multi"].find_element(By.CSS_SELECTOR, "a.tag-link").click()
    _wait_title(b, "library/app:multi")
    assert b.find_element(By.ID, "digest").text == index_digest
    children = [c.text for c in b.find_elements(By.CSS_SELECTOR, "tr.child td.child-platform")]
    assert children == ["linux/amd64", "linux/arm64/v8"]
    assert "skopeo copy --all" in b.find_element(By.ID, "pull-commands").text
    shots(b, "3-index")

    b.find_elements(By.CSS_SELECTOR, "a.child-link")[0].click()
    _wait_title(b, "library/app@")
    assert b.find_element(By.ID, "digest").text == amd.digest
    assert b.find_element(By.ID, "platform").text == "linux/amd64"
    layers = b.find_elements(By.CSS_SELECTOR, "tr.layer")
    assert len(layers) == 1 and layers[0].find_elements(By.TAG_NAME, "td")[-1].get_attribute("title") \
        == f"{len(amd.layer)} bytes"
    groups = {g.find_element(By.CSS_SELECTOR, ".at").text: g
              for g in b.find_elements(By.CSS_SELECTOR, "li.artifact-type")}
    assert sorted(groups) == [SBOM_TYPE, SIGNATURE_TYPE]
    nested = groups[SBOM_TYPE].find_elements(By.CSS_SELECTOR, "li.referrer li.artifact-type .at")
    assert [n.text for n in nested] == [SIGNATURE_TYPE]  # the SBOM's own signature, under it
    shots(b, "4-manifest")

    title_before = "library/app@" + sig_digest[:19]
    groups[SIGNATURE_TYPE].find_element(By.CSS_SELECTOR, "a.referrer-link").click()
    _wait_title(b, title_before)
    assert b.find_element(By.ID, "artifact-type").text == SIGNATURE_TYPE
    shown = {row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
             for row in b.find_elements(By.CSS_SELECTOR, "tr.annotation")}
    assert shown["org.example.note"] == HOSTILE  # the markup shown as text, character for character
    # and never run: no global set, no title changed, no element injected.
    assert b.execute_script("return window.__pwned === undefined") is True
    assert b.title.startswith(title_before) and "pwned" not in b.title
    assert b.find_elements(By.CSS_SELECTOR, "main img") == []
    assert b.find_element(By.ID, "subject").get_attribute("href").endswith(f"/ui/r/library/app/-/m/{amd.digest}")
    shots(b, "5-referrer")

    # Delete tag "old" through the form: confirmation page, then the POST.
    b.get(f"{registry.url}/ui/r/library/app")
    _wait_title(b, "library/app")
    b.find_element(By.CSS_SELECTOR, 'tr.tag[data-tag="old"] a.delete').click()
    _wait_title(b, "Delete old")
    assert b.find_element(By.NAME, "csrf").get_attribute("value")
    shots(b, "6-confirm-delete")
    b.find_element(By.ID, "confirm-delete").click()
    _wait_page(b, "library/app · Test registry")
    assert "deleted=old" in b.current_url and b.find_element(By.ID, "deleted").text == "Deleted old."
    left = sorted(r.get_attribute("data-tag") for r in b.find_elements(By.CSS_SELECTOR, "tr.tag"))
    assert left == ["multi", "stable"]
    assert registry.http.get(f"{registry.url}/v2/library/app/manifests/old", timeout=TIMEOUT).status_code == 404
    assert registry.http.get(f"{registry.url}/v2/library/app/manifests/stable", timeout=TIMEOUT).status_code == 200


def _drain(server: Serving) -> list[str]:
    lines = []
    while not server.lines.empty():
        lines.append(server.lines.get_nowait())
    return lines


def _basic_header(browser, user: str | None) -> None:
    """Send Basic credentials with every request, as a browser does after its login dialog (which a
    headless browser cannot show): Chromium's DevTools protocol sets the header."""
    browser.execute_cdp_cmd("Network.enable", {})
    headers = {}
    if user is not None:
        token = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})


@pytest.fixture
def protected(tmp_path) -> Iterator[Registry]:
    htpasswd, rules = write_auth_files(tmp_path / "auth")
    r = Registry(tmp_path, f"auth:\n  htpasswd:\n    realm: ui-test\n    path: {htpasswd}\n    rules: {rules}\n"
                           f"ui:\n  secret: {'k' * 40}\n")
    try:
        yield r
    finally:
        r.stop()


def test_htpasswd_viewers_in_the_browser(browser, protected, tmp_path, shots):
    from selenium.webdriver.common.by import By

    image = Image("amd64")
    skopeo_push(tmp_path, protected, "alice/app", "v1", [image, Image("arm64", "v8")], creds=f"alice:{USERS['alice']}")
    protected.push("bob/app", "v1", image.manifest, image.blobs(), auth=("bob", USERS["bob"]))
    protected.push("public/tools", "v1", image.manifest, image.blobs(), auth=("alice", USERS["alice"]))
    b = browser
    try:
        _basic_header(b, None)
        b.get(f"{protected.url}/ui/")
        _wait_title(b, "Repositories")
        assert [a.text for a in b.find_elements(By.CSS_SELECTOR, "a.repository")] == ["public/tools"]
        assert b.find_element(By.ID, "login").is_displayed()
        shots(b, "7-anonymous")

        _basic_header(b, "alice")
        b.get(f"{protected.url}/ui/")
        _wait_title(b, "Repositories")
        assert b.find_element(By.ID, "identity").text == "alice"
        assert [a.text for a in b.find_elements(By.CSS_SELECTOR, "a.repository")] == ["alice/app", "public/tools"]
        b.get(f"{protected.url}/ui/r/alice/app")
        _wait_title(b, "alice/app")
        assert b.find_elements(By.CSS_SELECTOR, "a.delete"), "alice may delete her tags"

        _basic_header(b, "bob")
        b.get(f"{protected.url}/ui/")
        _wait_title(b, "Repositories")
        assert [a.text for a in b.find_elements(By.CSS_SELECTOR, "a.repository")] == ["alice/app", "bob/app",
                                                                                     "public/tools"]
        b.get(f"{protected.url}/ui/r/alice/app")
        _wait_title(b, "alice/app")
        assert [r.get_attribute("data-tag") for r in b.find_elements(By.CSS_SELECTOR, "tr.tag")] == ["v1"]
        assert b.find_elements(By.CSS_SELECTOR, "a.delete") == [] and b.find_elements(By.TAG_NAME, "form")[1:] == []
        shots(b, "8-bob-on-alices-repository")
    finally:
        _basic_header(b, None)

    # bob forges the POST (with a CSRF token valid for him and this repository): 403, the tag stays.
    from registry_ui.auth import Csrf

    token = Csrf("k" * 40).token("bob", "alice/app")
    forged = protected.http.post(f"{protected.url}/ui/r/alice/app/-/delete", data={"tag": "v1", "csrf": token},
                                 auth=("bob", USERS["bob"]), timeout=TIMEOUT, allow_redirects=False)
    assert forged.status_code == 403
    assert protected.http.get(f"{protected.url}/v2/alice/app/manifests/v1", auth=("alice", USERS["alice"]),
                              timeout=TIMEOUT).status_code == 200
    # Anonymous on alice's repository: the Basic challenge, so a browser shows its login dialog.
    anonymous = protected.http.get(f"{protected.url}/ui/r/alice/app", timeout=TIMEOUT)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == 'Basic realm="ui-test"'
    # Nothing of the credentials reached the server's log.
    protected.stop()
    log = "".join(protected.server.seen) + "".join(_drain(protected.server))
    assert "ui.repository" in log, log  # the access log was read
    assert USERS["bob"] not in log and USERS["alice"] not in log and "Authorization" not in log


@pytest.fixture
def token_protected(tmp_path) -> Iterator[Registry]:
    """`registry serve` with ``auth.token`` trusting the reference token server (contrib/token-server),
    itself run as a process with the same htpasswd users and access rules."""
    exe = shutil.which("registry-token-server") or str(Path(sys.executable).parent / "registry-token-server")
    if not Path(exe).exists():
        unavailable("registry-token-server (contrib/token-server) is not installed: make install")
    htpasswd, rules = write_auth_files(tmp_path / "auth")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    issuer = "ui-browser-issuer"
    log = open(tmp_path / "token-server.log", "wb")  # noqa: SIM115 - closed below
    token = subprocess.Popen([exe, "--htpasswd", str(htpasswd), "--rules", str(rules), "--keys", str(tmp_path / "keys"),
                              "--listen", f"127.0.0.1:{port}", "--issuer", issuer],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=_env(tmp_path))
    try:
        realm = f"http://127.0.0.1:{port}/token"
        http = requests.Session()
        http.trust_env = False
        deadline = time.monotonic() + 20
        while True:
            assert token.poll() is None, (tmp_path / "token-server.log").read_text(errors="replace")
            with contextlib.suppress(requests.RequestException):
                if http.get(realm, params={"service": "registry"}, timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the token server did not answer"
            time.sleep(0.1)
        bundle = tmp_path / "keys" / "signing-cert.pem"
        registry = Registry(tmp_path, f"auth:\n  token:\n    realm: {realm}\n    service: registry\n"
                                      f"    issuer: {issuer}\n    rootcertbundle: {bundle}\n"
                                      "ui:\n  title: Test registry\n")
        try:
            yield registry
        finally:
            registry.stop()
    finally:
        processes.stop(token)
        log.close()


def test_token_login_form_in_the_browser(browser, token_protected, tmp_path, shots):
    from selenium.webdriver.common.by import By

    registry = token_protected
    skopeo_push(tmp_path, registry, "alice/app", "v1", [Image("amd64"), Image("arm64", "v8")],
                creds=f"alice:{USERS['alice']}")
    skopeo_push(tmp_path, registry, "public/tools", "v1", [Image("amd64")], creds=f"alice:{USERS['alice']}")
    b = browser
    _basic_header(b, None)
    b.delete_all_cookies()
    b.get(f"{registry.url}/ui/")
    _wait_title(b, "Repositories")
    assert [a.text for a in b.find_elements(By.CSS_SELECTOR, "a.repository")] == ["public/tools"]

    b.find_element(By.ID, "login").click()
    _wait_title(b, "Log in")
    b.find_element(By.ID, "username").send_keys("alice")
    b.find_element(By.ID, "password").send_keys(USERS["alice"])
    shots(b, "9-token-login")
    b.find_element(By.ID, "login-submit").click()
    _wait_page(b, "Repositories · Test registry")
    assert b.find_element(By.ID, "identity").text == "alice"
    assert USERS["alice"] not in b.current_url
    assert [a.text for a in b.find_elements(By.CSS_SELECTOR, "a.repository")] == ["alice/app", "public/tools"]
    (cookie,) = [c for c in b.get_cookies() if c["name"] == "registry_ui_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and USERS["alice"] not in cookie["value"]

    b.find_element(By.LINK_TEXT, "alice/app").click()
    _wait_page(b, "alice/app · Test registry")
    platforms = [p.text for p in b.find_elements(By.CSS_SELECTOR, 'tr.tag[data-tag="v1"] .platform')]
    assert platforms == ["linux/amd64", "linux/arm64/v8"]
    b.find_element(By.CSS_SELECTOR, 'tr.tag[data-tag="v1"] a.delete').click()
    _wait_title(b, "Delete v1")
    b.find_element(By.ID, "confirm-delete").click()
    _wait_page(b, "alice/app · Test registry")
    assert b.find_elements(By.CSS_SELECTOR, "tr.tag") == []

    b.find_element(By.CSS_SELECTOR, "nav.who button").click()  # log out
    _wait_page(b, "Repositories · Test registry")
    assert [a.text for a in b.find_elements(By.CSS_SELECTOR, "a.repository")] == ["public/tools"]
    assert b.find_elements(By.ID, "identity") == []
