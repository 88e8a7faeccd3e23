"""schemas/openapi.yaml against the application: a valid OpenAPI 3.1 document that describes every
route and method the app serves, and nothing it does not.

The app's side is read three ways: the routes in ``registry.routing.ROUTES``, the ``on_<method>``
responders of the resource each route reaches, and what the running app answers to every method on
every path (undeclared methods must get 405 with the OCI error body and an ``Allow`` header listing
exactly the declared ones).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import falcon.testing
import jsonschema
import pytest
import yaml
from schemathesis.specs.openapi.definitions import OPENAPI_31

from registry import routing
from registry.app import create_app
from registry.errors import RegistryError
from registry.plugins import by_name, create_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "schemas" / "openapi.yaml"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
PROBE_METHODS = (*METHODS, "TRACE", "CONNECT")
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

#: A value for each path parameter, to turn a template into a path the router can match.
SAMPLE = {"name": "library/alpine", "reference": "latest", "digest": EMPTY_JSON_DIGEST, "upload_id": "abc-123"}

#: Paths the app also serves, as the description says in words (OpenAPI cannot say "with or without
#: the trailing slash").
ALIASES = {"/v2": "/v2/", "/v2/{name}/blobs/uploads": "/v2/{name}/blobs/uploads/"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def app():
    pm = create_plugin_manager()
    driver = by_name(pm, "registry_storage_drivers")["inmemory"].factory({})
    return create_app({"version": 0.1, "storage": {"inmemory": {}, "delete": {"enabled": True}}}, pm, driver=driver)


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], template)


def route_of(app, path: str) -> str | None:
    found = app._router.find(path)
    return None if found is None else found[0].route_name


def declared_methods(spec: dict, template: str) -> set[str]:
    return {m.upper() for m in spec["paths"][template] if m.upper() in METHODS}


def implemented_methods(resource) -> set[str]:
    """What the resource answers: its own responders, plus Falcon's default OPTIONS."""
    return {m for m in METHODS if callable(getattr(resource, f"on_{m.lower()}", None))} | {"OPTIONS"}


# -- the document itself ---------------------------------------------------------------------------


def test_is_valid_openapi_31(spec):
    assert spec["openapi"].startswith("3.1.")
    errors = sorted(jsonschema.Draft202012Validator(OPENAPI_31).iter_errors(spec), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def _schemas(node, where=""):
    """Every JSON Schema in the document (components, parameters, bodies, headers)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield f"{where}/schema", value
            elif key == "schemas" and isinstance(value, dict) and where.endswith("components"):
                for name, sub in value.items():
                    yield f"{where}/schemas/{name}", sub
            yield from _schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schemas(value, f"{where}/{i}")


def test_every_schema_is_valid_and_every_ref_resolves(spec):
    resolver_root = spec
    refs = set()

    def collect(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(spec)
    for ref in refs:
        assert ref.startswith("#/"), ref
        node = resolver_root
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved $ref {ref}"
            node = node[part]
    count = 0
    for where, schema in _schemas(spec):
        jsonschema.Draft202012Validator.check_schema(schema)
        for key in ("pattern",):
            if key in schema:
                re.compile(schema[key])
        count += 1
    assert count > 30


def test_operation_ids_are_unique(spec):
    ids = [op["operationId"] for item in spec["paths"].values() for m, op in item.items() if m.upper() in METHODS]
    assert len(ids) == len(set(ids))


def test_examples_match_their_schemas(spec):
    for name, param in spec["components"]["parameters"].items():
        schema = param["schema"]
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        for example in param.get("examples", {}).values():
            jsonschema.validate(example["value"], schema)


def test_grammars_are_the_routers(spec):
    """The name and tag patterns are routing.py's; digests are what parse_digest accepts."""
    schemas = spec["components"]["schemas"]
    assert schemas["Name"]["pattern"] == f"^{routing.NAME}$"
    assert schemas["Name"]["maxLength"] == routing.MAX_NAME_LENGTH
    assert schemas["Tag"]["pattern"] == f"^{routing.TAG}$"
    upload = spec["components"]["parameters"]["UploadId"]["schema"]["pattern"]
    assert upload == f"^{routing.UPLOAD_ID}$"
    from registry.digests import ALGORITHMS

    alternatives = "|".join(f"{a}:[a-f0-9]{{{n}}}" for a, n in ALGORITHMS.items())
    assert schemas["Digest"]["pattern"] == f"^(?:{alternatives})$"


def test_manifest_schemas_match_the_validators(spec):
    """The request bodies describe what registry/schemas/*.json (the validators) accept."""
    schemas = spec["components"]["schemas"]
    pairs = {"ImageManifest": "image-manifest.json", "ImageIndex": "image-index.json", "Descriptor": "descriptor.json"}
    for ours, file in pairs.items():
        source = json.loads((ROOT / "registry" / "schemas" / file).read_text())
        assert set(schemas[ours]["properties"]) == set(source["properties"]), ours
        assert schemas[ours]["required"] == source["required"], ours
        for key in ("layers", "manifests"):
            if key in source["properties"]:
                assert schemas[ours]["properties"][key]["maxItems"] == source["properties"][key]["maxItems"]
        for key in ("schemaVersion", "size"):
            if key in source["properties"]:
                assert schemas[ours]["properties"][key] == source["properties"][key], (ours, key)


def test_error_codes_are_every_code_the_registry_sends(spec):
    codes = set()
    stack = [RegistryError]
    while stack:
        cls = stack.pop()
        codes.add(cls.code)
        stack.extend(cls.__subclasses__())
    assert set(spec["components"]["schemas"]["ErrorCode"]["enum"]) == codes


def test_every_error_response_is_the_oci_envelope(spec):
    responses = spec["components"]["responses"]
    for template, item in spec["paths"].items():
        for method, op in item.items():
            if method.upper() not in METHODS:
                continue
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                if method.upper() == "HEAD":
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Errors"}, (template, method, status)
                assert set(response["content"]) == {"application/json"}, (template, method, status)


# -- the document against the app ------------------------------------------------------------------


def test_every_route_is_described_and_every_path_is_a_route(spec, app):
    routed = {}
    for template in spec["paths"]:
        route = route_of(app, concrete(template))
        assert route is not None, f"{template} is described but the app has no route for it"
        assert route not in routed.values(), f"{template} and another path reach route {route!r}"
        routed[template] = route
    names = [name for name, _ in routing.ROUTES]
    assert sorted(routed.values()) == sorted(names), "routes with no description: " + ", ".join(
        sorted(set(names) - set(routed.values())))
    for alias, template in ALIASES.items():
        assert route_of(app, concrete(alias)) == routed[template], alias


def test_every_method_is_described_and_every_described_method_is_implemented(spec, app):
    for template in spec["paths"]:
        resource = app._router.find(concrete(template))[0]
        assert declared_methods(spec, template) == implemented_methods(resource), template


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")
@pytest.mark.parametrize("method", PROBE_METHODS)
def test_the_app_answers_exactly_the_described_methods(spec, app, method):
    client = falcon.testing.TestClient(app)
    for template in [*spec["paths"], *ALIASES]:
        declared = declared_methods(spec, ALIASES.get(template, template))
        r = client.simulate_request(method, concrete(template))
        if method in declared:
            assert r.status_code != 405, (method, template, r.text)
            continue
        assert r.status_code == 405, (method, template, r.status_code)
        if method != "HEAD":
            assert r.json["errors"][0]["code"] == "UNSUPPORTED"
        allowed = {m.strip() for m in r.headers["allow"].split(",")}
        assert allowed == declared, (template, allowed)


def test_paths_the_app_does_not_serve_get_404_with_the_error_body(app):
    client = falcon.testing.TestClient(app)
    for path in ("/", "/v1/", "/v2/_catalog/x", "/v2/a/unknown", "/v2/a/manifests/b/c", "/v3/"):
        r = client.simulate_get(path)
        assert r.status_code == 404, path
        assert r.json == {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]}
