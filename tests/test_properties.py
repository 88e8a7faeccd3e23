"""Hypothesis property tests for every parser that reads client input.

Each grammar is checked against an independent oracle written by hand (not the same regular
expression), on generated valid values and on arbitrary text: names, tags, references, digests,
``Range``, ``Content-Range``, ``Link`` (round trip through the real pagination) and
``WWW-Authenticate`` (round trip through registry.authheaders, and against the RFC 9110 grammar).

Every test has a fixed budget (``max_examples``) and is derandomized: the same cases every run.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import string
from urllib.parse import parse_qs, urlsplit

import falcon.testing
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from registry import routing
from registry.app import create_app
from registry.authheaders import (
    TOKEN68,
    format_challenge,
    format_challenges,
    parse_challenge,
    parse_challenges,
)
from registry.digests import ALGORITHMS, Digest, digest_of, parse_digest
from registry.errors import BlobUploadUnknown, DigestInvalid, ManifestInvalid, NameInvalid, RangeInvalid
from registry.handlers.base import check_name, is_tag
from registry.handlers.blobs import parse_range
from registry.handlers.listing import next_link
from registry.handlers.manifests import parse_reference
from registry.handlers.uploads import check_upload_id, parse_content_range
from registry.plugins import by_name, create_plugin_manager
from registry.storage import paths
from registry.storage.checked import validate_path

FAST = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
APP_LEVEL = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(HealthCheck))

#: Text a hostile client might send: ASCII with the characters that matter most, and anything else.
TRICKY = "./-_:%\\\x00\n\r\t +=@~\u2024\uff0e\u2215\uff0f\u0430"
hostile_text = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + TRICKY, max_size=80),
    st.text(max_size=80),
)

# -- oracles, written without the registry's regular expressions ------------------------------------

LOWER_ALNUM = set(string.ascii_lowercase + string.digits)


def oracle_component(c: str) -> bool:
    """``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*`` by hand: alnum runs joined by '.', '_', '__' or '-'s."""
    runs, seps, i = [], [], 0
    while i < len(c):
        j = i
        if c[i] in LOWER_ALNUM:
            while j < len(c) and c[j] in LOWER_ALNUM:
                j += 1
            runs.append(c[i:j])
        else:
            while j < len(c) and c[j] not in LOWER_ALNUM:
                j += 1
            seps.append(c[i:j])
        i = j
    if not c or c[0] not in LOWER_ALNUM or c[-1] not in LOWER_ALNUM:
        return False
    return all(s in (".", "_", "__") or set(s) == {"-"} for s in seps)


def oracle_name(name: str) -> bool:
    return 0 < len(name) <= 255 and all(oracle_component(c) for c in name.split("/"))


def oracle_tag(tag: str) -> bool:
    first = string.ascii_letters + string.digits + "_"
    rest = first + ".-"
    return 1 <= len(tag) <= 128 and tag[0] in first and all(ch in rest for ch in tag[1:])


def oracle_digest(value: str) -> bool:
    algorithm, sep, encoded = value.partition(":")
    return (sep == ":" and algorithm in ALGORITHMS and len(encoded) == ALGORITHMS[algorithm]
            and all(ch in "0123456789abcdef" for ch in encoded))


_alnum = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_component = st.builds(
    lambda first, rest: first + "".join(sep + run for sep, run in rest),
    _alnum, st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--", "---"]), _alnum), max_size=3),
)
names = st.lists(_component, min_size=1, max_size=4).map("/".join)
tags = st.from_regex(f"^{routing.TAG}\\Z", fullmatch=True)
digests = st.one_of(
    st.binary(max_size=64).map(lambda b: f"sha256:{hashlib.sha256(b).hexdigest()}"),
    st.binary(max_size=64).map(lambda b: f"sha512:{hashlib.sha512(b).hexdigest()}"),
)


# -- names, tags, references, digests, upload ids -----------------------------------------------------


@FAST
@given(names)
@example("a" * 255)
@example("/".join(["a"] * 128))
@example("a__b---c.d_e/0")
def test_valid_names_are_accepted_and_stay_inside_the_repository_tree(name):
    assert oracle_name(name)
    assert check_name(name) == name
    path = paths.layer_link(name, Digest("sha256", "0" * 64))
    assert validate_path(path) == path
    assert posixpath.normpath(path) == path
    assert path.startswith(paths.REPOSITORIES + "/" + name + "/_layers/")


@FAST
@given(hostile_text)
@example("a/../b")
@example("a\n")
@example("a/")
@example("/a")
@example("a//b")
@example("a" * 256)
@example("ａ")
@example("a%2fb")
def test_names_accepted_exactly_by_the_grammar(text):
    try:
        accepted = check_name(text) == text
    except NameInvalid:
        accepted = False
    assert accepted == oracle_name(text), text
    if accepted:
        assert ".." not in text.split("/") and "\\" not in text and "\x00" not in text and text.isascii()


@FAST
@given(st.one_of(tags, hostile_text))
@example("latest\n")
@example("..")
@example(".hidden")
@example("a" * 129)
def test_tags_accepted_exactly_by_the_grammar(text):
    assert is_tag(text) == oracle_tag(text), text


@FAST
@given(st.one_of(tags, digests, hostile_text, hostile_text.map(lambda t: "sha256:" + t)))
@example("sha256:" + "a" * 64 + "\n")
@example("sha256:" + "A" * 64)
@example("md5:" + "a" * 32)
@example("sha256:../../etc")
@example("")
def test_references_are_a_tag_a_digest_or_refused(text):
    try:
        tag, d = parse_reference(text)
    except (DigestInvalid, ManifestInvalid):
        assert not oracle_tag(text) and not oracle_digest(text), text
        return
    if tag is not None:
        assert d is None and tag == text and oracle_tag(text)
    else:
        assert d is not None and str(d) == text and oracle_digest(text)


@FAST
@given(st.one_of(digests, hostile_text, st.from_regex(routing.DIGEST_RE, fullmatch=True)))
@example("sha256:" + "0" * 64 + "\n")
@example("sha512:" + "f" * 127)
@example("sha256:" + "g" * 64)
def test_parse_digest_accepts_exactly_registered_lowercase_hex(text):
    try:
        d = parse_digest(text)
    except DigestInvalid:
        assert not oracle_digest(text), text
        return
    assert oracle_digest(text), text
    assert str(d) == text and parse_digest(str(d)) == d
    path = paths.blob_data(d)
    assert validate_path(path) == path


@FAST
@given(st.binary(max_size=256), st.sampled_from(sorted(ALGORITHMS)))
def test_digest_of_round_trips(data, algorithm):
    d = digest_of(data, algorithm)
    assert parse_digest(str(d)) == d
    assert d.hex == hashlib.new(algorithm, data).hexdigest()


@FAST
@given(st.one_of(st.from_regex(f"^{routing.UPLOAD_ID}\\Z", fullmatch=True), hostile_text))
@example("..")
@example("abc\n")
@example("a/b")
def test_upload_ids_accepted_exactly_by_the_grammar(text):
    ok = 1 <= len(text) <= 128 and all(ch in string.ascii_letters + string.digits + "_-" for ch in text)
    try:
        accepted = check_upload_id(text) == text
    except BlobUploadUnknown:
        accepted = False
    assert accepted == ok, text
    if accepted:
        path = paths.upload_data("a", text)
        assert validate_path(path) == path


# -- Range ----------------------------------------------------------------------------------------------

positions = st.one_of(st.integers(0, 300), st.integers(0, 10**30))


def _num(digits: str) -> int:
    """Digits as a number; anything past 100 digits is simply "huge" (int() refuses 4300+)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 100 else 10**100


def oracle_range(header: str, size: int):
    """RFC 9110 §14.1.2 for one byte range: ``None`` (ignore), a (first, last) pair, or "416"."""
    h = header.strip(" \t")
    if not h.startswith("bytes=") or h.count("-") != 1:
        return None
    first, last = h[len("bytes="):].split("-")
    if not all(ch in string.digits for ch in first + last):
        return None
    if first == "" and last == "":
        return "416"
    if first == "":
        n = _num(last)
        return "416" if n == 0 or size == 0 else (max(size - n, 0), size - 1)
    a = _num(first)
    b = _num(last) if last else size - 1
    if a >= size or b < a:
        return "416"
    return a, min(b, size - 1)


range_headers = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", positions, positions),
    st.builds(lambda a: f"bytes={a}-", positions),
    st.builds(lambda b: f"bytes=-{b}", positions),
    st.builds(lambda a, b: f"bytes={a}-{b}".replace("-", "-" * 2), positions, positions),
    st.just("bytes=-"),
    hostile_text.map(lambda t: "bytes=" + t),
    hostile_text,
)


@FAST
@given(range_headers, st.integers(0, 500))
@example("bytes=" + "9" * 5000 + "-", 10)
@example("bytes=0-" + "9" * 5000, 10)
@example("bytes=-" + "9" * 5000, 10)
@example("bytes=0-0,5-6", 10)
@example("bytes=\u0663-", 10)
@example("items=0-1", 10)
def test_parse_range_follows_rfc_9110(header, size):
    expected = oracle_range(header, size)
    try:
        got = parse_range(header, size)
    except RangeInvalid:
        got = "416"
    assert got == expected, (header, size)
    if isinstance(got, tuple):
        first, last = got
        assert 0 <= first <= last < size


# -- Content-Range (upload chunks) ------------------------------------------------------------------


@FAST
@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.booleans(), st.sampled_from(["", " ", "\t"]))
def test_content_range_round_trips(start, end, unit, space):
    header = f"{space}{'bytes ' if unit else ''}{start}-{end}{space}"
    assert parse_content_range(header) == (start, end)


@FAST
@given(hostile_text)
@example("0-" + "9" * 5000)
@example("9" * 20 + "-1")
@example("\u0663-\u0664")
@example("bytes 0-1/2")
@example("0-1\n")
@example("-1-2")
def test_content_range_never_fails_on_garbage(text):
    got = parse_content_range(text)
    if got is not None:
        start, end = got
        body = text.strip(" \t").removeprefix("bytes ")
        assert body == f"{start}-{end}" or body.lstrip("0") != body, text  # leading zeros allowed
        assert 0 <= start < 10**19 and 0 <= end < 10**19


# -- Link (pagination) ------------------------------------------------------------------------------

_LINK = re.compile(r'^<(?P<uri>[^<>\s]*)>\s*;\s*rel="next"$')


def parse_link(value: str) -> tuple[str, dict[str, list[str]]]:
    """RFC 8288 for the one form the registry sends: ``<uri-reference>; rel="next"``."""
    m = _LINK.match(value)
    assert m, value
    uri = m.group("uri")
    assert all(0x21 <= ord(ch) <= 0x7E for ch in uri), uri  # a URI: visible ASCII only
    parts = urlsplit(uri)
    return parts.path, parse_qs(parts.query, keep_blank_values=True)


@FAST
@given(names, st.one_of(tags, st.text(max_size=40)), st.integers(1, 10000))
def test_next_link_round_trips(name, last, n):
    path, query = parse_link(next_link(f"/v2/{name}/tags/list", last, n))
    assert path == f"/v2/{name}/tags/list"
    assert query == {"last": [last], "n": [str(n)]}


def _client():
    pm = create_plugin_manager()
    driver = by_name(pm, "registry_storage_drivers")["inmemory"].factory({})
    return falcon.testing.TestClient(create_app({"version": 0.1, "storage": {"inmemory": {}}}, pm, driver=driver))


def _push_tags(client, name: str, tag_list) -> None:
    config = b"{}"
    d = "sha256:" + hashlib.sha256(config).hexdigest()
    r = client.simulate_post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, body=config)
    assert r.status_code == 201
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": d, "size": 2},
                           "layers": []}).encode()
    for tag in tag_list:
        r = client.simulate_put(f"/v2/{name}/manifests/{tag}", body=manifest,
                                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201, r.text


def _follow(client, url: str, key: str, limit: int = 50) -> list[str]:
    """Every entry of a paginated listing, following ``Link`` headers (at most ``limit`` pages)."""
    seen: list[str] = []
    for _ in range(limit):
        path, _, query = url.partition("?")
        r = client.simulate_get(path, query_string=query)
        assert r.status_code == 200, r.text
        seen += r.json[key]
        link = r.headers.get("link")
        if link is None:
            return seen
        link_path, params = parse_link(link)
        assert link_path == path
        assert int(params["n"][0]) >= 1
        url = link_path + "?" + urlsplit(_LINK.match(link).group("uri")).query
    raise AssertionError("pagination did not end")


@APP_LEVEL
@given(st.lists(tags, min_size=1, max_size=8, unique=True), st.integers(1, 4))
def test_tag_pages_following_links_list_every_tag_once(tag_list, n):
    client = _client()
    _push_tags(client, "p/repo", tag_list)
    assert _follow(client, f"/v2/p/repo/tags/list?n={n}", "tags") == sorted(tag_list)


@APP_LEVEL
@given(st.lists(names, min_size=1, max_size=6, unique=True), st.integers(1, 3))
def test_catalog_pages_following_links_list_every_repository_once(repos, n):
    client = _client()
    for repo in repos:
        _push_tags(client, repo, ["t"])
    listed = _follow(client, f"/v2/_catalog?n={n}", "repositories")
    assert sorted(listed) == sorted(repos) and len(listed) == len(set(listed))


@APP_LEVEL
@given(st.one_of(st.integers(-5, 20000).map(str), hostile_text))
@example("²")
@example("１")
@example("9" * 5000)
@example("")
def test_page_size_is_a_number_or_a_400(n):
    client = _client()
    for path in ("/v2/_catalog", "/v2/a/tags/list"):
        r = client.simulate_get(path, params={"n": n})
        assert r.status_code in (200, 400, 404), (n, r.status_code)
        valid = n.isascii() and n.isdigit()
        assert (r.status_code != 400) == valid, (n, r.status_code)


# -- WWW-Authenticate ---------------------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
tokens = st.text(alphabet=TCHAR, min_size=1, max_size=12)
# What a quoted-string can carry: HTAB, SP, VCHAR and obs-text (Latin-1 beyond ASCII).
quotable = st.text(alphabet=st.sampled_from(["\t", *map(chr, range(0x20, 0x7F)), *map(chr, range(0x80, 0x100))]),
                   max_size=30)
param_maps = st.dictionaries(tokens.map(str.lower), quotable, max_size=5)
token68s = st.from_regex(r"\A[A-Za-z0-9\-._~+/]+=*\Z", fullmatch=True)

# RFC 9110's challenge grammar as one regular expression: the oracle for what format_challenge writes.
_T = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QS = r'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_PARAM = rf"{_T}[ \t]*=[ \t]*(?:{_T}|{_QS})"
CHALLENGE_RE = re.compile(rf"{_T}(?: +(?:[A-Za-z0-9\-._~+/]+=*|{_PARAM}(?:[ \t]*,[ \t]*{_PARAM})*))?")


@FAST
@given(tokens, param_maps)
@example("Bearer", {"realm": "https://auth.example/token", "service": "registry", "scope": "repository:a/b:pull,push"})
@example("Basic", {"realm": 'say "hi" \\ bye'})
@example("Bearer", {"error": "insufficient_scope", "realm": ""})
def test_www_authenticate_round_trips(scheme, params):
    value = format_challenge(scheme, params)
    assert CHALLENGE_RE.fullmatch(value), value
    assert value.isascii() or all(ord(ch) < 0x100 for ch in value)
    assert parse_challenge(value) == (scheme, params)
    value.encode("latin-1")  # a header value


@FAST
@given(tokens, token68s)
def test_www_authenticate_token68_round_trips(scheme, token):
    value = format_challenge(scheme, {TOKEN68: token})
    assert CHALLENGE_RE.fullmatch(value)
    assert parse_challenge(value) == (scheme, {TOKEN68: token})


@FAST
@given(st.lists(st.tuples(tokens, st.one_of(param_maps, token68s.map(lambda t: {TOKEN68: t}))), min_size=1,
                max_size=4))
def test_several_challenges_round_trip(challenges):
    value = format_challenges(challenges)
    assert parse_challenges(value) == [(s, dict(p)) for s, p in challenges]


@FAST
@given(tokens, st.dictionaries(tokens, quotable, min_size=1, max_size=4), st.sampled_from([",", ", ", " , ", ",\t"]),
       st.sampled_from(["=", " = ", "\t="]))
def test_parse_accepts_the_whitespace_and_case_rfc_9110_allows(scheme, params, comma, equals):
    lowered = {}
    for k, v in params.items():
        lowered.setdefault(k.lower(), v)
    if len(lowered) != len(params):
        return  # names differing only in case are the same parameter: not a valid challenge
    body = comma.join(f'{k}{equals}"{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                      for k, v in params.items())
    assert parse_challenge(f"{scheme} {body}") == (scheme, lowered)


@FAST
@given(st.one_of(hostile_text, st.text(alphabet=TCHAR + ' ="\\,\t', max_size=60)))
@example('Bearer realm="unterminated')
@example('Bearer realm="a\\')
@example("Bearer realm=a realm=b")
@example('Bearer realm="a", REALM="b"')
@example("=x")
@example('Basic realm="\x00"')
def test_parse_raises_only_value_error(text):
    try:
        challenges = parse_challenges(text)
    except ValueError:
        return
    for scheme, params in challenges:
        assert re.fullmatch(_T, scheme)
        for name in params:
            assert name == TOKEN68 or re.fullmatch(_T, name) and name == name.lower()


@pytest.mark.parametrize("scheme,params", [
    ("Bad Scheme", {}),
    ("Bearer", {"bad name": "x"}),
    ("Bearer", {"realm": "line\nbreak"}),
    ("Bearer", {"realm": "\u2603"}),
    ("Bearer", {"realm": "a", "REALM": "b"}),
    ("Negotiate", {TOKEN68: "not token68!"}),
    ("Negotiate", {TOKEN68: "abc", "realm": "x"}),
])
def test_format_refuses_what_no_header_can_carry(scheme, params):
    with pytest.raises(ValueError):
        format_challenge(scheme, params)
