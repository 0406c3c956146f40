"""Hostile registry answers to ``docker pull`` through berthd: a fake registry (fake_registry.py) on 127.0.0.1
lies about digests, sizes, media types and platforms, sends oversized or endless documents, redirects to
127.0.0.2 (another host, where a second server records every hit), to other schemes and in loops, hands
out garbage tokens and hostile realms, and serves broken layers.

Every case ends in a clear one-line error holding the expected substring, the image does not exist, a
following good pull works, and the shared checks (conftest.py) find nothing half-written.

What Berth does with redirects, as Docker does: a redirect to another http(s) host is followed (registries
keep blobs in object storage elsewhere), without the ``Authorization`` header, which goes only to the
registry's own origin; the content is verified by digest wherever it came from. Redirects to other schemes
are refused, and more than 10 hops fail. Credentials (HTTP basic) go to the token realm the registry names,
even on another host, as Docker sends them (Docker Hub's realm is auth.docker.io); without a login nothing
is sent there. Nothing is ever sent to a realm that is not an http(s) URL.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.fixtures.berthd import Berthd
from tests.security.conftest import HostGuard
from tests.security.fake_registry import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Answer,
    FakeRegistry,
    drip,
    redirect,
    send,
    stall,
)
from tests.security.hostile import Tar, clear_error, gz, gzip_zeros_tar, image_config, sha256

pytestmark = [pytest.mark.root, pytest.mark.network]
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
TOKEN = "t0ken-" + uuid.uuid4().hex
Setup = Callable[[FakeRegistry, FakeRegistry, str], "str | None"]
"""Serves a case as repository ``repo`` (on the registry; the other host plays storage or realm);
returns the reference to pull when it is not ``repo:v1``."""


@dataclass(frozen=True)
class Case:
    id: str
    setup: Setup
    error: str


CASES: list[Case] = []


def case(error: str) -> Callable[[Setup], Setup]:
    """Register the decorated setup as a case whose pull fails with ``error`` (a message substring)."""
    def register(setup: Setup) -> Setup:
        CASES.append(Case(setup.__name__.replace("_", "-"), setup, error))
        return setup
    return register


def layer(repo: str) -> bytes:
    """A layer of the case's own (a pull skips layers it has already)."""
    return Tar().file("hello", f"hello from {repo}\n".encode()).bytes()


def tamper(data: bytes) -> bytes:
    """``data`` with its last byte changed (same length, another digest)."""
    return data[:-1] + bytes([data[-1] ^ 1])


def blob_path(repo: str, digest: object) -> str:
    return f"/v2/{repo}/blobs/{digest}"


def descriptor(doc: dict[str, object], key: str) -> dict[str, object]:
    value = doc[key]
    item = value[0] if isinstance(value, list) else value
    assert isinstance(item, dict)
    return item


def manifest_doc(reg: FakeRegistry, repo: str, layers: list[bytes], diff_ids: list[str] | None = None,
                 **fields: object) -> bytes:
    """A manifest document (bytes) of ``layers`` whose config and blobs ``reg`` serves; not yet a manifest."""
    config = image_config(diff_ids if diff_ids is not None else [sha256(layer) for layer in layers])
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": reg.blob(repo, config), "size": len(config)},
           "layers": [{"mediaType": OCI_LAYER, "digest": reg.blob(repo, layer), "size": len(layer)}
                      for layer in layers], **fields}
    return json.dumps(doc).encode()


def index_doc(*entries: dict[str, object], **fields: object) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries), **fields}).encode()


def entry(raw: bytes, media_type: str = OCI_MANIFEST, arch: str = "amd64") -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256(raw), "size": len(raw),
            "platform": {"os": "linux", "architecture": arch}}


def with_layer(reg: FakeRegistry, repo: str, **fields: object) -> None:
    """An image whose one layer descriptor has ``fields`` changed."""
    doc = json.loads(manifest_doc(reg, repo, [layer(repo)]))
    doc["layers"][0].update(fields)
    reg.manifest(repo, "v1", json.dumps(doc).encode())


def token(repo: str) -> str:
    """The bearer token that opens ``repo`` (and no other repository)."""
    return f"{TOKEN}-{hashlib.sha256(repo.encode()).hexdigest()[:12]}"


def token_answer(repo: str) -> Answer:
    return send(200, json.dumps({"token": token(repo), "expires_in": 300}).encode(),
                {"Content-Type": "application/json"})


def bearer(answer: Answer, repo: str, realm: str) -> Answer:
    """``answer`` for requests with ``repo``'s token, else 401 with a bearer challenge naming ``realm``."""
    challenge = send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                     {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake"',
                      "Content-Type": "application/json"})

    def answer_or_challenge(handler: http.server.BaseHTTPRequestHandler) -> None:
        ok = handler.headers.get("Authorization") == f"Bearer {token(repo)}"
        (answer if ok else challenge)(handler)
    return answer_or_challenge


def guard_repo(reg: FakeRegistry, repo: str, realm: str) -> None:
    """Every route of ``repo`` needs ``repo``'s bearer token, from ``realm``."""
    for path, answer in list(reg.routes.items()):
        if path.startswith(f"/v2/{repo}/"):
            reg.routes[path] = bearer(answer, repo, realm)


# --- content that does not match its digest or size ------------------------------------------------------


@case("verification failed")
def config_digest_mismatch(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    config = image_config([sha256(layer(repo))])
    reg.image(repo, "v1", [layer(repo)], config=config)
    reg.routes[blob_path(repo, sha256(config))] = send(200, tamper(config))


@case("verification failed")
def layer_digest_mismatch(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[blob_path(repo, sha256(layer(repo)))] = send(200, tamper(layer(repo)))


@case("longer than")
def layer_longer_than_its_size(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[blob_path(repo, sha256(layer(repo)))] = send(200, layer(repo) + b"\0" * 512)


@case("bytes, expected")
def layer_shorter_than_its_size(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[blob_path(repo, sha256(layer(repo)))] = send(200, layer(repo)[:len(layer(repo)) // 2])


@case("not the digest it was asked by")
def manifest_digest_mismatch(reg: FakeRegistry, other: FakeRegistry, repo: str) -> str:
    raw = manifest_doc(reg, repo, [layer(repo)])
    reg.routes[f"/v2/{repo}/manifests/{sha256(raw)}"] = send(200, manifest_doc(reg, repo, [layer(repo), layer(repo)]),
                                                             {"Content-Type": OCI_MANIFEST})
    return f"{repo}@{sha256(raw)}"


# --- indexes -----------------------------------------------------------------------------------------------


@case("not the digest it was asked by")
def index_entry_digest_mismatch(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    raw = manifest_doc(reg, repo, [layer(repo)])
    reg.manifest(repo, "v1", index_doc(entry(raw)), OCI_INDEX)
    reg.routes[f"/v2/{repo}/manifests/{sha256(raw)}"] = send(200, tamper(raw), {"Content-Type": OCI_MANIFEST})


@case("not the digest it was asked by")
def index_points_at_itself(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    """An index cannot hold its own digest, so the registry answers the entry's digest with the index."""
    child = manifest_doc(reg, repo, [layer(repo)])
    index = index_doc(entry(child, OCI_INDEX))
    reg.manifest(repo, "v1", index, OCI_INDEX)
    reg.routes[f"/v2/{repo}/manifests/{sha256(child)}"] = send(200, index, {"Content-Type": OCI_INDEX})


@case("no matching manifest for linux/amd64")
def index_without_the_platform(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    raw = manifest_doc(reg, repo, [layer(repo)])
    reg.manifest(repo, "s390x", raw)
    reg.manifest(repo, "v1", index_doc(entry(raw, arch="s390x"), entry(raw, arch="riscv64")), OCI_INDEX)


@case("no matching manifest for linux/amd64")
def index_entry_is_a_layer(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.blob(repo, layer(repo))
    reg.manifest(repo, "v1", index_doc(entry(layer(repo), OCI_LAYER)), OCI_INDEX)


@case("unsupported manifest type application/vnd.oci.image.index.v1+json")
def index_inside_an_index(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    inner = index_doc(entry(manifest_doc(reg, repo, [layer(repo)])))
    reg.manifest(repo, "inner", inner, OCI_INDEX)
    reg.manifest(repo, "v1", index_doc(entry(inner, OCI_INDEX)), OCI_INDEX)


# --- ambiguous and malformed manifests --------------------------------------------------------------------


@case("does not match Content-Type")
def content_type_against_media_type(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    raw = json.loads(manifest_doc(reg, repo, [layer(repo)]))
    raw["mediaType"] = DOCKER_MANIFEST
    reg.manifest(repo, "v1", json.dumps(raw).encode(), OCI_INDEX)


@case("ambiguous manifest")
def manifest_with_manifests(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    raw = manifest_doc(reg, repo, [layer(repo)])
    reg.manifest(repo, "v1", manifest_doc(reg, repo, [layer(repo)], manifests=[entry(raw)]))


@case("ambiguous manifest")
def index_with_layers(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    raw = manifest_doc(reg, repo, [layer(repo)])
    reg.manifest(repo, "other", raw)
    doc = json.loads(raw)
    reg.manifest(repo, "v1", index_doc(entry(raw), config=doc["config"], layers=doc["layers"]), OCI_INDEX)


@case("ambiguous manifest")
def untyped_document_with_both_shapes(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    raw = manifest_doc(reg, repo, [layer(repo)])
    reg.manifest(repo, "other", raw)
    doc = {**json.loads(raw), "manifests": [entry(raw)]}
    del doc["mediaType"]
    reg.manifest(repo, "v1", json.dumps(doc).encode(), "application/json")


@case("ambiguous manifest")
def schema1_and_schema2_fields(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    doc = {**json.loads(manifest_doc(reg, repo, [layer(repo)])), "mediaType": DOCKER_MANIFEST,
           "fsLayers": [{"blobSum": sha256(b"")}], "signatures": [{"header": {}, "signature": "x"}]}
    reg.manifest(repo, "v1", json.dumps(doc).encode(), DOCKER_MANIFEST)


@case("schema 1")
def schema1_under_a_schema2_content_type(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    doc = {"schemaVersion": 1, "name": repo, "tag": "v1", "fsLayers": [{"blobSum": reg.blob(repo, gz(layer(repo)))}]}
    reg.manifest(repo, "v1", json.dumps(doc).encode(), DOCKER_MANIFEST)


@case("not JSON")
def manifest_nested_200000_deep(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.manifest(repo, "v1", b'{"schemaVersion": 2, "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")


@case("image config is not valid JSON")
def config_nested_200000_deep(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)], config=b'{"x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")


@case("larger than 4194304 bytes")
def manifest_of_50_mib(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    raw = manifest_doc(reg, repo, [layer(repo)])
    reg.manifest(repo, "v1", raw[:-1] + b', "pad": "' + b"x" * (50 << 20) + b'"}')


@case("larger than 4194304 bytes")
def manifest_of_50_mib_unframed(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    """No Content-Length: the client finds out while reading."""
    raw = manifest_doc(reg, repo, [layer(repo)])
    reg.routes[f"/v2/{repo}/manifests/v1"] = send(200, raw[:-1] + b', "pad": "' + b"x" * (50 << 20) + b'"}',
                                                  {"Content-Type": OCI_MANIFEST, "Content-Length": "none"})


@case("image config sha256:")
def config_of_50_mib(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    config = image_config([sha256(layer(repo))])
    reg.image(repo, "v1", [layer(repo)], config=config[:-1] + b', "pad": "' + b"x" * (50 << 20) + b'"}')


# --- sizes and counts in descriptors ------------------------------------------------------------------------


@case(f"expected {2**63 - 1}")
def layer_size_of_2_63(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    with_layer(reg, repo, size=2**63 - 1)


@case("is not an integer in 0..")
def layer_size_of_10_40(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    with_layer(reg, repo, size=10**40)


@case("is not an integer in 0..")
def layer_size_negative(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    with_layer(reg, repo, size=-1)


@case("is not an integer in 0..")
def layer_size_a_float(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    with_layer(reg, repo, size=1e300)


@case("is not an integer in 0..")
def config_size_negative(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    doc = json.loads(manifest_doc(reg, repo, [layer(repo)]))
    doc["config"]["size"] = -(2**63)
    reg.manifest(repo, "v1", json.dumps(doc).encode())


@case("1 diff IDs but the manifest has 2 layers")
def more_layers_than_diff_ids(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.manifest(repo, "v1", manifest_doc(reg, repo, [layer(repo), Tar().file("b").bytes()], [sha256(layer(repo))]))


@case("2 diff IDs but the manifest has 1 layers")
def fewer_layers_than_diff_ids(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.manifest(repo, "v1", manifest_doc(reg, repo, [layer(repo)], [sha256(layer(repo)), sha256(layer(repo))]))


@case("diffID mismatch")
def diff_id_of_another_layer(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.manifest(repo, "v1", manifest_doc(reg, repo, [layer(repo)], [sha256(b"another layer")]))


# --- redirects ---------------------------------------------------------------------------------------------


@case("verification failed")
def blob_redirect_to_another_host_with_other_content(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    other.routes[f"/storage/{repo}"] = send(200, tamper(layer(repo)))
    reg.routes[blob_path(repo, sha256(layer(repo)))] = redirect(f"{other.url}/storage/{repo}")


@case("refusing redirect to file:")
def blob_redirect_to_a_file(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[blob_path(repo, sha256(layer(repo)))] = redirect(f"file:///etc/passwd?{repo}", 307)


@case("refusing redirect to ftp://")
def manifest_redirect_to_ftp(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.routes[f"/v2/{repo}/manifests/v1"] = redirect(f"ftp://{other.domain}/{repo}")


@case("more than 10 redirects")
def blob_redirect_loop(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[blob_path(repo, sha256(layer(repo)))] = redirect(blob_path(repo, sha256(layer(repo))))


@case("more than 10 redirects")
def manifest_redirect_ping_pong_between_hosts(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.routes[f"/v2/{repo}/manifests/v1"] = redirect(f"{other.url}/pong/{repo}")
    other.routes[f"/pong/{repo}"] = redirect(f"{reg.url}/v2/{repo}/manifests/v1", 307)


@case("HTTP 302")
def redirect_without_location(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.routes[f"/v2/{repo}/manifests/v1"] = send(302)


# --- authentication -----------------------------------------------------------------------------------------


@case("invalid token response")
def token_endpoint_returns_garbage(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[f"/token/{repo}"] = send(200, b"<html>\x00\xff not json", {"Content-Type": "application/json"})
    guard_repo(reg, repo, f"{reg.url}/token/{repo}")


@case("holds no token")
def token_endpoint_without_a_token(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[f"/token/{repo}"] = send(200, b'{"access_token": "", "expires_in": 5}')
    guard_repo(reg, repo, f"{reg.url}/token/{repo}")


@case("larger than 65536 bytes")
def token_of_50_mib(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[f"/token/{repo}"] = send(200, b'{"token": "' + b"t" * (50 << 20) + b'"}')
    guard_repo(reg, repo, f"{reg.url}/token/{repo}")


@case("invalid realm 'file:///etc/passwd'")
def realm_is_a_file(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    guard_repo(reg, repo, "file:///etc/passwd")


@case("invalid realm")
def realm_without_a_host(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    guard_repo(reg, repo, "http:///token")


@case("unauthorized")
def token_that_the_registry_refuses(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[f"/token/{repo}"] = send(200, b'{"token": "not-the-token"}')
    guard_repo(reg, repo, f"{reg.url}/token/{repo}")


@case("unauthorized")
def challenge_that_is_garbage(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.routes[f"/v2/{repo}/manifests/v1"] = send(401, b"", {"WWW-Authenticate": 'Bearer ,,="\\'})


# --- layers ------------------------------------------------------------------------------------------------


@case("truncated")
def truncated_gzip_layer(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    layer = gz(Tar().file("big", bytes(range(256)) * 4096).bytes())
    reg.image(repo, "v1", [layer[:len(layer) // 2]], config=image_config([sha256(b"unused")]),
              layer_type=OCI_LAYER_GZIP)


@case("ratio")
def gzip_bomb_layer(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    bomb = gzip_zeros_tar(64 << 20)
    reg.image(repo, "v1", [bomb], config=image_config([sha256(b"unused")]), layer_type=OCI_LAYER_GZIP)


@case("HTTP 500")
def registry_failing_with_500(reg: FakeRegistry, other: FakeRegistry, repo: str) -> None:
    reg.routes[f"/v2/{repo}/manifests/v1"] = send(500, b"oops\n" * 100_000)


# --- the corpus --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRegistry]:
    """The registry (127.0.0.1); it also serves ``good/image:v1``."""
    with FakeRegistry() as reg:
        reg.image("good/image", "v1", [gz(Tar().file("good", b"a good layer\n").bytes())], layer_type=OCI_LAYER_GZIP)
        yield reg


@pytest.fixture(scope="module")
def other() -> Iterator[FakeRegistry]:
    """Another host (127.0.0.2): blob storage or token realm; it records every hit."""
    with FakeRegistry("127.0.0.2") as reg:
        yield reg


def good_pull(daemon: Berthd, reg: FakeRegistry) -> None:
    """A good pull from the same registry works (then the image is removed again)."""
    image = f"{reg.domain}/good/image:v1"
    daemon.docker("pull", "-q", image, timeout=60)
    daemon.docker("rmi", image)


def pull(daemon: Berthd, image: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return daemon.docker("pull", "-q", image, check=False, timeout=timeout)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_pull(berthd_with_busybox: Berthd, fake: FakeRegistry, other: FakeRegistry, case: Case) -> None:
    repo = f"hostile/{case.id}-{uuid.uuid4().hex[:6]}"
    image = f"{fake.domain}/{case.setup(fake, other, repo) or repo + ':v1'}"
    result = pull(berthd_with_busybox, image)
    clear_error(result, case.error)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert berthd_with_busybox.docker("image", "inspect", image, check=False).returncode != 0
    good_pull(berthd_with_busybox, fake)


def test_oversized_config_is_never_downloaded(berthd_with_busybox: Berthd, fake: FakeRegistry,
                                              other: FakeRegistry) -> None:
    repo = f"hostile/huge-config-{uuid.uuid4().hex[:6]}"
    config_of_50_mib(fake, other, repo)
    clear_error(pull(berthd_with_busybox, f"{fake.domain}/{repo}:v1"), "larger than 8388608 bytes")
    assert not [p for p in fake.paths() if p.startswith(f"/v2/{repo}/blobs/")]


def test_blob_redirect_to_another_host_is_followed_without_credentials(
        berthd_with_busybox: Berthd, fake: FakeRegistry, other: FakeRegistry) -> None:
    """As Docker: the registry's token goes to the registry only; the blob store elsewhere gets no
    Authorization, and what it serves is verified (here it is right, so the pull works)."""
    repo = f"redirect/ok-{uuid.uuid4().hex[:6]}"
    fake.image(repo, "v1", [layer(repo)])
    other.routes[f"/storage/{repo}"] = send(200, layer(repo))
    fake.routes[blob_path(repo, sha256(layer(repo)))] = redirect(f"{other.url}/storage/{repo}", 307)
    fake.routes[f"/token/{repo}"] = token_answer(repo)
    guard_repo(fake, repo, f"{fake.url}/token/{repo}")
    image = f"{fake.domain}/{repo}:v1"
    berthd_with_busybox.docker("pull", "-q", image)
    try:
        [hit] = [h for h in other.hits if h.path == f"/storage/{repo}"]
        assert "authorization" not in hit.headers
        assert any(h.headers.get("authorization") == f"Bearer {token(repo)}" for h in fake.hits
                   if h.path == blob_path(repo, sha256(layer(repo))))
    finally:
        berthd_with_busybox.docker("rmi", image)


def test_credentials_go_only_to_the_realm_the_registry_names(berthd_with_busybox: Berthd, fake: FakeRegistry,
                                                             other: FakeRegistry) -> None:
    """Without a login the realm (on another host) gets no Authorization. After ``docker login`` it gets the
    user's basic credentials, as Docker sends them; the registry itself only ever sees the bearer token,
    and a blob redirected to a third place gets nothing."""
    repo = f"realm/{uuid.uuid4().hex[:6]}"
    fake.image(repo, "v1", [layer(repo)])
    fake.routes[blob_path(repo, sha256(layer(repo)))] = redirect(f"{other.url}/storage/{repo}", 307)
    other.routes[f"/storage/{repo}"] = send(200, layer(repo))
    other.routes[f"/token/{repo}"] = token_answer(repo)
    guard_repo(fake, repo, f"{other.url}/token/{repo}")
    fake.routes["/v2/"] = bearer(send(200, b"{}"), repo, f"{other.url}/token/{repo}")
    image = f"{fake.domain}/{repo}:v1"
    try:
        berthd_with_busybox.docker("pull", "-q", image)
        berthd_with_busybox.docker("rmi", image)
        tokens = [h for h in other.hits if h.path.startswith(f"/token/{repo}")]
        assert tokens and all("authorization" not in h.headers for h in tokens)
        other.hits.clear()
        berthd_with_busybox.docker("login", "-u", "alice", "--password-stdin", fake.domain, input="w0nderland\n")
        berthd_with_busybox.docker("pull", "-q", image)
        berthd_with_busybox.docker("rmi", image)
    finally:
        berthd_with_busybox.docker("logout", fake.domain, check=False)
        del fake.routes["/v2/"]
    basic = "Basic " + base64.b64encode(b"alice:w0nderland").decode()
    tokens = [h for h in other.hits if h.path.startswith(f"/token/{repo}")]
    assert tokens and all(h.headers.get("authorization") == basic for h in tokens)
    assert all("authorization" not in h.headers for h in other.hits if h.path.startswith("/storage/"))
    sent = {h.headers.get("authorization") for h in fake.hits if h.path == "/v2/" or h.path.startswith(f"/v2/{repo}/")}
    assert f"Bearer {token(repo)}" in sent and all(a is None or a.startswith(f"Bearer {TOKEN}") for a in sent)


# --- slow registries: a daemon whose registry timeout is 2 s ------------------------------------------------


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory, fake: FakeRegistry) -> Iterator[Berthd]:
    config = tmp_path_factory.mktemp("impatient") / "daemon.yaml"
    config.write_text("registry-timeout: 2\n")
    daemon = Berthd(extra_args=["--config-file", str(config)])
    try:
        daemon.start()
        good_pull(daemon, fake)  # what a first pull makes in the data root is not a case's leftover
        yield daemon
    finally:
        daemon.cleanup()


def manifest_drips(reg: FakeRegistry, repo: str) -> None:
    reg.routes[f"/v2/{repo}/manifests/v1"] = drip(b"{" + b" " * 100 + b"}", 0.3)


def manifest_stalls(reg: FakeRegistry, repo: str) -> None:
    reg.routes[f"/v2/{repo}/manifests/v1"] = stall(b"{", 1000)


def blob_stalls(reg: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[blob_path(repo, sha256(layer(repo)))] = stall(layer(repo)[:100], len(layer(repo)))


def token_endpoint_stalls(reg: FakeRegistry, repo: str) -> None:
    reg.image(repo, "v1", [layer(repo)])
    reg.routes[f"/token/{repo}"] = stall(b"{", 100)
    guard_repo(reg, repo, f"{reg.url}/token/{repo}")


SLOW = [(manifest_drips, "took more than 2 s"), (manifest_stalls, "timeout"), (blob_stalls, "ReadTimeout"),
        (token_endpoint_stalls, "timeout")]


@pytest.mark.parametrize(("setup", "error"), SLOW, ids=[s[0].__name__.replace("_", "-") for s in SLOW])
def test_slow_registry(impatient: Berthd, fake: FakeRegistry, setup: Callable[[FakeRegistry, str], None],
                       error: str) -> None:
    guard = HostGuard.snapshot(impatient)
    repo = f"slow/{setup.__name__.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    setup(fake, repo)
    clear_error(pull(impatient, f"{fake.domain}/{repo}:v1", timeout=60), error)
    good_pull(impatient, fake)
    assert not guard.problems()
