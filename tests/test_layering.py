"""Arrows point down: the grammars, the configuration and the storage layer import without the web
framework or the HTTP server, so a storage plugin or a maintenance tool does not load them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules below the app: none may load Falcon or waitress when imported on its own.
BELOW_THE_APP = [
    "registry.grammar",
    "registry.digests",
    "registry.config",
    "registry.manifests",
    "registry.storage.paths",
    "registry.storage.store",
    "registry.storage.checked",
    "registry.storage.purge",
    "registry.storage.uploads",
]


@pytest.mark.parametrize("module", BELOW_THE_APP)
def test_importing_does_not_load_the_web_stack(module):
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout)
    assert module in loaded  # the probe imported what it says it did
    assert [m for m in loaded if m.split(".")[0] in ("falcon", "waitress")] == []


def test_the_router_and_handlers_use_the_grammar_module():
    from registry import digests, grammar, routing
    from registry.handlers import base

    for name in ("NAME", "TAG", "DIGEST", "UPLOAD_ID", "NAME_RE", "TAG_RE", "DIGEST_RE", "REFERENCE_RE",
                 "MAX_NAME_LENGTH"):
        assert getattr(routing, name) is getattr(grammar, name), name
    assert base.check_name is grammar.check_name
    assert digests.parse_digest is grammar.parse_digest and digests.Digest is grammar.Digest


@pytest.mark.parametrize("name", ["library/ubuntu", "a", "a-b.c_d/e__f", "x" * 255])
def test_check_name_accepts_the_grammar(name):
    from registry.grammar import check_name

    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "a..b", "a\n", "x" * 256, "-a"])
def test_check_name_refuses_the_rest(name):
    from registry.errors import NameInvalid
    from registry.grammar import check_name

    with pytest.raises(NameInvalid):
        check_name(name)
