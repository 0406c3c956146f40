"""parse_reference and friends: Docker 20.10's reference grammar, normalisation and error texts.

The expected values follow github.com/docker/distribution/reference (normalize.go, reference.go,
regexp.go) and go-digest v1.0.0, as vendored by Docker 20.10; the error texts are the ones the docker
CLI prints for ``docker pull <ref>``.
"""

from __future__ import annotations

import time

import pytest

from backend.engine.errors import InvalidParameter
from backend.engine.images.reference import (
    InvalidReference,
    Reference,
    is_full_image_id,
    parse_reference,
    parse_tag,
)

H = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"  # 64 hex
H512 = H * 2
H384 = H + H[:32]
D = f"sha256:{H}"
HUB = "registry-1.docker.io"

INVALID = "invalid reference format"
LOWER = "invalid reference format: repository name must be lowercase"
UPPER = "repository name must be lowercase"
TOO_LONG = "repository name must not be more than 255 characters"
D_LENGTH = "invalid checksum digest length"
D_FORMAT = "invalid checksum digest format"
D_UNSUPPORTED = "unsupported digest algorithm"
HEX_NAME = f"invalid repository name ({H}), cannot specify 64-byte hexadecimal strings"

# text, str(ref), ref.familiar(), ref.repository, ref.registry_host
VALID: list[tuple[str, str, str, str, str]] = [
    ("busybox", "docker.io/library/busybox", "busybox", "docker.io/library/busybox", HUB),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "docker.io/library/busybox", HUB),
    ("library/busybox", "docker.io/library/busybox", "busybox", "docker.io/library/busybox", HUB),
    ("docker.io/busybox", "docker.io/library/busybox", "busybox", "docker.io/library/busybox", HUB),
    (
        "docker.io/library/busybox:latest",
        "docker.io/library/busybox:latest",
        "busybox:latest",
        "docker.io/library/busybox",
        HUB,
    ),
    ("index.docker.io/library/busybox", "docker.io/library/busybox", "busybox", "docker.io/library/busybox", HUB),
    (
        "index.docker.io/busybox:musl",
        "docker.io/library/busybox:musl",
        "busybox:musl",
        "docker.io/library/busybox",
        HUB,
    ),
    ("index.docker.io/user/app", "docker.io/user/app", "user/app", "docker.io/user/app", HUB),
    ("user/app", "docker.io/user/app", "user/app", "docker.io/user/app", HUB),
    ("user/app:v2", "docker.io/user/app:v2", "user/app:v2", "docker.io/user/app", HUB),
    ("a/b/c/d", "docker.io/a/b/c/d", "a/b/c/d", "docker.io/a/b/c/d", HUB),
    # "library/" is dropped from the familiar name only before a single component
    ("library/a/b", "docker.io/library/a/b", "library/a/b", "docker.io/library/a/b", HUB),
    ("localhost/x", "localhost/x", "localhost/x", "localhost/x", "localhost"),
    ("localhost:5000/x", "localhost:5000/x", "localhost:5000/x", "localhost:5000/x", "localhost:5000"),
    (f"localhost:5000/x@{D}", f"localhost:5000/x@{D}", f"localhost:5000/x@{D}", "localhost:5000/x", "localhost:5000"),
    ("[::1]:5000/x", "[::1]:5000/x", "[::1]:5000/x", "[::1]:5000/x", "[::1]:5000"),
    ("[::1]/x:t", "[::1]/x:t", "[::1]/x:t", "[::1]/x", "[::1]"),
    (
        "[2001:DB8::a]:443/org/app",
        "[2001:DB8::a]:443/org/app",
        "[2001:DB8::a]:443/org/app",
        "[2001:DB8::a]:443/org/app",
        "[2001:DB8::a]:443",
    ),
    ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b", "127.0.0.1:5000"),
    (f"ghcr.io/org/app@{D}", f"ghcr.io/org/app@{D}", f"ghcr.io/org/app@{D}", "ghcr.io/org/app", "ghcr.io"),
    (f"repo:tag@{D}", f"docker.io/library/repo:tag@{D}", f"repo:tag@{D}", "docker.io/library/repo", HUB),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}", "docker.io/library/busybox", HUB),
    (
        f"busybox@sha512:{H512}",
        f"docker.io/library/busybox@sha512:{H512}",
        f"busybox@sha512:{H512}",
        "docker.io/library/busybox",
        HUB,
    ),
    (
        f"busybox@sha384:{H384}",
        f"docker.io/library/busybox@sha384:{H384}",
        f"busybox@sha384:{H384}",
        "docker.io/library/busybox",
        HUB,
    ),
    ("example.com/app", "example.com/app", "example.com/app", "example.com/app", "example.com"),
    (
        "xn--bcher-kva.example/app",
        "xn--bcher-kva.example/app",
        "xn--bcher-kva.example/app",
        "xn--bcher-kva.example/app",
        "xn--bcher-kva.example",
    ),
    # domains may have uppercase; paths may not
    (
        "Ex-Ample.COM:443/app",
        "Ex-Ample.COM:443/app",
        "Ex-Ample.COM:443/app",
        "Ex-Ample.COM:443/app",
        "Ex-Ample.COM:443",
    ),
    ("myhost:5000/app", "myhost:5000/app", "myhost:5000/app", "myhost:5000/app", "myhost:5000"),
    ("1.2.3.4/x", "1.2.3.4/x", "1.2.3.4/x", "1.2.3.4/x", "1.2.3.4"),
    (
        "registry-1.docker.io/x",
        "registry-1.docker.io/x",
        "registry-1.docker.io/x",
        "registry-1.docker.io/x",
        "registry-1.docker.io",
    ),
    # without a "/", "localhost" and "host:port" are a name and a tag
    ("localhost", "docker.io/library/localhost", "localhost", "docker.io/library/localhost", HUB),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000", "docker.io/library/localhost", HUB),
    ("example.com", "docker.io/library/example.com", "example.com", "docker.io/library/example.com", HUB),
    (f"sha256:{H}", f"docker.io/library/sha256:{H}", f"sha256:{H}", "docker.io/library/sha256", HUB),
    (f"busybox:{H}", f"docker.io/library/busybox:{H}", f"busybox:{H}", "docker.io/library/busybox", HUB),
    ("a_b", "docker.io/library/a_b", "a_b", "docker.io/library/a_b", HUB),
    ("a__b", "docker.io/library/a__b", "a__b", "docker.io/library/a__b", HUB),
    ("a.b", "docker.io/library/a.b", "a.b", "docker.io/library/a.b", HUB),
    ("a---b", "docker.io/library/a---b", "a---b", "docker.io/library/a---b", HUB),
    ("0/0", "docker.io/0/0", "0/0", "docker.io/0/0", HUB),
    (
        "busybox:Latest_V1.2-rc",
        "docker.io/library/busybox:Latest_V1.2-rc",
        "busybox:Latest_V1.2-rc",
        "docker.io/library/busybox",
        HUB,
    ),
    ("busybox:_", "docker.io/library/busybox:_", "busybox:_", "docker.io/library/busybox", HUB),
    (
        "busybox:" + "t" * 128,
        "docker.io/library/busybox:" + "t" * 128,
        "busybox:" + "t" * 128,
        "docker.io/library/busybox",
        HUB,
    ),
    # 18 + 237 = 255 characters of name, the most Docker 20.10 allows
    ("a" * 237, "docker.io/library/" + "a" * 237, "a" * 237, "docker.io/library/" + "a" * 237, HUB),
    ("x.io/" + "a" * 250, "x.io/" + "a" * 250, "x.io/" + "a" * 250, "x.io/" + "a" * 250, "x.io"),
    # Docker's quirk: a first component that is no valid domain but a valid path component is a path
    ("a_b.c/x", "a_b.c/x", "a_b.c/x", "a_b.c/x", ""),
    # a 64-hex name is refused for pulls only (see INVALID for the pull case)
    (H, f"docker.io/library/{H}", H, f"docker.io/library/{H}", HUB),
]

# text, for_pull, message
INVALID_CASES: list[tuple[str, bool, str]] = [
    ("", False, INVALID),
    ("Busybox", False, LOWER),
    ("library/Busybox", False, LOWER),
    ("foo/Bar", False, LOWER),
    ("Foo/bar", False, LOWER),
    ("localhost/X", False, LOWER),
    ("ghcr.io/Org/app", False, LOWER),
    ("ÉCOLE", False, LOWER),
    # Docker checks case up to the first ":", which can run into a digest
    (f"busybox@SHA256:{H}", False, LOWER),
    # an invalid (uppercase) domain that would be a valid lowercase path: distribution's Parse says so
    ("A_b.c/x", False, UPPER),
    ("a" * 238, False, TOO_LONG),
    ("x.io/" + "a" * 251, False, TOO_LONG),
    ("a" * 100_000, False, TOO_LONG),
    ("busybox:-x", False, INVALID),
    ("busybox:.x", False, INVALID),
    ("busybox:" + "t" * 129, False, INVALID),
    ("busybox:", False, INVALID),
    ("busybox:a/b", False, INVALID),
    ("busybox:a:b", False, INVALID),
    ("busybox:tag!", False, INVALID),
    ("busybox:tàg", False, INVALID),
    ("busybox@sha256:abc", False, INVALID),
    ("busybox@sha256:" + H[:31], False, INVALID),
    ("busybox@sha256:" + "g" * 64, False, INVALID),
    ("busybox@sha256:", False, INVALID),
    ("busybox@", False, INVALID),
    (f"busybox@1sha:{H}", False, INVALID),
    (f"busybox@{D}@{D}", False, INVALID),
    (f"busybox@{D}:tag", False, INVALID),
    ("busybox@sha256:" + H[:63], False, D_LENGTH),
    ("busybox@sha256:" + H + "a", False, D_LENGTH),
    ("busybox@sha256:" + H[:32], False, D_LENGTH),
    (f"busybox@sha512:{H}", False, D_LENGTH),
    (f"busybox@sha256:{H.upper()}", False, D_FORMAT),
    (f"busybox:tag@SHA256:{H}", False, D_FORMAT),
    (f"busybox@md5:{H[:32]}", False, D_UNSUPPORTED),
    (f"busybox@sha256+b64:{H}", False, D_UNSUPPORTED),
    (f"busybox@foo.bar:{H}", False, D_UNSUPPORTED),
    ("a//b", False, INVALID),
    (":tag", False, INVALID),
    (f"@{D}", False, INVALID),
    ("a/", False, INVALID),
    ("/a", False, INVALID),
    ("localhost/", False, INVALID),
    ("-abc", False, INVALID),
    ("abc-", False, INVALID),
    ("_abc", False, INVALID),
    (".abc", False, INVALID),
    ("a..b", False, INVALID),
    ("a___b", False, INVALID),
    ("a.-b", False, INVALID),
    ("a b", False, INVALID),
    ("école", False, INVALID),
    ("busybox\n", False, INVALID),
    ("busybox:tag\n", False, INVALID),
    ("foo:bar/x", False, INVALID),
    ("localhost:/x", False, INVALID),
    ("-foo.com/x", False, INVALID),
    ("foo-.com/x", False, INVALID),
    ("foo..com/x", False, INVALID),
    ("[]/x", False, INVALID),
    ("[fe80::1%eth0]/x", False, INVALID),
    ("[::1]:port/x", False, INVALID),
    ("::1/x", False, INVALID),
    ("https://github.com/docker/docker", False, INVALID),
    (H, True, HEX_NAME),
]


@pytest.mark.parametrize(("text", "full", "familiar", "repository", "registry_host"), VALID, ids=repr)
def test_valid_reference(text: str, full: str, familiar: str, repository: str, registry_host: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert ref.repository == repository
    assert ref.registry_host == registry_host
    # both printed forms parse back to the same reference
    assert parse_reference(full) == ref
    assert parse_reference(familiar) == ref


@pytest.mark.parametrize(("text", "for_pull", "message"), INVALID_CASES, ids=repr)
def test_invalid_reference(text: str, for_pull: bool, message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text, for_pull=for_pull)
    assert str(info.value) == message


def test_table_is_large_enough() -> None:
    assert len(VALID) + len(INVALID_CASES) >= 60


def test_fields_of_a_full_reference() -> None:
    ref = parse_reference(f"localhost:5000/org/app:v1@{D}")
    assert ref == Reference(domain="localhost:5000", path="org/app", tag="v1", digest=D)
    assert ref.familiar_name == "localhost:5000/org/app"


@pytest.mark.parametrize(
    ("text", "familiar_name"),
    [
        ("busybox", "busybox"),
        ("docker.io/library/busybox:1", "busybox"),
        ("user/app", "user/app"),
        ("library/a/b", "library/a/b"),
        ("localhost:5000/x", "localhost:5000/x"),
        ("ghcr.io/library/x", "ghcr.io/library/x"),
    ],
)
def test_familiar_name(text: str, familiar_name: str) -> None:
    assert parse_reference(text).familiar_name == familiar_name


def test_tag_and_digest_are_none_when_absent() -> None:
    ref = parse_reference("busybox")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("docker.io", "library/busybox", None, None)
    by_digest = parse_reference(f"busybox@{D}")
    assert (by_digest.tag, by_digest.digest) == (None, D)


def test_with_default_tag() -> None:
    assert str(parse_reference("busybox").with_default_tag()) == "docker.io/library/busybox:latest"
    assert parse_reference("busybox").with_default_tag().familiar() == "busybox:latest"
    assert str(parse_reference("busybox:1").with_default_tag()) == "docker.io/library/busybox:1"
    # a digest is enough: no tag is added
    assert str(parse_reference(f"busybox@{D}").with_default_tag()) == f"docker.io/library/busybox@{D}"


def test_hex_name_is_refused_for_pull_only() -> None:
    assert str(parse_reference(f"docker.io/{H}", for_pull=True)) == f"docker.io/library/{H}"
    assert str(parse_reference(f"{H}:tag", for_pull=True)) == f"docker.io/library/{H}:tag"
    assert parse_reference(H).path == f"library/{H}"


def test_invalid_reference_is_an_invalid_parameter() -> None:
    with pytest.raises(InvalidParameter):
        parse_reference("a//b")


@pytest.mark.parametrize("tag", ["latest", "1.36", "_", "A", "v1.2-rc_3", "t" * 128, H])
def test_parse_tag_accepts(tag: str) -> None:
    assert parse_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-x", ".x", "t" * 129, "a/b", "a:b", "a@b", "tàg", "latest\n", "a b"])
def test_parse_tag_refuses(tag: str) -> None:
    with pytest.raises(InvalidReference, match=r"^invalid tag format\Z"):
        parse_tag(tag)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (H, True),
        (f"sha256:{H}", True),
        (H.upper(), False),
        (H[:63], False),
        (H + "0", False),
        (f"sha512:{H}", False),
        (f"sha256:{H}\n", False),
        (H + "\n", False),
        ("", False),
        ("busybox", False),
    ],
)
def test_is_full_image_id(text: str, expected: bool) -> None:
    assert is_full_image_id(text) is expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domain": "docker.io", "path": "Busybox"}, INVALID),
        ({"domain": "docker.io", "path": "a//b"}, INVALID),
        ({"domain": "bad_domain", "path": "x"}, INVALID),
        ({"domain": "docker.io", "path": "a" * 250}, TOO_LONG),
        ({"domain": "docker.io", "path": "library/x", "tag": "-x"}, "invalid tag format"),
        ({"domain": "docker.io", "path": "library/x", "digest": "sha256:abc"}, INVALID),
        ({"domain": "docker.io", "path": "library/x", "digest": f"md5:{H[:32]}"}, D_UNSUPPORTED),
        ({"domain": "docker.io", "path": "library/x", "digest": f"sha256:{H.upper()}"}, D_FORMAT),
    ],
)
def test_reference_checks_its_invariants(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Reference(**kwargs)
    assert str(info.value) == message


def test_reference_is_frozen_and_hashable() -> None:
    ref = parse_reference("busybox:1")
    with pytest.raises(AttributeError):
        ref.tag = "2"  # type: ignore[misc]
    assert len({ref, parse_reference("docker.io/library/busybox:1")}) == 1


N = 100_000
HOSTILE = [
    "a-" * (N // 2),
    "a_" * (N // 2),
    "a__" * (N // 3) + "_",
    "a." * (N // 2),
    "a/" * (N // 2),
    "a" + "-" * N + "!",
    "a-" * (N // 2) + "/x",
    "a." * (N // 2) + ":5000/x",
    "[" + ":" * N + "]/x",
    "[::1]:" + "5" * N + "/x",
    "x.io/" + "a" * N + ":" + "t" * N,
    "x.io/" + "a/" * (N // 2) + "B",
    "busybox@sha256:" + "0" * N,
    "busybox@" + "a+" * (N // 2) + ":" + "0" * 64,
    "A_b.c/" + "x/" * (N // 2),
    "a._-" * (N // 4),
    "A" * N,
    "@" * N,
    "0" * N,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda s: repr(s[:12]))
@pytest.mark.parametrize("for_pull", [False, True])
def test_hostile_input_is_rejected_quickly(text: str, for_pull: bool) -> None:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with pytest.raises(InvalidReference):
            parse_reference(text, for_pull=for_pull)
        best = min(best, time.perf_counter() - start)
    assert best < 0.05, f"{best * 1000:.1f} ms"
