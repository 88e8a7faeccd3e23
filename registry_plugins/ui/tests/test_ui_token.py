"""The UI with token auth: a login form that gets a refresh token from the configured realm (the
reference token server, contrib/token-server, served over HTTP on loopback), one access token per
page for every scope the page needs, and only what the token server grants shown."""

from __future__ import annotations

import re
import sys
import threading
import wsgiref.simple_server
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ui_harness import USERS, Image, basic, push_image, ui_app, write_auth_files  # noqa: E402

token_server = pytest.importorskip("registry_token_server.app")
pytest.importorskip("registry_token")

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_setup(tmp_path) -> Iterator[dict]:
    from registry_htpasswd.htpasswd import Htpasswd
    from registry_htpasswd.rules import NO_ACCESS, parse_rules
    from registry_htpasswd.watched import WatchedFile
    from registry_token_server.keys import load_or_create

    htpasswd, rules = write_auth_files(tmp_path / "auth")
    key, cert = load_or_create(tmp_path / "keys", "ui-test-issuer")
    issuer = token_server.TokenIssuer(key=key, issuer="ui-test-issuer", service="registry",
                                      users=Htpasswd(str(htpasswd)),
                                      rules=WatchedFile(str(rules), parse_rules, NO_ACCESS, name="rules"))
    seen: list[str] = []
    inner = token_server.create_token_app(issuer, "unused")

    def counting(environ, start_response):
        seen.append(environ["REQUEST_METHOD"] + " " + environ["PATH_INFO"] + "?" + environ.get("QUERY_STRING", ""))
        return inner(environ, start_response)

    server = wsgiref.simple_server.make_server("127.0.0.1", 0, counting, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    realm = f"http://127.0.0.1:{server.server_port}/token"
    try:
        yield {"realm": realm, "cert": cert, "seen": seen, "htpasswd": htpasswd}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def token_app(token_setup) -> Iterator:
    config = {"auth": {"token": {"realm": token_setup["realm"], "service": "registry", "issuer": "ui-test-issuer",
                                 "rootcertbundle": str(token_setup["cert"])}}}
    with ui_app(config) as (client, app, counter):
        store = app.registry_context.store
        image = Image("amd64")
        # Content written through the store (the API would need tokens for each push).
        with ui_app() as (seed, seed_app, _):
            for name in ("public/tools", "alice/app", "bob/app"):
                push_image(seed, name, "v1", image)
            seed_store = seed_app.registry_context.store
            for path in sorted(_all_paths(seed_store.driver)):
                store.driver.put_content(path, seed_store.driver.get_content(path))
        yield client, token_setup


def _all_paths(driver, root: str = "/docker") -> Iterator[str]:
    for p in driver.list(root):
        if driver.stat(p).is_dir:
            yield from _all_paths(driver, p)
        else:
            yield p


def names_in(page: str) -> list[str]:
    return re.findall(r'class="repository" href="/ui/r/[^"]+">([^<]+)<', page)


def test_anonymous_sees_what_an_anonymous_token_grants(token_app):
    client, setup = token_app
    before = len(setup["seen"])
    page = client.simulate_get("/ui/")
    assert page.status_code == 200
    assert names_in(page.text) == ["public/tools"]
    assert len(setup["seen"]) - before == 1  # one token for the whole page
    assert 'id="login" href="/ui/login' in page.text
    form = client.simulate_get("/ui/login")
    assert form.status_code == 200 and 'method="post"' in form.text and 'type="password"' in form.text
    denied = client.simulate_get("/ui/r/alice/app")
    assert denied.status_code == 401 and "WWW-Authenticate" not in denied.headers  # a form, not a dialog


def test_login_form_session_and_logout(token_app):
    client, setup = token_app
    wrong = client.simulate_post("/ui/login", body="username=alice&password=nope&next=/ui/", headers=FORM)
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text and not wrong.cookies

    ok = client.simulate_post("/ui/login", body=f"username=alice&password={USERS['alice']}&next=/ui/r/alice/app",
                              headers=FORM)
    assert ok.status_code == 303 and ok.headers["Location"] == "/ui/r/alice/app"
    cookie = ok.cookies["registry_ui_session"]
    assert cookie.http_only and cookie.same_site == "Strict" and cookie.path == "/ui"
    assert USERS["alice"] not in ok.headers.get("Set-Cookie", "") and USERS["alice"] not in ok.headers["Location"]
    session = {"Cookie": f"registry_ui_session={cookie.value}"}

    before = len(setup["seen"])
    page = client.simulate_get("/ui/", headers=session)
    assert names_in(page.text) == ["alice/app", "public/tools"] and 'id="identity">alice<' in page.text
    assert len(setup["seen"]) - before == 1
    repo = client.simulate_get("/ui/r/alice/app", headers=session)
    assert repo.status_code == 200 and "/ui/r/alice/app/-/delete?tag=v1" in repo.text
    assert client.simulate_get("/ui/r/bob/app", headers=session).status_code == 403
    # No password ever went into a URL the token server saw.
    assert not any(USERS["alice"] in line for line in setup["seen"])

    # Bob's own session: alice's repository is pullable (the rules), not deletable.
    bob = client.simulate_post("/ui/login", body=f"username=bob&password={USERS['bob']}", headers=FORM)
    bob_session = {"Cookie": f"registry_ui_session={bob.cookies['registry_ui_session'].value}"}
    bob_page = client.simulate_get("/ui/r/alice/app", headers=bob_session)
    assert bob_page.status_code == 200 and "/-/delete" not in bob_page.text

    out = client.simulate_post("/ui/logout", headers=session)
    assert out.status_code == 303
    assert names_in(client.simulate_get("/ui/", headers=session).text) == ["public/tools"]  # the session is gone


def test_basic_credentials_do_not_log_in_under_token_auth(token_app):
    client, setup = token_app
    page = client.simulate_get("/ui/", headers=basic("alice"))
    assert names_in(page.text) == ["public/tools"]
