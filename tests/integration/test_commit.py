"""Layer commit at the engine level: a container's changes committed with ContainerService.commit and read
back through containers of the new image (added, changed and deleted files, opaque directories, hardlinks,
symlinks to host paths that are never followed, a large sparse file), the layer tar itself, empty commits,
and bad input that leaves nothing behind."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path

import pytest

from backend.engine.containers.service import ContainerService
from backend.engine.errors import Conflict, InvalidParameter, NotFound, Unavailable
from backend.engine.events import EventBus
from backend.engine.images.commit import EMPTY_LAYER_DIFF_ID, write_diff
from backend.engine.images.service import ImageService
from backend.engine.registry.client import RegistryClient
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry
from tests.integration.test_container_service import _unmount_leftovers, make_service  # noqa: F401 - autouse

pytestmark = [pytest.mark.root, pytest.mark.network]

SPARSE = 64 * 1024 * 1024


async def _run(service: ContainerService, image: str, script: str) -> str:
    """Run ``sh -c script`` in a new container of ``image`` until it exits 0; returns the container ID."""
    cid, _ = await service.create({"Image": image, "Cmd": ["sh", "-c", script]})
    await service.start(cid)
    code = await service.wait(cid)
    if code != 0:
        logs = b"".join([bytes(data) async for _, data in service.logs(cid)])
        raise AssertionError(f"{script!r} exited {code}: {logs.decode(errors='replace')}")
    return cid


def _layer_members(images: ImageService, diff_id: str) -> dict[str, tarfile.TarInfo]:
    with images.content.open(diff_id) as blob, tarfile.open(fileobj=blob, mode="r|") as tar:
        return {m.name.rstrip("/"): m for m in tar}


def test_commit_round_trip(busybox_image: LayoutImage, registry: LocalRegistry, tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "commit/bb:latest", registry)
    images = ImageService(str(tmp_path / "image"), RegistryClient())
    events = EventBus()
    service = make_service(tmp_path, images, events)
    base = f"{registry.domain}/commit/bb"
    secret = tmp_path / "host-secret"
    secret.write_text("host secret, never in a layer\n")

    async def scenario() -> None:
        await images.pull(base)
        first = await _run(service, base, (
            "echo added > /added && busybox mkdir -p /dir/old && echo o > /dir/old/f && echo x > /hl1 && "
            f"busybox ln /hl1 /hl2 && busybox ln -s {secret} /evil && busybox ln -s / /rootlink && "
            f"busybox rm /bin/id && busybox truncate -s {SPARSE} /sparse"))
        one = await service.commit(first, repo="committed/one", tag="v1", comment="first", author="me",
                                   changes=['CMD ["cat", "/added"]', "ENV STAGE=1"])
        parent = images.resolve(base)
        assert one.diff_ids[:-1] == parent.diff_ids and len(one.diff_ids) == len(parent.diff_ids) + 1
        assert images.resolve("committed/one:v1").id == one.id

        members = _layer_members(images, one.diff_ids[-1])
        assert members["evil"].issym() and members["evil"].linkname == str(secret)
        assert members["rootlink"].issym() and members["rootlink"].linkname == "/"
        assert members["bin/.wh.id"].isfile() and members["bin/.wh.id"].size == 0
        assert members["hl2"].islnk() and members["hl2"].linkname == "hl1"
        assert members["sparse"].size == SPARSE
        assert not any(name.startswith(("rootlink/", "evil/")) for name in members)
        with images.content.open(one.diff_ids[-1]) as blob:
            assert b"host secret" not in blob.read()

        config = images.config(one)
        assert config["config"]["Cmd"] == ["cat", "/added"] and "STAGE=1" in config["config"]["Env"]
        assert config["author"] == "me" and config["container"] == service.inspect(first)["Id"]
        assert config["history"][-1]["comment"] == "first"
        assert config["history"][-1]["created_by"].startswith("sh -c echo added > /added")
        history = images.history("committed/one:v1")
        assert history[0].comment == "first" and history[0].size > SPARSE

        second = await _run(service, "committed/one:v1", (
            "test -L /evil && test -L /rootlink && ! test -e /bin/id && test \"$(cat /hl2)\" = x && "
            f"test \"$(busybox wc -c < /sparse)\" -eq {SPARSE} && echo changed > /added && busybox rm -rf /dir && "
            "busybox mkdir /dir && echo new > /dir/new && busybox rm /hl1"))
        logs = b"".join([bytes(d) async for _, d in service.logs(second)])
        assert logs == b""
        two = await service.commit(second, repo="committed/two")
        members = _layer_members(images, two.diff_ids[-1])
        assert "dir/.wh..wh..opq" in members and ".wh.hl1" in members and members["added"].size == len("changed\n")

        assert images.config(two)["config"]["Cmd"][:2] == ["sh", "-c"]  # without changes: the container's own
        check, _ = await service.create({"Image": "committed/two", "Cmd": ["cat", "/added"]})
        await service.start(check)
        assert await service.wait(check) == 0
        assert b"".join([bytes(d) async for _, d in service.logs(check)]) == b"changed\n"
        merged = Path(service.filesystem(check)[1])
        assert sorted(os.listdir(merged / "dir")) == ["new"]
        assert not (merged / "hl1").exists() and (merged / "hl2").read_text() == "x\n"
        assert os.readlink(merged / "evil") == str(secret)

        for cid in (first, second, check):
            await service.remove(cid)

    asyncio.run(scenario())


def test_empty_commit_and_bad_input(busybox_image: LayoutImage, registry: LocalRegistry, tmp_path: Path) -> None:
    push_with_skopeo(busybox_image, "commit/empty:latest", registry)
    images = ImageService(str(tmp_path / "image"), RegistryClient())
    service = make_service(tmp_path, images, EventBus())
    base = f"{registry.domain}/commit/empty"

    async def scenario() -> None:
        await images.pull(base)
        cid, _ = await service.create({"Image": base, "Cmd": ["true"]})
        before = set(images.images.ids())
        for kwargs, error, message in (
            ({"repo": "Upper"}, InvalidParameter, "repository name must be lowercase"),
            ({"repo": "x:tag"}, InvalidParameter, "unexpected repository name: x:tag"),
            ({"repo": "x", "tag": "bad tag"}, InvalidParameter, "invalid tag format"),
            ({"changes": ["RUN rm -rf /"]}, InvalidParameter, "RUN is not a valid change command"),
            ({"config": ["not", "an", "object"]}, InvalidParameter, "expected a JSON object"),
            ({"config": {"Env": "A=1"}}, InvalidParameter, "Env must be a list of strings"),
        ):
            with pytest.raises(error, match=message):
                await service.commit(cid, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            await service.commit("no-such-container")
        assert set(images.images.ids()) == before

        empty = await service.commit(cid, config={"Cmd": "echo"})
        parent = images.resolve(base)
        assert empty.diff_ids == parent.diff_ids and empty.layer_blobs == parent.layer_blobs
        config = images.config(empty)
        assert config["history"][-1]["empty_layer"] is True and config["config"]["Cmd"] == ["echo"]
        assert images.history(empty.id)[0].size == 0
        assert not images.content.has(EMPTY_LAYER_DIFF_ID)

        images.remove(empty.id)
        images.remove(base, force=True)
        with pytest.raises(Conflict, match="was removed"):
            await service.commit(cid)
        await service.remove(cid)

    asyncio.run(scenario())


def test_layer_tar_is_deterministic(tmp_path: Path) -> None:
    """The same upper directory gives the same bytes; an empty one (or one with only the init layer's mount
    points) gives Docker's empty layer."""
    upper = tmp_path / "upper"
    upper.mkdir()
    empty = io.BytesIO()
    assert write_diff(str(upper), empty.write).diff_id == EMPTY_LAYER_DIFF_ID and len(empty.getvalue()) == 1024
    (upper / "proc").mkdir()  # mount points of the init layer, and a directory holding only those
    (upper / "etc").mkdir()
    (upper / "etc" / "hosts").write_text("")
    assert write_diff(str(upper), io.BytesIO().write).diff_id == EMPTY_LAYER_DIFF_ID
    (upper / "b").write_text("b")
    (upper / "a").mkdir()
    os.mknod(upper / "a" / "gone", 0o600 | 0o020000, 0)
    os.setxattr(upper / "a", "trusted.overlay.opaque", b"y")
    os.setxattr(upper / "b", "user.note", b"kept")
    os.setxattr(upper / "b", "trusted.overlay.origin", b"dropped")
    outs = [io.BytesIO(), io.BytesIO()]
    diffs = [write_diff(str(upper), out.write) for out in outs]
    assert diffs[0] == diffs[1] and outs[0].getvalue() == outs[1].getvalue()
    with tarfile.open(fileobj=io.BytesIO(outs[0].getvalue())) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a", "a/.wh..wh..opq", "a/.wh.gone", "b"]
    assert members[3].pax_headers.get("SCHILY.xattr.user.note") == "kept"
    assert not any(k.startswith("SCHILY.xattr.trusted") for m in members for k in m.pax_headers)
    os.setxattr(upper / "b", "trusted.overlay.metacopy", b"")
    with pytest.raises(Unavailable, match="overlayfs keeps its data in a lower layer"):
        write_diff(str(upper), io.BytesIO().write)
