"""contrib/nginx/registry-tls.conf as a user installs it: dropped into nginx's http context with its
certificate paths and listen address changed, in front of a real ``registry serve``. nginx must accept
the recipe (Debian 12's nginx 1.22 knows ``listen ... http2`` but not the newer ``http2 on;``) and
serve the API over HTTPS: a blob larger than waitress's in-memory body limit pushed and pulled through it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.nginx import TEMP_DIRS, free_port, running_nginx
from tests.test_cli import Serving, write
from tests.test_cli import env as env  # noqa: F401 - the fixture: no REGISTRY_* from the machine
from tests.tls_ca import make_pki

pytest.importorskip("registry_filesystem")
REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "contrib" / "nginx" / "registry-tls.conf"


def _recipe(pki, listen: str, upstream: str) -> str:
    text = RECIPE.read_text()
    replacements = {
        "listen 443 ssl": f"listen {listen} ssl",
        "server 127.0.0.1:5000;": f"server {upstream};",
        "/etc/ssl/registry/fullchain.pem": str(pki.server_cert),
        "/etc/ssl/registry/privkey.pem": str(pki.server_key),
    }
    for old, new in replacements.items():
        assert old in text, f"the recipe no longer contains {old!r}: update this test"
        text = text.replace(old, new)
    return text


def test_the_tls_recipe_serves_the_registry_over_https(tmp_path, env):
    pki = make_pki(tmp_path / "pki")
    root = tmp_path / "root"
    config = write(tmp_path, "version: 0.1\n"
                   f"storage:\n  filesystem:\n    rootdirectory: {root}\n"
                   "http:\n  addr: 127.0.0.1:0\n  waitress:\n    trusted_proxy: 127.0.0.1\n"
                   "    trusted_proxy_headers: [x-forwarded-proto, x-forwarded-host, x-forwarded-for]\n")
    server = Serving(config, env)
    try:
        upstream = "127.0.0.1:" + server.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1)
        port = free_port()

        def write_config(prefix: Path) -> Path:
            (prefix / "registry.conf").write_text(_recipe(pki, f"127.0.0.1:{port}", upstream))
            temp = "".join(f"  {name}_temp_path {prefix}/{name};\n" for name in TEMP_DIRS)
            conf = prefix / "nginx.conf"
            conf.write_text(f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\nevents {{}}\n"
                            f"http {{\n  access_log off;\n{temp}  include {prefix}/registry.conf;\n}}\n")
            return conf

        with running_nginx(tmp_path / "nginx", write_config, f"https://127.0.0.1:{port}", verify=str(pki.ca)) as url, \
                requests.Session() as http:
            http.trust_env = False
            http.verify = str(pki.ca)
            body = os.urandom(3 * 1024 * 1024 + 7)  # over waitress's in-memory body limit, through nginx
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            started = http.post(f"{url}/v2/tls/recipe/blobs/uploads/", timeout=10)
            assert started.status_code == 202, started.text
            location = urljoin(url + "/", started.headers["Location"])
            assert location.startswith(f"{url}/v2/tls/recipe/blobs/uploads/")
            done = http.put(location, params={"digest": digest}, data=body, timeout=30)
            assert done.status_code == 201, done.text
            pulled = http.get(f"{url}/v2/tls/recipe/blobs/{digest}", timeout=30)
            assert pulled.status_code == 200 and pulled.content == body
    finally:
        server.stop()
