"""VolumeService and ContainerMounts on a real filesystem: metadata, filters, in-use refusal, driver option
mounts, seeding from an image directory, mount precedence and the recorded mount points."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.engine.containers.create_request import CreateRequest
from backend.engine.containers.mounts import ContainerMounts, MountPoint, seed_volume
from backend.engine.containers.store import ContainerStore, new_id
from backend.engine.errors import Conflict, InvalidParameter, NotFound, Unavailable
from backend.engine.events import EventBus
from backend.engine.volumes.service import VolumeService

pytestmark = pytest.mark.root


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


@pytest.fixture
def volumes(tmp_path: Path) -> Iterator[VolumeService]:
    service = VolumeService(str(tmp_path / "volumes"), EventBus())
    yield service
    for point in sorted(_mounts_under(tmp_path), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def test_create_get_list_remove(volumes: VolumeService) -> None:
    v = volumes.create("data1", labels={"team": "a"})
    assert (v.name, v.driver, v.labels, Path(v.mountpoint).is_dir()) == ("data1", "local", {"team": "a"}, True)
    assert volumes.create("data1", labels={"other": "x"}) == volumes.get("data1")  # the existing one
    anon = volumes.create(None, anonymous=True)
    assert len(anon.name) == 64 and anon.anonymous
    meta = json.loads((Path(volumes.root) / "data1" / "volume.json").read_text())
    assert meta["Labels"] == {"team": "a"}

    def names(**filters: list[str]) -> list[str]:
        return [v.name for v in volumes.list_volumes(filters)[0]]

    assert names(label=["team=a"]) == ["data1"]
    assert names(label=["team=b"]) == []
    assert names(name=["^data"]) == ["data1"]
    assert names(driver=["local"]) == sorted(["data1", anon.name])
    volumes.users = lambda name: ["c" * 64] if name == "data1" else []
    assert names(dangling=["true"]) == [anon.name]
    assert names(dangling=["0"]) == ["data1"]
    with pytest.raises(Conflict, match=f"remove data1: volume is in use - \\[{'c' * 64}\\]"):
        volumes.remove("data1")
    with pytest.raises(InvalidParameter, match="invalid filter 'colour'"):
        volumes.list_volumes({"colour": ["red"]})
    with pytest.raises(InvalidParameter, match="invalid filter 'dangling=maybe'"):
        volumes.list_volumes({"dangling": ["maybe"]})
    report = volumes.prune()
    assert report.deleted == [anon.name]
    volumes.users = lambda name: []
    volumes.remove("data1")
    with pytest.raises(NotFound, match="get data1: no such volume"):
        volumes.get("data1")
    volumes.remove("data1", force=True)


@pytest.mark.parametrize(("name", "options", "error", "message"), [
    ("x", None, InvalidParameter, "create x: volume name is too short"),
    ("../etc", None, InvalidParameter, 'create ../etc: "../etc" includes invalid characters'),
    ("ok1", {"size": "1g"}, InvalidParameter, 'create ok1: invalid option key: "size"'),
    ("ok2", {"type": "tmpfs"}, InvalidParameter, 'missing required option: "device"'),
])
def test_bad_creates(volumes: VolumeService, name: str, options: dict[str, str] | None, error: type[Exception],
                     message: str) -> None:
    with pytest.raises(error, match=message):
        volumes.create(name, options=options)
    assert volumes.scan() == ([], [])


def test_broken_metadata_is_reported_not_fatal(volumes: VolumeService) -> None:
    volumes.create("good1")
    volumes.create("bad1")
    (Path(volumes.root) / "bad1" / "volume.json").write_text("[1, 2")
    good, warnings = volumes.list_volumes()
    assert [v.name for v in good] == ["good1"] and "bad1" in warnings[0]
    with pytest.raises(Unavailable, match="volume bad1 is broken"):
        volumes.get("bad1")
    volumes.remove("bad1")
    assert volumes.scan()[1] == []


def test_tmpfs_and_bind_driver_options(volumes: VolumeService, tmp_path: Path) -> None:
    tmpfs = volumes.create("mem1", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=700"})
    path = volumes.mount_path(tmpfs)
    assert path in _mounts_under(tmp_path) and stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert volumes.mount_path(tmpfs) == path and _mounts_under(tmp_path).count(path) == 1  # mounted once
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("keep me")
    bound = volumes.create("bound1", options={"type": "none", "device": str(host), "o": "bind"})
    assert Path(volumes.mount_path(bound), "precious").read_text() == "keep me"
    volumes.remove("mem1")
    volumes.remove("bound1")
    assert _mounts_under(tmp_path) == [] and (host / "precious").read_text() == "keep me"
    missing = volumes.create("bound2", options={"type": "none", "device": str(tmp_path / "nope"), "o": "bind"})
    with pytest.raises(Unavailable, match="failed to mount local volume"):
        volumes.mount_path(missing)


def _image_dir(root: Path) -> None:
    seed = root / "seed"
    (seed / "sub").mkdir(parents=True)
    (seed / "file").write_text("content")
    os.chown(seed / "file", 1234, 1234)
    os.chmod(seed, 0o750)
    os.symlink("/etc/shadow", seed / "link")
    os.mkfifo(seed / "fifo")
    (root / "afile").write_text("not a directory")


def test_seed_copies_content_owners_and_links_without_following_them(tmp_path: Path) -> None:
    rootfs, data = tmp_path / "rootfs", tmp_path / "data"
    _image_dir(rootfs)
    data.mkdir()
    seed_volume(str(rootfs), MountPoint("volume", "/seed", str(data), "v", seed=True))
    assert sorted(p.name for p in data.iterdir()) == ["fifo", "file", "link", "sub"]
    assert (data / "file").stat().st_uid == 1234 and os.readlink(data / "link") == "/etc/shadow"
    assert stat.S_ISFIFO((data / "fifo").lstat().st_mode) and stat.S_IMODE(data.stat().st_mode) == 0o750
    (data / "file").write_text("changed")
    seed_volume(str(rootfs), MountPoint("volume", "/seed", str(data), "v", seed=True))  # not empty: untouched
    assert (data / "file").read_text() == "changed"
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(str(tmp_path / "data"), rootfs / "escape")  # absolute link: resolved inside the rootfs
    seed_volume(str(rootfs), MountPoint("volume", "/escape", str(other), "v", seed=True))
    assert list(other.iterdir()) == []


def _request(**fields: object) -> CreateRequest:
    return CreateRequest(image="img", **fields)  # type: ignore[arg-type]


def test_mount_precedence_and_records(volumes: VolumeService, tmp_path: Path) -> None:
    store = ContainerStore(str(tmp_path / "containers"))
    mounts = ContainerMounts(store, volumes)
    volumes.users = mounts.users
    rootfs = tmp_path / "rootfs"
    _image_dir(rootfs)
    image = {"config": {"Volumes": {"/seed": {}, "/img-vol": {}}}}

    def prepare(cid: str, req: CreateRequest) -> list[dict[str, object]]:
        os.makedirs(store.dir(cid), exist_ok=True)
        return asyncio.run(mounts.prepare(cid, req, image, str(rootfs)))

    first = new_id()
    oci = prepare(first, _request(binds=[f"{tmp_path}/hostdir:/data:ro", "named1:/named"], volumes=["/anon"],
                                  tmpfs={"/img-vol": ""}))
    assert [m["destination"] for m in oci] == ["/data", "/named", "/anon", "/seed"]
    assert oci[0] == {"destination": "/data", "type": "bind", "source": f"{tmp_path}/hostdir",
                      "options": ["rbind", "ro", "rprivate"]}
    assert (tmp_path / "hostdir").is_dir()  # -v made it
    points = {p.destination: p for p in mounts.load(first)}
    assert points["/seed"].anonymous and (Path(points["/seed"].source) / "file").read_text() == "content"
    assert not points["/named"].anonymous and points["/named"].name == "named1"
    assert [m["Destination"] for m in mounts.inspect(first)] == ["/data", "/named", "/anon", "/seed"]
    assert mounts.users("named1") == [first]

    second = new_id()
    store.records[first] = store._load(first)  # so --volumes-from finds it by ID
    oci = prepare(second, _request(volumes_from=[f"{first}:ro"], binds=["named2:/named"],
                                   mounts=[{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}}]))
    by_dest = {str(m["destination"]): m for m in oci}
    assert "ro" in by_dest["/anon"]["options"] and str(by_dest["/named"]["source"]).endswith("named2/_data")
    assert by_dest["/t"] == {"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "nodev", "noexec", "size=1m"]}
    anon = points["/anon"].name
    mounts.release(first, remove_anonymous=True)  # the second container still uses /anon's volume
    assert volumes.get(anon) and mounts.users(anon) == [second]
    mounts.release(second, remove_anonymous=True)
    with pytest.raises(NotFound):
        volumes.get(anon)
    assert [v.name for v in volumes.scan()[0]] == ["named1", "named2"]

    for req, error, message in (
        (_request(binds=["v1:/x", "/tmp:/x"]), InvalidParameter, "Duplicate mount point: /x"),
        (_request(volumes=["/afile"]), InvalidParameter, "cannot mount volume over existing file"),
        (_request(volumes_from=["nobody"]), NotFound, "No such container: nobody"),
    ):
        before = {v.name for v in volumes.scan()[0]}
        with pytest.raises(error, match=message):
            prepare(new_id(), req)
        assert {v.name for v in volumes.scan()[0]} - before <= {"v1"}  # no anonymous volume is left behind
