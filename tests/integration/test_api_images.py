"""The image endpoints end to end: the API server in-process on a unix socket, a real ImageService on
a temp root and a real registry (docker-registry on 127.0.0.1), driven by the stock docker CLI, the
docker SDK for Python and Berth's EngineClient.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.api.client import EngineClient
from backend.api.errors import APIError, ForbiddenError, NotFoundError
from backend.api.types import RegistryAuth
from tests.fixtures.api_server import ApiServer, docker_cli_or_skip
from tests.fixtures.images import LayoutImage, push_with_skopeo, skopeo_inspect_raw
from tests.fixtures.registry import AUTH_PASSWORD, AUTH_USER, LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with ApiServer() as srv:
        yield srv


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def collect(agen: Any) -> list[Any]:
    async def run() -> list[Any]:
        return [item async for item in agen]
    return asyncio.run(run())


def http_client(server: ApiServer) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=server.socket), base_url="http://api.moby.localhost",
                        timeout=30)


# --- the docker CLI -------------------------------------------------------------------------------


def test_docker_cli_image_lifecycle(server: ApiServer, registry: LocalRegistry, busybox_image: LayoutImage,
                                    tmp_path: Path) -> None:
    docker_cli_or_skip()
    repo = unique("cli")
    push_with_skopeo(busybox_image, f"{repo}:1", registry)
    name = f"{registry.domain}/{repo}:1"

    out = server.docker("pull", name).stdout
    assert "Pull complete" in out and f"Status: Downloaded newer image for {name}" in out, out
    assert "Image is up to date" in server.docker("pull", name).stdout

    rows = [json.loads(line) for line in server.docker("images", "--format", "{{json .}}").stdout.splitlines()]
    assert [(r["Repository"], r["Tag"]) for r in rows] == [(f"{registry.domain}/{repo}", "1")]
    inspect = json.loads(server.docker("image", "inspect", name).stdout)[0]
    assert inspect["RepoTags"] == [name] and inspect["Os"] == "linux"
    assert inspect["Config"]["Cmd"] == ["sh"] and len(inspect["RootFS"]["Layers"]) == 1
    image_id = inspect["Id"]
    history = server.docker("history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}", name).stdout
    assert history.splitlines()[0].startswith(image_id + "|")

    # tag and push under a new name; the registry then has the same manifest bytes
    pushed = f"{registry.domain}/{repo}-pushed:2"
    server.docker("tag", name, pushed)
    out = server.docker("push", pushed).stdout
    assert "2: digest: sha256:" in out, out
    assert skopeo_inspect_raw(f"{repo}-pushed:2", registry) == skopeo_inspect_raw(f"{repo}:1", registry)

    # save, remove, load back
    archive = tmp_path / "saved.tar"
    server.docker("save", "-o", str(archive), name)
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    out = server.docker("rmi", name, pushed).stdout
    assert f"Untagged: {name}" in out and f"Deleted: {image_id}" in out, out
    assert server.docker("images", "-q").stdout.strip() == ""
    out = server.docker("load", "-i", str(archive)).stdout
    assert f"Loaded image: {name}" in out, out
    assert json.loads(server.docker("image", "inspect", name).stdout)[0]["Id"] == image_id

    # errors come back as the CLI expects
    missing = server.docker("pull", f"{registry.domain}/{repo}-missing:1", check=False)
    assert missing.returncode == 1 and "manifest unknown" in missing.stderr.lower() + missing.stdout.lower()
    gone = server.docker("rmi", "nope:nope", check=False)
    assert gone.returncode == 1 and "No such image: nope:nope" in gone.stderr


def test_docker_cli_import_and_events(server: ApiServer, tmp_path: Path) -> None:
    docker_cli_or_skip()
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        data = b"hello from import\n"
        info = tarfile.TarInfo("etc/greeting")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    since = time.time()
    out = server.docker("import", "--change", "CMD [\"cat\", \"/etc/greeting\"]", "-m", "imported",
                        str(rootfs), "imported:1").stdout.strip()
    assert out.startswith("sha256:")
    inspect = json.loads(server.docker("image", "inspect", "imported:1").stdout)[0]
    assert inspect["Id"] == out and inspect["Config"]["Cmd"] == ["cat", "/etc/greeting"]
    assert inspect["Comment"] == "imported"
    events = server.docker("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.5:.3f}",
                           "--filter", "type=image", "--format", "{{.Type}} {{.Action}}").stdout
    assert "image import" in events, events


# --- the docker SDK -------------------------------------------------------------------------------


def test_docker_sdk_images(server: ApiServer, registry: LocalRegistry, busybox_image: LayoutImage) -> None:
    docker = pytest.importorskip("docker")
    repo = unique("sdk")
    push_with_skopeo(busybox_image, f"{repo}:latest", registry)
    client = docker.DockerClient(base_url=server.url)
    try:
        assert client.api.api_version == "1.41"
        assert client.ping() is True
        image = client.images.pull(f"{registry.domain}/{repo}", tag="latest")
        assert image.tags == [f"{registry.domain}/{repo}:latest"]
        assert [i.id for i in client.images.list()] == [image.id]
        got = client.images.get(f"{registry.domain}/{repo}:latest")
        assert got.id == image.id and got.attrs["Config"]["Cmd"] == ["sh"]
        assert image.tag("sdk-local", "v1") is True
        assert sorted(client.images.get(image.id).tags) == sorted([f"{registry.domain}/{repo}:latest",
                                                                    "sdk-local:v1"])
        blob = b"".join(image.save(named=True))
        with pytest.raises(docker.errors.APIError) as conflict:
            client.images.remove(image.id)
        assert conflict.value.status_code == 409
        client.images.remove(image.id, force=True)
        assert client.images.list() == []
        loaded = client.images.load(blob)
        assert [i.id for i in loaded] == [image.id]
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("no-such-image:1")
        with pytest.raises(docker.errors.NotFound):
            client.images.pull(f"{registry.domain}/{repo}-missing", tag="1")
        pruned = client.images.prune(filters={"dangling": False})
        assert pruned["ImagesDeleted"] and pruned["SpaceReclaimed"] > 0
        assert client.images.list() == []
        assert client.info()["Images"] == 0
    finally:
        client.close()


# --- Berth's EngineClient -----------------------------------------------------------------------


def test_engine_client_images(server: ApiServer, registry: LocalRegistry, busybox_image: LayoutImage) -> None:
    repo = unique("ec")
    push_with_skopeo(busybox_image, f"{repo}:1", registry)
    name = f"{registry.domain}/{repo}"

    async def run() -> None:
        async with EngineClient(server.url) as client:
            progress = [m async for m in client.pull(name, tag="1")]
            statuses = [m["status"] for m in progress]
            assert statuses[0] == f"Pulling from {repo}" and statuses[-1].startswith("Status: Downloaded newer")
            downloading = [m for m in progress if m["status"] == "Downloading"]
            assert downloading and downloading[-1]["progressDetail"]["total"] > 0
            assert downloading[-1]["progress"].startswith("[")
            assert all(len(m["id"]) == 12 for m in progress if m["status"] == "Pull complete")

            images = await client.list_images()
            assert [i.repo_tags for i in images] == [[f"{name}:1"]]
            inspect = await client.inspect_image(f"{name}:1")
            assert inspect.id == images[0].id and inspect.config["Cmd"] == ["sh"]
            history = await client.image_history(inspect.id)
            assert history[0].id == inspect.id and history[0].tags == [f"{name}:1"]

            await client.tag_image(f"{name}:1", f"{name}-copy", "2")
            pushed = [m async for m in client.push(f"{name}-copy", tag="2")]
            aux = [m["aux"] for m in pushed if "aux" in m]
            assert aux and aux[0]["Tag"] == "2" and aux[0]["Digest"].startswith("sha256:") and aux[0]["Size"] > 0
            assert any(m.get("status") in ("Pushed", "Layer already exists") for m in pushed)

            removed = await client.remove_image(f"{name}-copy:2")
            assert [r.untagged for r in removed] == [f"{name}-copy:2"]
            with pytest.raises(NotFoundError):
                await client.tag_image("sha256:" + "0" * 64, "x")

    asyncio.run(run())


def test_engine_client_save_load_prune_and_events(server: ApiServer, registry: LocalRegistry,
                                                  busybox_image: LayoutImage) -> None:
    repo = unique("ec2")
    push_with_skopeo(busybox_image, f"{repo}:1", registry)
    name = f"{registry.domain}/{repo}:1"

    async def run() -> None:
        async with EngineClient(server.url) as client:
            since = time.time()
            [m async for m in client.pull(name)]
            image_id = (await client.inspect_image(name)).id
            archive = b"".join([chunk async for chunk in client.save_images([name])])
            removed = await client.remove_image(name)
            assert [r.deleted for r in removed if r.deleted] == [image_id]
            with pytest.raises(NotFoundError):
                await client.inspect_image(name)

            async def chunks() -> Any:
                for i in range(0, len(archive), 65536):
                    yield archive[i:i + 65536]

            loaded = [m async for m in client.load_images(chunks(), quiet=True)]
            assert loaded == [{"stream": f"Loaded image: {name}\n"}]
            assert (await client.inspect_image(name)).id == image_id

            # A truncated archive is a 400 naming the problem, and the server goes on.
            with pytest.raises(APIError) as truncated:
                _ = [m async for m in client.load_images(archive[: len(archive) // 2])]
            assert truncated.value.status == 400 and "truncated or corrupt" in str(truncated.value)
            assert (await client.ping()).api_version == "1.41"
            df = await client.disk_usage()
            assert df["LayersSize"] > 0 and df["Images"][0]["Id"] == image_id

            report = await client.prune_images(filters={"dangling": ["false"]})
            assert [d.deleted for d in report.deleted if d.deleted] == [image_id] and report.space_reclaimed > 0

            actions = []
            async for event in client.events(since=since, until=time.time() + 0.2, filters={"type": ["image"]}):
                actions.append(event.action)
            assert actions[:1] == ["pull"] and "untag" in actions and "delete" in actions and "load" in actions

    asyncio.run(run())


def test_registry_auth_header(server: ApiServer, auth_registry: LocalRegistry, busybox_image: LayoutImage) -> None:
    repo = unique("private")
    push_with_skopeo(busybox_image, f"{repo}:1", auth_registry, creds=(AUTH_USER, AUTH_PASSWORD))
    name = f"{auth_registry.domain}/{repo}"

    async def run() -> None:
        async with EngineClient(server.url) as client:
            with pytest.raises(ForbiddenError):  # refused before the stream starts: an HTTP status
                [m async for m in client.pull(name, tag="1")]
            with pytest.raises(ForbiddenError):
                [m async for m in client.pull(name, tag="1", auth=RegistryAuth(AUTH_USER, "wrong"))]
            auth = RegistryAuth(AUTH_USER, AUTH_PASSWORD, serveraddress=auth_registry.domain)
            progress = [m async for m in client.pull(name, tag="1", auth=auth)]
            assert progress[-1]["status"].startswith("Status: Downloaded newer image")
            await client.tag_image(f"{name}:1", name, "2")
            pushed = [m async for m in client.push(name, tag="2", auth=auth)]
            assert any("aux" in m for m in pushed)

    asyncio.run(run())
    # The CLI's base64 of {"auth": "user:pass"} form works too.
    header = base64.b64encode(json.dumps(
        {"auth": base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()}).encode()).decode()
    with http_client(server) as http:
        resp = http.post("/v1.41/images/create", params={"fromImage": name, "tag": "2"},
                         headers={"X-Registry-Auth": header})
        assert resp.status_code == 200 and "Image is up to date" in resp.text


def test_stream_and_list_shapes_match_dockerd(server: ApiServer, registry: LocalRegistry,
                                              busybox_image: LayoutImage) -> None:
    repo = unique("shape")
    push_with_skopeo(busybox_image, f"{repo}:1", registry)
    with http_client(server) as http:
        with http.stream("POST", "/v1.41/images/create", params={"fromImage": f"{registry.domain}/{repo}",
                                                                  "tag": "1"},
                         headers={"X-Registry-Auth": "e30="}) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
            assert resp.headers["transfer-encoding"] == "chunked" and resp.headers["api-version"] == "1.41"
            lines = [json.loads(line) for line in resp.iter_lines() if line.strip()]
        assert lines[0] == {"status": f"Pulling from {repo}", "progressDetail": {}, "id": "1"}
        assert any(line["status"].startswith("Digest: sha256:") for line in lines)
        rows = http.get("/v1.41/images/json").json()
        assert set(rows[0]) == {"Containers", "Created", "Id", "Labels", "ParentId", "RepoDigests", "RepoTags",
                                "SharedSize", "Size", "VirtualSize"}
        assert rows[0]["Containers"] == -1 and rows[0]["SharedSize"] == -1 and rows[0]["ParentId"] == ""
        resp = http.post(f"/v1.41/images/{registry.domain}/{repo}:1/tag", params={"repo": "again"})
        assert resp.status_code == 201
        filtered = http.get("/v1.41/images/json", params={"filters": json.dumps({"reference": ["again"]})}).json()
        assert [r["Id"] for r in filtered] == [rows[0]["Id"]] and "again:latest" in filtered[0]["RepoTags"]
        resp = http.delete(f"/v1.41/images/{rows[0]['Id']}")
        assert resp.status_code == 409 and "must be forced" in resp.json()["message"]
        assert http.get("/v1.41/images/json", params={"filters": '{"dangling": ["maybe"]}'}).status_code == 400
        resp = http.post(f"/v1.41/images/{registry.domain}/{repo}-none/push", headers={"X-Registry-Auth": "e30="})
        assert resp.status_code == 400 and "does not exist locally" in resp.json()["message"]
