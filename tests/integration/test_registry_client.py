"""The registry client against a real registry (docker-registry 2.8 on 127.0.0.1) and tiny loopback servers.

Images are built locally (tests/fixtures/images.py) and pushed with skopeo; the client pulls them,
pushes its own, and skopeo reads those back. Cases a real registry cannot play (tampered content,
redirects to storage, dropped connections, token auth, search) use stdlib servers on other loopback
ports. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import http.server
import io
import itertools
import json
import os
import re
import stat
import tarfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import httpx
import pytest
import zstandard

from backend.engine import errors as engine_errors
from backend.engine.registry.auth import (
    DOCKER_HUB_AUTH_KEY,
    Credentials,
    CredentialStore,
    StaticCredentials,
    parse_www_authenticate,
)
from backend.engine.registry.client import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
    RegistryClient,
    RegistryForbidden,
    RegistryInvalid,
    RegistryNotFound,
    RegistryUnavailable,
)
from backend.engine.registry.manifest import MAX_MANIFEST_SIZE, digest_of, parse_manifest, select_platform
from tests.fixtures.images import (
    LayoutImage,
    pull_with_skopeo,
    push_v2s2_with_skopeo,
    push_with_skopeo,
    skopeo_inspect_raw,
)
from tests.fixtures.registry import (
    AUTH_PASSWORD,
    AUTH_USER,
    LocalRegistry,
    LoopbackServer,
    RecordedRequest,
    send_bytes,
)

# The shared fixtures, made visible here (tests/conftest.py may also list these modules in pytest_plugins).

pytestmark = pytest.mark.network

T = TypeVar("T")
Handler = http.server.BaseHTTPRequestHandler


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


def new_client(**kwargs: Any) -> RegistryClient:
    kwargs.setdefault("retry_delay", 0.01)
    kwargs.setdefault("timeout", 10.0)
    return RegistryClient(**kwargs)


def unique_repo(prefix: str = "t") -> str:
    return f"{prefix}/r{uuid.uuid4().hex[:10]}"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor_of(image: LayoutImage, digest: str, media_type: str = "application/octet-stream") -> Descriptor:
    return Descriptor(media_type=media_type, digest=digest, size=len(image.blob(digest)))


def blob_path(image: LayoutImage, digest: str) -> Path:
    return image.path / "blobs" / "sha256" / digest.partition(":")[2]


async def fetch_bytes(client: RegistryClient, domain: str, repo: str, desc: Descriptor, **kw: Any) -> bytes:
    sink = io.BytesIO()
    await client.fetch_blob(domain, repo, desc, sink, **kw)
    return sink.getvalue()


def tar_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.TarFile(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def with_creds(reg: LocalRegistry) -> StaticCredentials:
    assert reg.credentials is not None
    user, password = reg.credentials
    return StaticCredentials({reg.domain: Credentials(username=user, password=password)})


# --- pulling from a real registry ---------------------------------------------------------------------


def test_pull_oci_image_one_get_per_blob(registry: LocalRegistry, busybox_image: LayoutImage) -> None:
    repo = unique_repo()
    pushed = push_with_skopeo(busybox_image, f"{repo}:latest", registry)
    assert pushed == busybox_image.digest
    since = registry.mark()
    progress: list[tuple[int, int]] = []

    async def main() -> tuple[Manifest, Manifest, dict[str, bytes]]:
        async with new_client() as client:
            by_tag = await client.get_manifest(registry.domain, repo, "latest")
            by_digest = await client.get_manifest(registry.domain, repo, by_tag.digest)
            assert by_tag.config is not None
            blobs = {}
            for desc in (by_tag.config, *by_tag.layers):
                blobs[desc.digest] = await fetch_bytes(
                    client, registry.domain, repo, desc, progress=lambda d, t: progress.append((d, t))
                )
            return by_tag, by_digest, blobs

    manifest, by_digest, blobs = run(main())
    assert manifest.media_type == OCI_MANIFEST
    assert manifest.digest == busybox_image.digest == by_digest.digest
    assert manifest.raw == busybox_image.blob(busybox_image.digest) == by_digest.raw
    assert not manifest.manifests and not manifest.is_index
    assert [layer.media_type for layer in manifest.layers] == [OCI_LAYER_GZIP]
    for digest, data in blobs.items():
        assert data == busybox_image.blob(digest)
    assert progress[-1] == (manifest.layers[0].size, manifest.layers[0].size)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(progress) if a[1] == b[1])

    entries = registry.requests(since)
    for digest in blobs:
        gets = [e for e in entries if e.method == "GET" and e.path == f"/v2/{repo}/blobs/{digest}"]
        assert len(gets) == 1, f"expected one GET for {digest}, log: {entries}"
    assert all(e.user_agent == "berth/0.1" for e in entries)
    assert sum(e.method == "GET" and "/manifests/" in e.path for e in entries) == 2


def test_pull_docker_v2s2_image(registry: LocalRegistry, busybox_image: LayoutImage) -> None:
    repo = unique_repo()
    pushed = push_v2s2_with_skopeo(busybox_image, f"{repo}:v2", registry)

    async def main() -> tuple[Manifest, bytes, bytes]:
        async with new_client() as client:
            manifest = await client.get_manifest(registry.domain, repo, "v2")
            assert manifest.config is not None
            config = await fetch_bytes(client, registry.domain, repo, manifest.config)
            layer = await fetch_bytes(client, registry.domain, repo, manifest.layers[0])
            return manifest, config, layer

    manifest, config, layer = run(main())
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.digest == pushed
    assert manifest.config is not None and manifest.config.media_type == DOCKER_CONFIG
    assert [layer.media_type for layer in manifest.layers] == [DOCKER_LAYER_GZIP]
    doc = json.loads(config)
    assert doc["config"]["Cmd"] == ["sh"] and doc["os"] == "linux" and doc["architecture"] == "amd64"
    assert doc["rootfs"]["diff_ids"] == [sha256(gzip.decompress(layer))]


def test_pull_multilayer_gzip_and_zstd(registry: LocalRegistry, multilayer_image: LayoutImage) -> None:
    repo = unique_repo()
    push_with_skopeo(multilayer_image, repo, registry)

    async def main() -> tuple[Manifest, list[bytes]]:
        async with new_client(max_concurrent_downloads=2) as client:
            manifest = await client.get_manifest(registry.domain, repo, "latest")
            layers = await asyncio.gather(
                *(fetch_bytes(client, registry.domain, repo, desc) for desc in manifest.layers)
            )
            return manifest, list(layers)

    manifest, layers = run(main())
    assert manifest.digest == multilayer_image.digest
    assert [d.media_type for d in manifest.layers] == [OCI_LAYER_GZIP] * 3 + [OCI_LAYER_ZSTD]
    tars = [gzip.decompress(data) for data in layers[:3]]
    tars.append(zstandard.ZstdDecompressor().decompress(layers[3]))
    members = [tar_members(t) for t in tars]
    assert "etc/.wh.removed.txt" in members[1] and "opt/data/.wh..wh..opq" in members[1]
    assert members[2]["var/run"].issym() and members[2]["var/run"].linkname == "/run"
    assert members[2]["bin/link"].islnk() and members[2]["bin/link"].linkname == "/bin/tool"
    assert "etc/motd" in members[3]


def test_pull_with_basic_auth(auth_registry: LocalRegistry, busybox_image: LayoutImage, tmp_path: Path) -> None:
    repo = unique_repo()
    push_with_skopeo(busybox_image, repo, auth_registry, creds=(AUTH_USER, AUTH_PASSWORD))
    config = tmp_path / "config.json"
    token = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {auth_registry.domain: {"auth": token}}}))

    async def anonymous() -> None:
        async with new_client() as client:
            await client.get_manifest(auth_registry.domain, repo, "latest")

    with pytest.raises(RegistryForbidden) as info:
        run(anonymous())
    assert str(info.value) == "unauthorized: authentication required"
    assert isinstance(info.value, engine_errors.Forbidden)

    since = auth_registry.mark()

    async def authenticated() -> bytes:
        async with new_client(credentials=CredentialStore(config)) as client:
            manifest = await client.get_manifest(auth_registry.domain, repo, "latest")
            assert await client.blob_exists(auth_registry.domain, repo, manifest.layers[0].digest) is not None
            return await fetch_bytes(client, auth_registry.domain, repo, manifest.layers[0])

    layer = run(authenticated())
    assert layer == busybox_image.blob(busybox_image.manifest()["layers"][0]["digest"])
    statuses = [e.status for e in auth_registry.requests(since)]
    assert statuses.count(401) == 1, "basic credentials are sent up front once the registry asked for them"

    async def wrong_password() -> None:
        creds = StaticCredentials({auth_registry.domain: Credentials(username=AUTH_USER, password="nope")})
        async with new_client(credentials=creds) as client:
            await client.get_manifest(auth_registry.domain, repo, "latest")

    with pytest.raises(RegistryForbidden):
        run(wrong_password())


def test_index_platform_selection(registry: LocalRegistry, multiarch_image: LayoutImage) -> None:
    repo = unique_repo()
    push_with_skopeo(multiarch_image, repo, registry)
    entries = {m["platform"]["architecture"]: m["digest"] for m in multiarch_image.manifest()["manifests"]}

    async def main() -> tuple[Manifest, Manifest]:
        async with new_client() as client:
            index = await client.get_manifest(registry.domain, repo, "latest")
            arm = client.select_platform(index, Platform("linux", "arm64"))
            arm_manifest = await client.get_manifest(registry.domain, repo, arm.digest)
            return index, arm_manifest

    index, arm_manifest = run(main())
    assert index.is_index and index.media_type == OCI_INDEX and len(index.manifests) == 2
    assert index.digest == multiarch_image.digest
    assert index.config is None and index.layers == ()
    client = new_client()
    assert client.select_platform(index, Platform("linux", "amd64")).digest == entries["amd64"]
    assert client.select_platform(index, Platform("linux", "arm64", "v8")).digest == entries["arm64"]
    assert client.select_platform(index, Platform("linux", "aarch64")).digest == entries["arm64"]
    assert arm_manifest.digest == entries["arm64"]
    with pytest.raises(RegistryNotFound) as info:
        client.select_platform(index, Platform("linux", "ppc64le"))
    assert str(info.value) == "no matching manifest for linux/ppc64le in the manifest list entries"


def _index(*platforms: Platform | None) -> Manifest:
    manifests = [
        {"mediaType": OCI_MANIFEST, "digest": "sha256:" + f"{i:064x}", "size": 1}
        | (
            {"platform": {"os": p.os, "architecture": p.architecture} | ({"variant": p.variant} if p.variant else {})}
            if p
            else {}
        )
        for i, p in enumerate(platforms)
    ]
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    return parse_manifest(raw, digest_of(raw))


def test_select_platform_follows_containerd() -> None:
    arm7, arm64, amd64, i386 = (
        Platform("linux", "arm", "v7"),
        Platform("linux", "arm64", "v8"),
        Platform("linux", "amd64"),
        Platform("linux", "386"),
    )
    index = _index(arm7, arm64, amd64)
    assert select_platform(index, Platform("linux", "arm64")).platform == arm64  # native beats compatible
    assert select_platform(_index(arm7), Platform("linux", "arm64")).platform == arm7  # arm64 runs arm/v7
    assert select_platform(_index(i386, amd64), Platform("linux", "x86_64")).platform == amd64
    assert select_platform(_index(i386), Platform("linux", "amd64")).platform == i386
    assert select_platform(_index(Platform("linux", "amd64", "v2")), Platform("linux", "amd64", "v3")).platform == (
        Platform("linux", "amd64", "v2")
    )
    assert select_platform(_index(Platform("linux", "armhf")), Platform("linux", "arm")).platform == (
        Platform("linux", "armhf")
    )
    with pytest.raises(RegistryNotFound):
        select_platform(_index(arm7), Platform("linux", "arm", "v6"))  # v6 cannot run v7
    with pytest.raises(RegistryNotFound):
        select_platform(_index(Platform("windows", "amd64")), amd64)
    assert select_platform(_index(None), amd64).platform is None  # no platform: taken when nothing matches
    not_index = parse_manifest(
        json.dumps(
            {"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:" + "0" * 64, "size": 1}, "layers": []}
        ).encode(),
        "sha256:" + "1" * 64,
    )
    assert not_index.media_type == OCI_MANIFEST
    with pytest.raises(RegistryInvalid):
        select_platform(not_index, amd64)


def test_not_found_and_invalid_names(registry: LocalRegistry, busybox_image: LayoutImage) -> None:
    repo = unique_repo()
    push_with_skopeo(busybox_image, repo, registry)
    missing = Descriptor(OCI_LAYER_GZIP, "sha256:" + "ab" * 32, 10)

    async def main() -> list[BaseException | int | None]:
        async with new_client() as client:
            outcomes: list[BaseException | int | None] = []
            for call in (
                lambda: client.get_manifest(registry.domain, repo, "nope"),
                lambda: client.get_manifest(registry.domain, unique_repo(), "latest"),
                lambda: client.fetch_blob(registry.domain, repo, missing, io.BytesIO()),
                lambda: client.blob_exists(registry.domain, repo, missing.digest),
                lambda: client.get_manifest(registry.domain, "../etc", "latest"),
                lambda: client.get_manifest(registry.domain, repo, "bad tag"),
                lambda: client.get_manifest("bad/domain", repo, "latest"),
            ):
                try:
                    result: Any = await call()
                    outcomes.append(result)
                except RegistryInvalid as exc:
                    outcomes.append(exc)
                except RegistryNotFound as exc:
                    outcomes.append(exc)
            return outcomes

    tag, repo_missing, blob, exists, bad_repo, bad_tag, bad_domain = run(main())
    assert isinstance(tag, RegistryNotFound) and tag.code == "MANIFEST_UNKNOWN" and "manifest unknown" in str(tag)
    assert isinstance(tag, engine_errors.NotFound)
    assert isinstance(repo_missing, RegistryNotFound)
    assert isinstance(blob, RegistryNotFound) and blob.status == 404
    assert exists is None
    for exc in (bad_repo, bad_tag, bad_domain):
        assert isinstance(exc, RegistryInvalid) and isinstance(exc, engine_errors.InvalidParameter)


# --- loopback servers for what a real registry cannot do --------------------------------------------------

BLOB = os.urandom(200_000)
BLOB_DIGEST = sha256(BLOB)
BLOB_DESC = Descriptor(OCI_LAYER_GZIP, BLOB_DIGEST, len(BLOB))


def test_digest_and_size_mismatch_detected() -> None:
    tampered = bytearray(BLOB)
    tampered[1000] ^= 0xFF
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": BLOB_DESC.to_json(), "layers": []}
    ).encode()

    def handle(h: Handler, req: RecordedRequest) -> None:
        if req.path.endswith("/same-size/blobs/" + BLOB_DIGEST):
            send_bytes(h, 200, bytes(tampered))
        elif req.path.endswith("/longer/blobs/" + BLOB_DIGEST):
            send_bytes(h, 200, BLOB + b"extra")
        elif req.path.endswith("/shorter/blobs/" + BLOB_DIGEST):
            send_bytes(h, 200, BLOB[:-10])
        elif "/manifests/sha256:" in req.path:
            send_bytes(h, 200, manifest + b" ", {"Content-Type": OCI_MANIFEST})
        elif req.path.endswith("/manifests/huge"):
            send_bytes(h, 200, b" " * (MAX_MANIFEST_SIZE + 1), {"Content-Type": OCI_MANIFEST})
        elif req.path.endswith("/manifests/schema1"):
            send_bytes(h, 200, b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}')
        else:
            send_bytes(h, 404)

    async def main(domain: str) -> list[BaseException]:
        async with new_client() as client:
            outcomes: list[BaseException] = []
            for call in (
                lambda: fetch_bytes(client, domain, "x/same-size", BLOB_DESC),
                lambda: fetch_bytes(client, domain, "x/longer", BLOB_DESC),
                lambda: fetch_bytes(client, domain, "x/shorter", BLOB_DESC),
                lambda: client.get_manifest(domain, "x/m", digest_of(manifest)),
                lambda: client.get_manifest(domain, "x/m", "huge"),
                lambda: client.get_manifest(domain, "x/m", "schema1"),
            ):
                with pytest.raises(RegistryInvalid) as info:
                    await call()
                outcomes.append(info.value)
            return outcomes

    with LoopbackServer(handle) as server:
        same, longer, shorter, manifest_err, huge, schema1 = run(main(server.domain))
    assert "verification failed" in str(same)
    assert "longer" in str(longer)
    assert "expected" in str(shorter)
    assert "digest" in str(manifest_err)
    assert "larger than" in str(huge)
    assert "schema 1" in str(schema1)


def test_redirect_to_another_host_drops_authorization() -> None:
    auth = "Basic " + base64.b64encode(b"berth:s3cret").decode()

    def storage(h: Handler, req: RecordedRequest) -> None:
        send_bytes(h, 200, BLOB)

    with LoopbackServer(storage) as store:

        def registry_handler(h: Handler, req: RecordedRequest) -> None:
            if req.headers.get("authorization") != auth:
                send_bytes(
                    h,
                    401,
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                    {"WWW-Authenticate": 'Basic realm="fake"', "Content-Type": "application/json"},
                )
            elif req.path == f"/v2/x/far/blobs/{BLOB_DIGEST}":
                send_bytes(h, 307, headers={"Location": f"{store.url}/storage/blob?sig=1"})
            elif req.path == f"/v2/x/near/blobs/{BLOB_DIGEST}":
                send_bytes(h, 302, headers={"Location": "/local-storage/blob"})
            elif req.path == "/local-storage/blob":
                send_bytes(h, 200, BLOB)
            else:
                send_bytes(h, 404)

        with LoopbackServer(registry_handler) as reg:
            creds = StaticCredentials({reg.domain: Credentials(username="berth", password="s3cret")})

            async def main() -> tuple[bytes, bytes]:
                async with new_client(credentials=creds) as client:
                    far = await fetch_bytes(client, reg.domain, "x/far", BLOB_DESC)
                    near = await fetch_bytes(client, reg.domain, "x/near", BLOB_DESC)
                    return far, near

            far, near = run(main())
    assert far == BLOB and near == BLOB
    assert [r.path for r in store.requests] == ["/storage/blob?sig=1"]
    assert "authorization" not in store.requests[0].headers
    authorized = [r.path for r in reg.requests if r.headers.get("authorization") == auth]
    assert f"/v2/x/far/blobs/{BLOB_DIGEST}" in authorized
    assert "/local-storage/blob" in authorized  # same origin: the credentials follow


def test_upload_location_on_another_host_gets_no_credentials() -> None:
    auth = "Basic " + base64.b64encode(b"berth:s3cret").decode()

    def upload_store(h: Handler, req: RecordedRequest) -> None:
        send_bytes(h, 201, headers={"Docker-Content-Digest": BLOB_DIGEST})

    with LoopbackServer(upload_store) as store:

        def registry_handler(h: Handler, req: RecordedRequest) -> None:
            if req.headers.get("authorization") != auth:
                send_bytes(h, 401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
            elif req.method == "HEAD":
                send_bytes(h, 404)
            elif req.method == "POST":
                send_bytes(h, 202, headers={"Location": f"{store.url}/upload/abc?_state=xyz"})
            else:
                send_bytes(h, 400)

        with LoopbackServer(registry_handler) as reg:
            creds = StaticCredentials({reg.domain: Credentials(username="berth", password="s3cret")})

            async def main() -> None:
                async with new_client(credentials=creds) as client:
                    await client.push_blob(reg.domain, "x/y", BLOB_DESC, lambda: io.BytesIO(BLOB))

            run(main())
    assert len(store.requests) == 1
    put = store.requests[0]
    assert put.method == "PUT" and put.body == BLOB
    assert put.path == f"/upload/abc?_state=xyz&digest={BLOB_DIGEST.replace(':', '%3A')}"
    assert "authorization" not in put.headers


def test_resume_after_connection_drop() -> None:
    half = len(BLOB) // 2

    def handle(h: Handler, req: RecordedRequest) -> None:
        rng = req.headers.get("range")
        honour_range = "/ranged/" in req.path
        if rng is None:
            h.send_response(200)
            h.send_header("Content-Length", str(len(BLOB)))
            h.end_headers()
            h.wfile.write(BLOB[:half])
            h.wfile.flush()
            h.close_connection = True
            return
        start = int(re.match(r"bytes=(\d+)-", rng).group(1))  # type: ignore[union-attr]
        if honour_range:
            send_bytes(h, 206, BLOB[start:], {"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"})
        else:
            send_bytes(h, 200, BLOB)

    def always_drop(h: Handler, req: RecordedRequest) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(BLOB)))
        h.end_headers()
        h.wfile.write(BLOB[:1000])
        h.close_connection = True

    progress: list[tuple[int, int]] = []
    with LoopbackServer(handle) as server:

        async def main() -> tuple[bytes, bytes]:
            async with new_client() as client:
                ranged = await fetch_bytes(
                    client, server.domain, "x/ranged", BLOB_DESC, progress=lambda d, t: progress.append((d, t))
                )
                full = await fetch_bytes(client, server.domain, "x/plain", BLOB_DESC)
                return ranged, full

        ranged, full = run(main())
        requests = list(server.requests)
    assert ranged == BLOB and full == BLOB
    assert [r.headers.get("range") for r in requests] == [None, f"bytes={half}-", None, f"bytes={half}-"]
    assert progress[-1] == (len(BLOB), len(BLOB))
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)

    with LoopbackServer(always_drop) as server:

        async def dropping() -> None:
            async with new_client(retries=3) as client:
                await fetch_bytes(client, server.domain, "x/y", BLOB_DESC)

        with pytest.raises(RegistryUnavailable):
            run(dropping())
        assert len(server.requests) == 3


def test_retries_5xx_then_unavailable() -> None:
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": BLOB_DESC.to_json(), "layers": [BLOB_DESC.to_json()]}
    ).encode()
    failures = {"flaky": 2, "down": 100}

    def handle(h: Handler, req: RecordedRequest) -> None:
        name = req.path.split("/")[3]
        if failures[name] > 0:
            failures[name] -= 1
            send_bytes(h, 503, b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}')
        else:
            send_bytes(h, 200, manifest, {"Content-Type": OCI_MANIFEST})

    with LoopbackServer(handle) as server:

        async def main() -> tuple[Manifest, RegistryUnavailable]:
            async with new_client(retries=3) as client:
                ok = await client.get_manifest(server.domain, "x/flaky", "latest")
                with pytest.raises(RegistryUnavailable) as info:
                    await client.get_manifest(server.domain, "x/down", "latest")
                return ok, info.value

        ok, down = run(main())
        down_requests = [r for r in server.requests if "/down/" in r.path]
    assert ok.layers == (BLOB_DESC,)
    assert len(down_requests) == 3
    assert isinstance(down, engine_errors.Unavailable) and down.status == 503 and "try later" in str(down)

    closed = LoopbackServer(lambda h, r: None)
    with closed:
        port = closed.port

    async def refused() -> None:
        async with new_client(retries=2) as client:
            await client.get_manifest(f"127.0.0.1:{port}", "x/y", "latest")

    with pytest.raises(RegistryUnavailable):
        run(refused())


def test_foreign_layer_urls_are_never_fetched(registry: LocalRegistry) -> None:
    with LoopbackServer(lambda h, r: send_bytes(h, 200, BLOB)) as foreign:
        desc = Descriptor(
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            BLOB_DIGEST,
            len(BLOB),
            urls=(f"{foreign.url}/layer.tar.gz",),
        )

        async def main() -> None:
            async with new_client() as client:
                await client.fetch_blob(registry.domain, unique_repo(), desc, io.BytesIO())

        with pytest.raises(RegistryNotFound):
            run(main())
        assert foreign.requests == []


def test_download_concurrency_is_bounded() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def handle(h: Handler, req: RecordedRequest) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.1)
        with lock:
            active -= 1
        send_bytes(h, 200, BLOB)

    with LoopbackServer(handle) as server:

        async def main(limit: int) -> None:
            async with new_client(max_concurrent_downloads=limit) as client:
                await asyncio.gather(*(fetch_bytes(client, server.domain, "x/y", BLOB_DESC) for _ in range(3)))

        run(main(1))
        assert peak == 1
        peak = 0
        run(main(3))
        assert peak == 3


# --- pushing --------------------------------------------------------------------------------------------


def test_push_blobs_and_manifest_then_skopeo_reads_them(
    registry: LocalRegistry, busybox_image: LayoutImage, tmp_path: Path
) -> None:
    repo = unique_repo()
    raw = busybox_image.blob(busybox_image.digest)
    blobs = busybox_image.blob_digests()
    progress: dict[str, tuple[int, int]] = {}

    async def push() -> str:
        async with new_client() as client:
            for digest in blobs:
                desc = descriptor_of(busybox_image, digest)
                await client.push_blob(
                    registry.domain,
                    repo,
                    desc,
                    blob_path(busybox_image, digest),
                    progress=lambda d, t, digest=digest: progress.__setitem__(digest, (d, t)),  # type: ignore[misc]
                )
            return await client.put_manifest(registry.domain, repo, "v1", OCI_MANIFEST, raw)

    since = registry.mark()
    digest = run(push())
    assert digest == busybox_image.digest
    for d in blobs:
        assert progress[d][0] == progress[d][1] == len(busybox_image.blob(d))
    first = registry.requests(since)
    assert sum(e.method == "POST" for e in first) == len(blobs)
    assert sum(e.method == "PUT" and "/blobs/uploads/" in e.path for e in first) == len(blobs)

    assert skopeo_inspect_raw(f"{repo}:v1", registry) == raw
    pulled = pull_with_skopeo(f"{repo}:v1", registry, tmp_path / "pulled")
    assert pulled.digest == busybox_image.digest
    assert pulled.blob_digests() == blobs
    for d in blobs:
        assert pulled.blob(d) == busybox_image.blob(d)

    since = registry.mark()
    assert run(push()) == digest
    again = registry.requests(since)
    assert [e.method for e in again if "/blobs/" in e.path] == ["HEAD"] * len(blobs), "no re-upload"


def test_push_by_digest_and_rejects_mismatch(registry: LocalRegistry, busybox_image: LayoutImage) -> None:
    repo = unique_repo()
    raw = busybox_image.blob(busybox_image.digest)
    layer = busybox_image.manifest()["layers"][0]["digest"]

    async def main() -> list[BaseException | str]:
        async with new_client() as client:
            outcomes: list[BaseException | str] = []
            for digest in busybox_image.blob_digests():
                await client.push_blob(
                    registry.domain, repo, descriptor_of(busybox_image, digest), blob_path(busybox_image, digest)
                )
            outcomes.append(await client.put_manifest(registry.domain, repo, busybox_image.digest, OCI_MANIFEST, raw))
            wrong = Descriptor(OCI_LAYER_GZIP, "sha256:" + "cd" * 32, len(busybox_image.blob(layer)))
            short = Descriptor(OCI_LAYER_GZIP, layer, len(busybox_image.blob(layer)) + 5)
            for call in (
                lambda: client.put_manifest(registry.domain, repo, "sha256:" + "0" * 64, OCI_MANIFEST, raw),
                lambda: client.push_blob(registry.domain, unique_repo(), wrong, blob_path(busybox_image, layer)),
                lambda: client.push_blob(registry.domain, unique_repo(), short, blob_path(busybox_image, layer)),
                lambda: client.push_blob(
                    registry.domain, unique_repo(), wrong, blob_path(busybox_image, layer), chunk_size=100_000
                ),
                lambda: client.put_manifest(registry.domain, unique_repo(), "v1", OCI_MANIFEST, raw),
            ):
                try:
                    await call()
                    outcomes.append("no error")
                except RegistryInvalid as exc:
                    outcomes.append(exc)
            return outcomes

    pushed, *errors = run(main())
    assert pushed == busybox_image.digest
    assert all(isinstance(e, RegistryInvalid) for e in errors), errors
    assert errors[-1].code == "MANIFEST_BLOB_UNKNOWN"  # type: ignore[union-attr]


def test_cross_repo_mount(registry: LocalRegistry, busybox_image: LayoutImage) -> None:
    source, target, fallback = unique_repo(), unique_repo(), unique_repo()
    layer = busybox_image.manifest()["layers"][0]["digest"]
    desc = descriptor_of(busybox_image, layer)
    path = blob_path(busybox_image, layer)

    async def upload(repo: str, mount_from: str | None = None) -> int | None:
        async with new_client() as client:
            await client.push_blob(registry.domain, repo, desc, path, mount_from=mount_from)
            return await client.blob_exists(registry.domain, repo, layer)

    assert run(upload(source)) == desc.size
    since = registry.mark()
    assert run(upload(target, mount_from=source)) == desc.size
    entries = [e for e in registry.requests(since) if e.path.startswith(f"/v2/{target}/")]
    posts = [e for e in entries if e.method == "POST"]
    assert len(posts) == 1 and posts[0].status == 201
    assert f"mount={layer.replace(':', '%3A')}" in posts[0].query and "from=" in posts[0].query
    assert not [e for e in entries if e.method in ("PUT", "PATCH")]

    since = registry.mark()
    assert run(upload(fallback, mount_from=unique_repo())) == desc.size  # nothing to mount: uploads
    entries = [e for e in registry.requests(since) if e.path.startswith(f"/v2/{fallback}/")]
    assert [(e.method, e.status) for e in entries if e.method in ("POST", "PUT")] == [("POST", 202), ("PUT", 201)]


def test_chunked_upload(registry: LocalRegistry, tmp_path: Path) -> None:
    repo = unique_repo()
    data = os.urandom(300_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    desc = Descriptor("application/octet-stream", sha256(data), len(data))
    progress: list[int] = []

    def open_blob() -> BinaryIO:
        return path.open("rb")  # the client closes what the factory opens

    async def main() -> bytes:
        async with new_client() as client:
            await client.push_blob(
                registry.domain,
                repo,
                desc,
                open_blob,
                chunk_size=64 * 1024,
                progress=lambda d, t: progress.append(d),
            )
            return await fetch_bytes(client, registry.domain, repo, desc)

    since = registry.mark()
    assert run(main()) == data
    entries = registry.requests(since)
    assert sum(e.method == "PATCH" for e in entries) == 5  # ceil(300000 / 65536)
    assert [e.status for e in entries if e.method == "PUT"] == [201]
    assert progress[-1] == len(data)


def test_push_and_pull_with_basic_auth(auth_registry: LocalRegistry, busybox_image: LayoutImage) -> None:
    repo = unique_repo()
    raw = busybox_image.blob(busybox_image.digest)

    async def push(creds: StaticCredentials | None) -> str:
        async with new_client(credentials=creds) as client:
            for digest in busybox_image.blob_digests():
                await client.push_blob(
                    auth_registry.domain, repo, descriptor_of(busybox_image, digest), blob_path(busybox_image, digest)
                )
            return await client.put_manifest(auth_registry.domain, repo, "latest", OCI_MANIFEST, raw)

    with pytest.raises(RegistryForbidden):
        run(push(None))
    assert run(push(with_creds(auth_registry))) == busybox_image.digest
    assert skopeo_inspect_raw(repo, auth_registry, creds=(AUTH_USER, AUTH_PASSWORD)) == raw


# --- bearer tokens, login, credential helpers, search --------------------------------------------------


def _token_registry(
    manifest: bytes, token_requests: list[RecordedRequest]
) -> Callable[[Handler, RecordedRequest], None]:
    basic = "Basic " + base64.b64encode(b"berth:s3cret").decode()

    def handle(h: Handler, req: RecordedRequest) -> None:
        host = req.headers["host"]
        if req.path.startswith("/token"):
            token_requests.append(req)
            if req.method == "POST":
                form = dict(p.split("=", 1) for p in req.body.decode().split("&"))
                if form.get("refresh_token") == "refresh-me":
                    send_bytes(h, 200, json.dumps({"access_token": "tok-refresh", "expires_in": 300}).encode())
                else:
                    send_bytes(h, 401)
            elif req.headers.get("authorization") == basic:
                query = dict(p.split("=", 1) for p in req.path.split("?", 1)[1].split("&"))
                send_bytes(
                    h, 200, json.dumps({"token": "tok-" + query.get("scope", "none"), "expires_in": 300}).encode()
                )
            else:
                send_bytes(h, 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}')
            return
        repo = req.path.split("/")[2] + "/" + req.path.split("/")[3] if req.path.count("/") > 3 else ""
        scope = f"repository%3A{repo.replace('/', '%2F')}%3Apull"
        challenge = f'Bearer realm="http://{host}/token",service="fake",scope="repository:{repo}:pull"'
        if req.headers.get("authorization") not in (f"Bearer tok-{scope}", "Bearer tok-refresh"):
            send_bytes(
                h,
                401,
                b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                {"WWW-Authenticate": challenge},
            )
        elif "/manifests/" in req.path:
            send_bytes(h, 200, manifest, {"Content-Type": OCI_MANIFEST})
        else:
            send_bytes(h, 200, BLOB)

    return handle


def test_bearer_token_auth_and_cache() -> None:
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": BLOB_DESC.to_json(), "layers": [BLOB_DESC.to_json()]}
    ).encode()
    tokens: list[RecordedRequest] = []
    with LoopbackServer(_token_registry(manifest, tokens)) as server:
        creds = StaticCredentials({server.domain: Credentials(username="berth", password="s3cret")})

        async def main() -> bytes:
            async with new_client(credentials=creds) as client:
                await client.get_manifest(server.domain, "x/app", "latest")
                await client.get_manifest(server.domain, "x/app", "v2")
                return await fetch_bytes(client, server.domain, "x/app", BLOB_DESC)

        assert run(main()) == BLOB
        assert len(tokens) == 1, "one token per scope, cached"
        assert "scope=repository%3Ax%2Fapp%3Apull" in tokens[0].path and "service=fake" in tokens[0].path
        manifest_requests = [r for r in server.requests if "/manifests/" in r.path]
        assert [r.headers.get("authorization") is not None for r in manifest_requests] == [False, True, True]

        async def anonymous() -> None:
            async with new_client() as client:
                await client.get_manifest(server.domain, "x/app", "latest")

        with pytest.raises(RegistryForbidden):
            run(anonymous())

        refresh = StaticCredentials({server.domain: Credentials(identity_token="refresh-me")})

        async def with_identity_token() -> Manifest:
            async with new_client(credentials=refresh) as client:
                return await client.get_manifest(server.domain, "x/app", "latest")

        assert run(with_identity_token()).layers == (BLOB_DESC,)
        assert tokens[-1].method == "POST" and b"grant_type=refresh_token" in tokens[-1].body

        async def login(password: str) -> None:
            async with new_client(credentials=StaticCredentials()) as client:
                await client.login(server.domain, "berth", password)

        run(login("s3cret"))
        with pytest.raises(RegistryForbidden) as info:
            run(login("wrong"))
        assert str(info.value) == "unauthorized: incorrect username or password"


def test_login_logout_write_config_json(
    auth_registry: LocalRegistry,
    registry: LocalRegistry,
    busybox_image: LayoutImage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    config = tmp_path / ".docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"psFormat": "table {{.ID}}", "auths": {"other.example:5000": {"auth": "eDp5"}}}))
    store = CredentialStore()
    assert store.path == config
    repo = unique_repo()
    push_with_skopeo(busybox_image, repo, auth_registry, creds=(AUTH_USER, AUTH_PASSWORD))

    async def login(password: str) -> None:
        async with new_client(credentials=store) as client:
            await client.login(auth_registry.domain, AUTH_USER, password)

    with pytest.raises(RegistryForbidden):
        run(login("wrong"))
    assert auth_registry.domain not in json.loads(config.read_text())["auths"]

    run(login(AUTH_PASSWORD))
    doc = json.loads(config.read_text())
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert doc["psFormat"] == "table {{.ID}}" and "other.example:5000" in doc["auths"]
    assert base64.b64decode(doc["auths"][auth_registry.domain]["auth"]).decode() == f"{AUTH_USER}:{AUTH_PASSWORD}"
    assert not list(config.parent.glob(".config.json.*")), "no temp files left behind"

    async def pull() -> Manifest:
        async with new_client(credentials=CredentialStore()) as client:
            return await client.get_manifest(auth_registry.domain, repo, "latest")

    assert run(pull()).digest == busybox_image.digest

    async def logout(domain: str) -> bool:
        async with new_client(credentials=store) as client:
            return await client.logout(domain)

    assert run(logout(auth_registry.domain)) is True
    assert auth_registry.domain not in json.loads(config.read_text())["auths"]
    assert run(logout(auth_registry.domain)) is False

    async def login_open_registry() -> None:
        async with new_client(credentials=store) as client:
            await client.login(registry.domain, "anyone", "anything")

    run(login_open_registry())  # a registry without auth accepts any login, as with docker
    assert registry.domain in json.loads(config.read_text())["auths"]


def test_credential_store_keys_and_formats(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "cfg" / "config.json")
    assert store.get("docker.io") is None
    store.store("docker.io", Credentials(username="me", password="pw"))
    doc = json.loads(store.path.read_text())
    assert list(doc["auths"]) == [DOCKER_HUB_AUTH_KEY]
    for alias in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert store.get(alias) == Credentials(username="me", password="pw")
    store.path.write_text(
        json.dumps(
            {
                "auths": {
                    "http://127.0.0.1:5000/v2/": {"username": "u", "password": "p"},
                    "tok.example": {"identitytoken": "refresh"},
                    "bad.example": {"auth": "%%%"},
                }
            }
        )
    )
    assert store.get("127.0.0.1:5000") == Credentials(username="u", password="p")
    assert store.get("tok.example") == Credentials(identity_token="refresh")
    assert store.get("nothing.example") is None
    with pytest.raises(RegistryInvalid):
        store.get("bad.example")
    store.path.write_text("{not json")
    with pytest.raises(RegistryInvalid):
        store.get("x")
    assert [
        c.scheme for c in parse_www_authenticate('Bearer realm="https://a/token",service="a b", Basic realm=x')
    ] == ["bearer", "basic"]
    assert parse_www_authenticate('Bearer realm="https://a/t",scope="repository:x:pull,push"')[0].params == {
        "realm": "https://a/t",
        "scope": "repository:x:pull,push",
    }


def test_credential_helper(
    auth_registry: LocalRegistry, busybox_image: LayoutImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    saved = tmp_path / "helper-store.json"
    helper = bin_dir / "docker-credential-berthtest"
    helper.write_text(f"""#!/bin/sh
set -e
input=$(cat)
case "$1" in
  get)
    if [ "$input" = "{auth_registry.domain}" ]; then
      printf '{{"ServerURL":"%s","Username":"{AUTH_USER}","Secret":"{AUTH_PASSWORD}"}}' "$input"
    else
      echo "credentials not found in native keychain"; exit 1
    fi ;;
  store) printf '%s' "$input" > {saved} ;;
  erase) printf 'erased %s' "$input" > {saved} ;;
esac
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {auth_registry.domain: "berthtest"}}))
    store = CredentialStore(config)
    assert store.get(auth_registry.domain) == Credentials(username=AUTH_USER, password=AUTH_PASSWORD)
    assert store.get("elsewhere.example") is None
    repo = unique_repo()
    push_with_skopeo(busybox_image, repo, auth_registry, creds=(AUTH_USER, AUTH_PASSWORD))

    async def main() -> Manifest:
        async with new_client(credentials=store) as client:
            manifest = await client.get_manifest(auth_registry.domain, repo, "latest")
            await client.login(auth_registry.domain, AUTH_USER, AUTH_PASSWORD)
            return manifest

    assert run(main()).digest == busybox_image.digest
    assert json.loads(saved.read_text()) == {
        "ServerURL": auth_registry.domain,
        "Username": AUTH_USER,
        "Secret": AUTH_PASSWORD,
    }
    assert json.loads(config.read_text())["auths"] == {auth_registry.domain: {}}
    assert store.erase(auth_registry.domain) is True
    assert saved.read_text() == f"erased {auth_registry.domain}"

    config.write_text(json.dumps({"credsStore": "does-not-exist-berth"}))
    with pytest.raises(RegistryUnavailable):
        store.get(auth_registry.domain)


def test_search_against_a_local_imitation() -> None:
    results = [
        {
            "name": "busybox",
            "description": "Busybox base image.",
            "star_count": 3000,
            "is_official": True,
            "is_automated": False,
        },
        {"name": "someone/busybox", "description": None, "star_count": 2, "is_official": False, "is_automated": True},
    ]

    def handle(h: Handler, req: RecordedRequest) -> None:
        if req.path.startswith("/v1/search?"):
            body = {"num_results": len(results), "query": "busybox", "results": results}
            send_bytes(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})
        else:
            send_bytes(h, 404)

    with LoopbackServer(handle) as server:

        async def main() -> tuple[list[Any], list[Any]]:
            async with new_client(search_url=f"{server.url}/v1/search") as client:
                hub = await client.search("busybox", limit=2)
                prefixed = await client.search(f"{server.domain}/busybox", limit=1)
                with pytest.raises(RegistryInvalid):
                    await client.search("busybox", limit=0)
                return hub, prefixed

        hub, prefixed = run(main())
        paths = [r.path for r in server.requests]
    assert [r.name for r in hub] == ["busybox", "someone/busybox"]
    assert hub[0].is_official and hub[0].star_count == 3000 and hub[1].description == "" and hub[1].is_automated
    assert len(prefixed) == 1
    assert paths == ["/v1/search?q=busybox&n=2", "/v1/search?q=busybox&n=1"]


def test_scheme_choice_and_insecure_fallback() -> None:
    seen: list[str] = []
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": BLOB_DESC.to_json(), "layers": []}
    ).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        # No network: an in-memory transport that speaks only plain HTTP, like a registry without TLS.
        seen.append(str(request.url))
        if request.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number", request=request)
        return httpx.Response(200, content=manifest, headers={"Content-Type": OCI_MANIFEST})

    client = new_client(
        insecure_registries=["myregistry.test:5000", "10.0.0.0/8"], transport=httpx.MockTransport(handler)
    )
    assert client.base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert client.base_url("localhost:5000") == "http://localhost:5000"
    assert client.base_url("[::1]:5000") == "http://[::1]:5000"
    assert client.base_url("docker.io") == "https://registry-1.docker.io"
    assert client.base_url("quay.io") == "https://quay.io"
    assert client.is_insecure("10.1.2.3:5000") and not client.is_insecure("11.1.2.3")
    assert client.base_url("myregistry.test:5000") == "https://myregistry.test:5000"

    async def main() -> Manifest:
        async with client:
            return await client.get_manifest("myregistry.test:5000", "x/y", "latest")

    assert run(main()).config == BLOB_DESC
    assert seen == [
        "https://myregistry.test:5000/v2/x/y/manifests/latest",
        "http://myregistry.test:5000/v2/x/y/manifests/latest",
    ]
    assert client.base_url("myregistry.test:5000") == "http://myregistry.test:5000"

    secure = new_client(transport=httpx.MockTransport(handler))

    async def no_fallback() -> None:
        async with secure:
            await secure.get_manifest("secure.test", "x/y", "latest")

    with pytest.raises(RegistryUnavailable):
        run(no_fallback())
    assert not any(u.startswith("http://secure.test") for u in seen), "no plain HTTP for a secure registry"
