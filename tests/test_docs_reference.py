"""docs/config-reference.md is generated from the configuration schemas (contrib/dev/gen_config_docs.py)
and must be current; every option in it has a type and a description, and the defaults it shows
are the ones the code applies."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "contrib" / "dev" / "gen_config_docs.py"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(text: str) -> dict[str, list[str]]:
    found = {}
    for line in text.splitlines():
        m = re.match(r"^\| `([^`]+)` \|(.*)\|\s*$", line)
        if m:
            found[m.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", m.group(2))]
    return found


def test_reference_is_current():
    r = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr or "docs/config-reference.md is stale: run python contrib/dev/gen_config_docs.py"


def test_check_fails_on_a_stale_page(tmp_path, monkeypatch):
    gen = _generator()
    monkeypatch.setattr(gen, "TARGET", tmp_path / "config-reference.md")
    gen.TARGET.write_text("# stale\n")
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0


def test_every_option_has_a_type_and_a_description():
    rows = _rows(_generator().render())
    assert len(rows) > 200  # core, every shipped driver, controller and plugin section
    for key in ("http.addr", "storage.s3.bucket", "auth.htpasswd.path", "http.waitress.threads",
                "notifications.endpoints[].url", "storage.delete.enabled", "http.debug.prometheus.path"):
        assert key in rows, key
    undescribed = sorted(key for key, (kind, _default, description) in rows.items() if not description)
    untyped = sorted(key for key, (kind, _default, _description) in rows.items() if not kind)
    assert not undescribed, f"give these a description in their schema: {undescribed}"
    assert not untyped, untyped


def test_defaults_are_the_codes():
    rows = _rows(_generator().render())
    from registry.config import Config, load_config
    from registry.config.settings import Settings
    from registry.serve import waitress_options
    from registry.storage.inmemory import InMemoryDriver
    from registry.storage.purge import purger_for

    config = load_config(None, {})
    settings = Settings.from_mapping(config)
    assert rows["http.addr"][1] == "`{}:{}`".format(*settings.http.addr)
    assert rows["storage.delete.enabled"][1] == f"`{str(settings.storage.delete_enabled).lower()}`"
    assert rows["log.level"][1] == f"`{settings.log.level}`"
    assert rows["catalog.maxentries"][1] == f"`{settings.catalog_max_entries}`"
    # Purging is on unless disabled, every 24h, for uploads older than 168h.
    purger = purger_for(InMemoryDriver(), Config({"version": "0.1", "storage": {"inmemory": None}}))
    assert purger is not None and rows["storage.maintenance.uploadpurging.enabled"][1] == "`true`"
    assert rows["storage.maintenance.uploadpurging.age"][1] == "`168h`" and purger.age == 168 * 3600
    # The waitress settings the server actually gets with an empty http.waitress.
    options = waitress_options(config)
    assert rows["http.waitress.max_request_body_size"][1] == "`0`" and options["max_request_body_size"] > 1 << 60
    from waitress.adjustments import Adjustments

    known = {name for name, _ in Adjustments._params}
    effective = Adjustments(**{k: v for k, v in options.items() if k in known})
    for key in ("threads", "connection_limit", "channel_timeout", "inbuf_overflow", "recv_bytes", "ident"):
        shown = rows[f"http.waitress.{key}"][1].strip("`")
        assert shown == str(getattr(effective, key)), (key, shown, getattr(effective, key))
