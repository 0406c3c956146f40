"""The image service against a real registry (docker-registry on 127.0.0.1), compared with skopeo/umoci.

Images are built locally (tests/fixtures/images.py) and pushed with skopeo, an independent client.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.engine.errors import Forbidden, InvalidParameter, NotFound
from backend.engine.images.layer_store import chain_ids
from backend.engine.images.overlay import mount_rootfs, unmount_rootfs
from backend.engine.images.service import ImageService, Progress
from backend.engine.registry.auth import Credentials, StaticCredentials
from backend.engine.registry.client import Descriptor, RegistryClient
from tests.fixtures.images import LayoutImage, _skopeo, push_with_skopeo, skopeo_inspect_raw
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_service(root: Path, credentials: StaticCredentials | None = None) -> ImageService:
    return ImageService(str(root), RegistryClient(credentials=credentials))


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """path -> (type, mode, uid, gid, content or link target) for every entry under ``root``."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                detail: Any = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                detail = path.read_bytes()
            else:
                detail = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail)
    return out


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[list[Path]]:
    containers: list[Path] = []
    yield containers
    for c in containers:
        unmount_rootfs(str(c))


def merged_view(service: ImageService, name: str, where: Path, mounted: list[Path]) -> Path:
    record = service.resolve(name)
    mounted.append(where)
    return Path(mount_rootfs(service.layers, list(reversed(chain_ids(record.diff_ids))), str(where)))


def umoci_rootfs(registry: LocalRegistry, ref: str, tmp: Path) -> Path:
    """skopeo copies the image out of the registry (recompressing to gzip: umoci 0.4 reads no zstd) and
    umoci unpacks it."""
    tmp.mkdir(parents=True, exist_ok=True)
    _skopeo(["copy", "--quiet", "--src-tls-verify=false", "--src-no-creds", "--dest-compress-format", "gzip",
             f"docker://{registry.domain}/{ref}", f"oci:{tmp / 'layout'}:latest"], tmp)
    subprocess.run(["umoci", "unpack", "--image", f"{tmp / 'layout'}:latest", str(tmp / "bundle")],
                   check=True, capture_output=True)
    return tmp / "bundle" / "rootfs"


@pytest.mark.parametrize("image_name", ["busybox_image", "multilayer_image"])
def test_pull_matches_umoci_file_by_file(image_name: str, request: pytest.FixtureRequest, registry: LocalRegistry,
                                         tmp_path: Path, mounted: list[Path]) -> None:
    image: LayoutImage = request.getfixturevalue(image_name)
    push_with_skopeo(image, f"svc/{image.name}:latest", registry)
    service = make_service(tmp_path / "store")
    events: list[Progress] = []
    record = run(service.pull(f"{registry.domain}/svc/{image.name}", progress=events.append))
    assert service.resolve(f"{registry.domain}/svc/{image.name}:latest").id == record.id
    assert any(e.status == "Pull complete" for e in events)
    assert events[-1].status.startswith("Status: Downloaded newer image for")
    ours = tree(merged_view(service, record.id, tmp_path / "c", mounted))
    theirs = tree(umoci_rootfs(registry, f"svc/{image.name}", tmp_path / "umoci"))
    assert ours == theirs


def test_second_pull_is_up_to_date_and_reuses_layers(busybox_image: LayoutImage, registry: LocalRegistry,
                                                    tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "svc/again:latest", registry)
    service = make_service(tmp_path / "store")
    events: list[Progress] = []

    async def twice() -> None:
        await service.pull(f"{registry.domain}/svc/again")
        await service.pull(f"{registry.domain}/svc/again", progress=events.append)

    run(twice())
    assert [e.status for e in events if e.id and e.status == "Already exists"]
    assert events[-1].status.startswith("Status: Image is up to date")


def test_auth_registry(busybox_image: LayoutImage, auth_registry: LocalRegistry, tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "private/bb:latest", auth_registry, creds=("berth", "s3cret"))
    with pytest.raises(Forbidden):
        run(make_service(tmp_path / "anon").pull(f"{auth_registry.domain}/private/bb"))
    creds = StaticCredentials({auth_registry.domain: Credentials("berth", "s3cret")})
    record = run(make_service(tmp_path / "user", creds).pull(f"{auth_registry.domain}/private/bb"))
    assert record.diff_ids


def test_unknown_image_is_not_found(registry: LocalRegistry, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        run(make_service(tmp_path / "s").pull(f"{registry.domain}/nosuch/image:1"))


def test_ten_concurrent_pulls_download_each_blob_once(multilayer_image: LayoutImage, registry: LocalRegistry,
                                                     tmp_path: Path) -> None:
    push_with_skopeo(multilayer_image, "svc/many:latest", registry)
    service = make_service(tmp_path / "store")
    since = registry.mark()

    async def pull_all() -> list[Any]:
        return await asyncio.gather(*(service.pull(f"{registry.domain}/svc/many") for _ in range(10)))

    records = run(pull_all())
    assert len({r.id for r in records}) == 1
    blob_gets = [e for e in registry.requests(since) if e.method == "GET" and "/blobs/" in e.path]
    per_blob: dict[str, int] = {}
    for e in blob_gets:
        per_blob[e.path] = per_blob.get(e.path, 0) + 1
    assert per_blob and all(n == 1 for n in per_blob.values()), per_blob
    assert os.listdir(service.content.ingest_dir) == []
    assert not [n for n in os.listdir(service.layers.layers_dir) if n.startswith("tmp-")]


def test_push_round_trip_keeps_the_digest(busybox_image: LayoutImage, registry: LocalRegistry,
                                          tmp_path: Path) -> None:
    original = push_with_skopeo(busybox_image, "svc/src:latest", registry)
    service = make_service(tmp_path / "store")
    events: list[Progress] = []

    async def pull_tag_push() -> str:
        await service.pull(f"{registry.domain}/svc/src")
        service.tag(f"{registry.domain}/svc/src", f"{registry.domain}/svc/dst:v1")
        return await service.push(f"{registry.domain}/svc/dst:v1", progress=events.append)

    digest = run(pull_tag_push())
    assert digest == original
    raw = skopeo_inspect_raw("svc/dst:v1", registry)
    assert "sha256:" + __import__("hashlib").sha256(raw).hexdigest() == digest
    assert events[-1].status == f"v1: digest: {digest} size: {len(raw)}"


def test_save_and_load_round_trip(multilayer_image: LayoutImage, registry: LocalRegistry, tmp_path: Path,
                                  mounted: list[Path]) -> None:
    push_with_skopeo(multilayer_image, "svc/saved:latest", registry)
    first = make_service(tmp_path / "one")
    record = run(first.pull(f"{registry.domain}/svc/saved"))
    archive = io.BytesIO()
    first.save([f"{registry.domain}/svc/saved"], archive)
    archive.seek(0)
    second = make_service(tmp_path / "two")
    events: list[Progress] = []
    loaded = run(second.load(archive, progress=events.append))
    assert [r.id for r in loaded] == [record.id]
    assert events == [Progress(f"Loaded image: {registry.domain}/svc/saved:latest")]
    assert second.resolve(f"{registry.domain}/svc/saved").id == record.id
    a = tree(merged_view(first, record.id, tmp_path / "c1", mounted))
    b = tree(merged_view(second, record.id, tmp_path / "c2", mounted))
    assert a == b


def test_load_rejects_garbage_and_keeps_the_store(busybox_image: LayoutImage, registry: LocalRegistry,
                                                  tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "svc/keep:latest", registry)
    service = make_service(tmp_path / "store")
    record = run(service.pull(f"{registry.domain}/svc/keep"))
    for payload in (b"not a tar", b"\0" * 10240):
        with pytest.raises(InvalidParameter):
            run(make_service(tmp_path / "store").load(io.BytesIO(payload)))
    assert service.resolve(f"{registry.domain}/svc/keep").id == record.id


async def _push_bad_image(registry: LocalRegistry, repo: str, config: dict[str, Any], layer: bytes) -> None:
    client = RegistryClient()
    try:
        from hashlib import sha256

        def desc(data: bytes, media_type: str) -> Descriptor:
            return Descriptor(media_type, "sha256:" + sha256(data).hexdigest(), len(data))

        raw_config = json.dumps(config).encode()
        layer_desc = desc(layer, "application/vnd.oci.image.layer.v1.tar")
        config_desc = desc(raw_config, "application/vnd.oci.image.config.v1+json")
        for d, data in ((layer_desc, layer), (config_desc, raw_config)):
            await client.push_blob(registry.domain, repo, d, lambda data=data: io.BytesIO(data))
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc.to_json(), "layers": [layer_desc.to_json()]}
        await client.put_manifest(registry.domain, repo, "latest", manifest["mediaType"],
                                  json.dumps(manifest).encode())
    finally:
        await client.aclose()


def _tar_with(name: str, data: bytes) -> bytes:
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("case", ["diff_id_count", "diff_id_mismatch", "escape"])
def test_hostile_images_are_refused_and_leave_the_store_intact(case: str, busybox_image: LayoutImage,
                                                               registry: LocalRegistry, tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "svc/good:latest", registry)
    good = run(make_service(tmp_path / "store").pull(f"{registry.domain}/svc/good"))
    layer = _tar_with("../escape" if case == "escape" else "file", b"data")
    from hashlib import sha256
    diff_id = "sha256:" + sha256(layer).hexdigest()
    diff_ids = {"diff_id_count": [diff_id, diff_id], "diff_id_mismatch": ["sha256:" + "0" * 64],
                "escape": [diff_id]}[case]
    config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    run(_push_bad_image(registry, f"svc/bad-{case.replace('_', '-')}", config, layer))
    service = make_service(tmp_path / "store")
    with pytest.raises(InvalidParameter):
        run(service.pull(f"{registry.domain}/svc/bad-{case.replace('_', '-')}"))
    assert [r.id for r in service.list_images()] == [good.id]
    assert not [n for n in os.listdir(service.layers.layers_dir) if n.startswith("tmp-")]
    assert not (tmp_path / "escape").exists() and not (tmp_path / "store" / "escape").exists()


def test_rmi_untags_then_deletes(busybox_image: LayoutImage, registry: LocalRegistry, tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "svc/rm:latest", registry)
    service = make_service(tmp_path / "store")
    record = run(service.pull(f"{registry.domain}/svc/rm"))
    service.tag(f"{registry.domain}/svc/rm", "other:1")
    assert service.remove("other:1") == [{"Untagged": "other:1"}]
    report = service.remove(f"{registry.domain}/svc/rm")
    assert report == [{"Untagged": f"{registry.domain}/svc/rm:latest"}, {"Deleted": record.id}]
    assert service.list_images() == [] and service.layers.chain_ids() == []
    with pytest.raises(NotFound):
        service.resolve(record.id)


def _rootfs_tar() -> bytes:
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in (("etc/hostname", b"imported\n"), ("hello.txt", b"hi\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_import_inspect_history_list_and_prune(tmp_path: Path) -> None:
    service = make_service(tmp_path / "store")
    record = run(service.import_rootfs(io.BytesIO(_rootfs_tar()), reference="imported:v1", message="from a tar",
                                       changes=["CMD [\"cat\", \"/hello.txt\"]", "ENV A=1 B=two",
                                                "LABEL team=core", "EXPOSE 8080", "WORKDIR /srv"]))
    doc = service.inspect("imported:v1")
    assert doc["Id"] == record.id and doc["RepoTags"] == ["imported:v1"]
    assert doc["Config"]["Cmd"] == ["cat", "/hello.txt"] and doc["Config"]["Env"] == ["A=1", "B=two"]
    assert doc["Config"]["ExposedPorts"] == {"8080/tcp": {}} and doc["Config"]["WorkingDir"] == "/srv"
    assert doc["Comment"] == "from a tar" and doc["RootFS"]["Layers"] == record.diff_ids
    history = service.history("imported:v1")
    assert len(history) == 1 and history[0].id == record.id and history[0].tags == ["imported:v1"]
    assert history[0].comment == "from a tar" and history[0].size == record.size

    other = run(service.import_rootfs(io.BytesIO(_rootfs_tar()), changes=["LABEL team=web"]))
    assert [s.id for s in service.list_images({"label": ["team=core"]})] == [record.id]
    assert [s.id for s in service.list_images({"reference": ["imported"]})] == [record.id]
    assert {s.id for s in service.list_images({"dangling": ["true"]})} == {other.id}
    with pytest.raises(InvalidParameter, match="invalid filter 'colour'"):
        service.list_images({"colour": ["red"]})

    report, reclaimed = service.prune()
    assert report == [{"Deleted": other.id}] and reclaimed > 0
    assert [s.id for s in service.list_images()] == [record.id]
    archive = io.BytesIO()
    service.save(["imported:v1"], archive)  # the imported layer blob is usable for save
    archive.seek(0)
    assert [r.id for r in run(make_service(tmp_path / "copy").load(archive))] == [record.id]


@pytest.mark.parametrize("change, message", [
    ("RUN echo hi", "RUN is not a valid change command"),
    ("EXPOSE 99999", "EXPOSE: invalid port"),
    ("ENV", "ENV requires at least one argument"),
    ("USER", "USER requires exactly one argument"),
])
def test_import_rejects_bad_changes(tmp_path: Path, change: str, message: str) -> None:
    service = make_service(tmp_path / "store")
    with pytest.raises(InvalidParameter, match=message):
        run(service.import_rootfs(io.BytesIO(_rootfs_tar()), changes=[change]))
    assert service.list_images() == []


def test_search_filters_like_docker(tmp_path: Path) -> None:
    from tests.fixtures.registry import LoopbackServer, send_bytes

    results = [
        {"name": "busybox", "description": "official", "star_count": 3000, "is_official": True, "is_automated": False},
        {"name": "a/busybox", "description": "", "star_count": 40, "is_official": False, "is_automated": True},
        {"name": "b/busybox", "description": "", "star_count": 1, "is_official": False, "is_automated": False},
    ]

    def handle(h: Any, req: Any) -> None:
        send_bytes(h, 200, json.dumps({"results": results}).encode(), {"Content-Type": "application/json"})

    with LoopbackServer(handle) as server:
        service = ImageService(str(tmp_path / "s"), RegistryClient(search_url=f"{server.url}/v1/search"))

        async def searches() -> list[list[str]]:
            out = []
            for filters in ({}, {"is-official": ["true"]}, {"stars": ["10"]},
                            {"is-automated": ["false"], "stars": ["2"]}):
                out.append([r.name for r in await service.search("busybox", filters=filters)])
            with pytest.raises(InvalidParameter, match="invalid filter 'stars=lots'"):
                await service.search("busybox", filters={"stars": ["lots"]})
            with pytest.raises(InvalidParameter, match="invalid filter 'colour'"):
                await service.search("busybox", filters={"colour": ["x"]})
            return out

        assert run(searches()) == [["busybox", "a/busybox", "b/busybox"], ["busybox"],
                                   ["busybox", "a/busybox"], ["busybox"]]
