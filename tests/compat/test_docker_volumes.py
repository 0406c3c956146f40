"""The docker CLI against berthd: volumes, bind mounts, tmpfs mounts, --volumes-from and volume management."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]
ESCAPE = Path(f"/run/berth-test-escape-{os.getpid()}")
"""Where the image's ``/hostlink`` symlink points: must never appear on the host."""


@pytest.fixture
def host_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="berth-vol-") as tmp:
        yield Path(tmp)


def _api(d: Berthd) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://berth", timeout=30)


def _mounts(d: Berthd, name: str) -> list[dict[str, Any]]:
    return list(json.loads(d.docker("inspect", "--format", "{{json .Mounts}}", name).stdout))


def _volumes(d: Berthd, *args: str) -> list[str]:
    return d.docker("volume", "ls", "-q", *args).stdout.split()


def test_named_volume_keeps_a_file_across_container_removal(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    d.docker("run", "--name", "keep1", "-v", "keepvol:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    mounts = _mounts(d, "keep1")
    assert [(m["Type"], m["Name"], m["Destination"], m["Driver"], m["RW"]) for m in mounts] == [
        ("volume", "keepvol", "/data", "local", True)]
    assert mounts[0]["Source"] == str(d.data_root / "volumes" / "keepvol" / "_data")
    d.docker("rm", "-v", "keep1")  # -v removes anonymous volumes only
    assert "keepvol" in _volumes(d)
    out = d.docker("run", "--rm", "-v", "keepvol:/data:ro", "busybox", "cat", "/data/f").stdout
    assert out == "kept\n"
    d.docker("volume", "rm", "keepvol")


def test_new_volume_starts_with_the_images_content(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    listing = d.docker("run", "--rm", "-v", "seeded:/bin", "busybox", "/bin/busybox", "ls", "/bin").stdout.split()
    assert "busybox" in listing and "sh" in listing
    data = d.data_root / "volumes" / "seeded" / "_data"
    assert (data / "busybox").is_file()
    d.docker("volume", "rm", "seeded")


@pytest.fixture(scope="module")
def volume_image(berthd_with_busybox: Berthd, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``volimg``: busybox plus ``/seed`` (a file of uid 1234 mode 0640, a directory, a symlink),
    ``/hostlink`` -> :data:`ESCAPE` and ``VOLUME /seed``, made with export and import."""
    d = berthd_with_busybox
    archive = tmp_path_factory.mktemp("volimg") / "rootfs.tar"
    d.docker("create", "--name", "volimg-src", "busybox", "true")
    d.docker("export", "-o", str(archive), "volimg-src")
    d.docker("rm", "volimg-src")
    with tarfile.open(archive, "a") as tar:
        for name, kind, mode in (("seed", tarfile.DIRTYPE, 0o750), ("seed/sub", tarfile.DIRTYPE, 0o755),
                                 ("seed/file.txt", tarfile.REGTYPE, 0o640), ("seed/link", tarfile.SYMTYPE, 0o777),
                                 ("hostlink", tarfile.SYMTYPE, 0o777)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, 1234, 1234
            data = b"seeded\n" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            info.linkname = {"seed/link": "/etc/passwd", "hostlink": str(ESCAPE)}.get(name, "")
            tar.addfile(info, io.BytesIO(data))
    d.docker("import", "--change", "VOLUME /seed", str(archive), "volimg")
    return "volimg"


def test_image_volumes_and_seeding_rules(berthd_with_busybox: Berthd, volume_image: str) -> None:
    d = berthd_with_busybox
    out = d.docker("run", "--name", "img-vol", volume_image, "sh", "-c", "ls -ln /seed; cat /seed/file.txt").stdout
    assert "seeded" in out and "1234" in out and "link -> /etc/passwd" in out
    [mount] = _mounts(d, "img-vol")
    assert (mount["Type"], mount["Destination"], len(mount["Name"])) == ("volume", "/seed", 64)
    source = Path(mount["Source"])
    assert (source.stat().st_uid, source.stat().st_mode & 0o777) == (1234, 0o750)
    assert ((source / "file.txt").stat().st_mode & 0o777, (source / "link").is_symlink()) == (0o640, True)
    d.docker("rm", "-v", "img-vol")
    assert not source.exists()
    assert d.docker("run", "--rm", "-v", "named-seed:/seed", volume_image, "cat", "/seed/file.txt").stdout == "seeded\n"
    d.docker("run", "--rm", "-v", "full1:/seed", volume_image, "sh", "-c", "echo mine > /seed/file.txt")
    d.docker("run", "--rm", "-v", "full2:/data", volume_image, "sh", "-c", "echo x > /data/mine")
    assert d.docker("run", "--rm", "-v", "full2:/seed", volume_image, "ls", "/seed").stdout == "mine\n"
    out = d.docker("run", "--rm", "--mount", "type=volume,source=nocopy1,target=/seed,volume-nocopy",
                   volume_image, "ls", "-A", "/seed").stdout
    assert out == ""
    d.docker("volume", "rm", "named-seed", "full1", "full2", "nocopy1")


def test_ro_bind_refuses_writes_and_rw_bind_writes_to_the_host(berthd_with_busybox: Berthd, host_dir: Path) -> None:
    d = berthd_with_busybox
    (host_dir / "in.txt").write_text("from host\n")
    bad = d.docker("run", "--rm", "-v", f"{host_dir}:/h:ro", "busybox", "sh", "-c", "cat /h/in.txt; echo x > /h/new",
                   check=False)
    assert bad.returncode != 0 and "from host" in bad.stdout and "Read-only file system" in bad.stderr
    assert not (host_dir / "new").exists()
    d.docker("run", "--name", "rwb", "-v", f"{host_dir}:/h", "busybox", "sh", "-c", "echo hi > /h/new")
    assert (host_dir / "new").read_text() == "hi\n"
    assert [(m["Type"], m["Source"], m["Destination"], m["RW"], m["Propagation"]) for m in _mounts(d, "rwb")] == [
        ("bind", str(host_dir), "/h", True, "rprivate")]
    d.docker("rm", "rwb")
    created = host_dir / "made" / "by" / "v"
    d.docker("run", "--rm", "-v", f"{created}:/m", "busybox", "true")  # -v makes a missing source directory
    assert created.is_dir()


def test_tmpfs_mounts_are_in_memory(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    out = d.docker("run", "--rm", "--mount", "type=tmpfs,target=/scratch,tmpfs-size=1m", "--tmpfs", "/t2:size=2m",
                   "busybox", "cat", "/proc/mounts").stdout
    lines = {line.split()[1]: line.split() for line in out.splitlines()}
    assert lines["/scratch"][2] == "tmpfs" and "size=1024k" in lines["/scratch"][3]
    assert lines["/t2"][2] == "tmpfs" and "size=2048k" in lines["/t2"][3]
    d.docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=3m", "tmpvol")
    out = d.docker("run", "--rm", "-v", "tmpvol:/v", "busybox", "sh", "-c", "echo x > /v/f; cat /proc/mounts").stdout
    assert any(line.split()[1] == "/v" and line.split()[2] == "tmpfs" for line in out.splitlines())
    d.docker("volume", "rm", "tmpvol")


def test_volumes_from_and_anonymous_volumes(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    d.docker("create", "--name", "vf-data", "-v", "/anon", "-v", "vfnamed:/named", "busybox", "true")
    anon = next(m for m in _mounts(d, "vf-data") if m["Destination"] == "/anon")
    assert anon["Type"] == "volume" and len(anon["Name"]) == 64
    out = d.docker("run", "--rm", "--volumes-from", "vf-data:ro", "busybox", "sh", "-c",
                   "ls -d /anon /named; : > /named/x", check=False)
    assert "/anon" in out.stdout and "/named" in out.stdout and "Read-only file system" in out.stderr
    d.docker("run", "--name", "vf-user", "--volumes-from", "vf-data", "busybox", "sh", "-c", ": > /anon/y")
    assert {m["Name"] for m in _mounts(d, "vf-user")} == {anon["Name"], "vfnamed"}
    bad = d.docker("volume", "rm", anon["Name"], check=False)
    assert bad.returncode != 0 and "volume is in use" in bad.stderr
    d.docker("rm", "-v", "vf-user")  # its volumes are vf-data's too: kept
    assert anon["Name"] in _volumes(d)
    d.docker("rm", "-v", "vf-data")
    volumes = _volumes(d)
    assert anon["Name"] not in volumes and "vfnamed" in volumes
    d.docker("volume", "rm", "vfnamed")
    d.docker("run", "--rm", "-v", "/gone", "busybox", "true")  # --rm removes anonymous volumes too
    assert set(_volumes(d)) <= set(volumes) - {anon["Name"], "vfnamed"}


def test_volume_create_ls_inspect_rm_prune(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    assert d.docker("volume", "create", "--label", "team=a", "--label", "tier", "va1").stdout.strip() == "va1"
    d.docker("volume", "create", "--label", "team=b", "vb1")
    doc = json.loads(d.docker("volume", "inspect", "va1").stdout)[0]
    assert (doc["Name"], doc["Driver"], doc["Labels"], doc["Scope"]) == ("va1", "local", {"team": "a", "tier": ""},
                                                                        "local")
    assert doc["Mountpoint"] == str(d.data_root / "volumes" / "va1" / "_data")
    assert set(_volumes(d, "--filter", "label=team")) == {"va1", "vb1"}
    assert _volumes(d, "--filter", "label=team=a") == ["va1"]
    assert _volumes(d, "--filter", "name=vb") == ["vb1"]
    assert set(_volumes(d, "--filter", "driver=local")) >= {"va1", "vb1"}
    d.docker("run", "-d", "--name", "va-user", "-v", "va1:/d", "busybox", "sleep", "1000")
    assert "va1" not in _volumes(d, "--filter", "dangling=true")
    assert "va1" in _volumes(d, "--filter", "dangling=false")
    bad = d.docker("volume", "rm", "va1", check=False)
    assert bad.returncode != 0 and "remove va1: volume is in use - [" in bad.stderr
    usage = json.loads(d.docker("system", "df", "-v", "--format", "{{json .Volumes}}").stdout)
    assert any(v["Name"] == "va1" and v["Links"] == "1" for v in usage)
    out = d.docker("volume", "prune", "-f", "--filter", "label=team").stdout
    assert "vb1" in out and "va1" not in out
    assert set(_volumes(d)) & {"va1", "vb1"} == {"va1"}
    d.docker("rm", "-f", "va-user")
    d.docker("volume", "rm", "va1")
    bad = d.docker("volume", "inspect", "va1", check=False)
    assert bad.returncode != 0 and "no such volume" in bad.stderr.lower()
    assert d.docker("volume", "rm", "-f", "va1").returncode == 0


@pytest.mark.parametrize(("args", "message"), [
    (["volume", "create", "a"], "volume name is too short"),
    (["volume", "create", "bad/name"], '"bad/name" includes invalid characters for a local volume name'),
    (["volume", "create", "--opt", "colour=red", "vopt"], 'invalid option key: "colour"'),
    (["volume", "create", "-d", "nfs", "vdrv"], 'plugin "nfs" not found'),
    (["volume", "rm", "nosuchvol"], "no such volume"),
    (["volume", "ls", "--filter", "colour=red"], "invalid filter 'colour'"),
    (["run", "--rm", "-v", "C/foo:/x", "busybox", "true"], '"C/foo" includes invalid characters'),
    (["run", "--rm", "--mount", "type=bind,source=/definitely/not/here,target=/x", "busybox", "true"],
     "bind source path does not exist: /definitely/not/here"),
    (["run", "--rm", "-v", "/tmp:/x:sw", "busybox", "true"], "invalid mode: sw"),
    (["run", "--rm", "-v", "/tmp:/", "busybox", "true"], "destination can't be '/'"),
    (["run", "--rm", "-v", "v1:/x", "-v", "/tmp:/x", "busybox", "true"], "Duplicate mount point: /x"),
])
def test_bad_specs_give_dockers_errors_and_the_daemon_stays_up(berthd_with_busybox: Berthd, args: list[str],
                                                               message: str) -> None:
    d = berthd_with_busybox
    result = d.docker(*args, check=False)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert d.docker("version", "--format", "{{.Server.Version}}").returncode == 0


@pytest.mark.parametrize(("binds", "message"), [
    (["/path:/path:ro,rshared,rslave"], "invalid mode: ro,rshared,rslave"),
    (["name:/absolute-path:shared"], "invalid volume specification: 'name:/absolute-path:shared': invalid mount "
                                     'config for type "volume": field BindOptions must not be specified'),
    (["/tmp:::"], "invalid volume specification: '/tmp:::'"),
    (["/:../"], "mount path must be absolute"),
])
def test_bad_binds_through_the_api(berthd_with_busybox: Berthd, binds: list[str], message: str) -> None:
    with _api(berthd_with_busybox) as api:
        resp = api.post("/v1.41/containers/create", json={"Image": "busybox", "Cmd": ["true"],
                                                          "HostConfig": {"Binds": binds}})
        assert resp.status_code == 400 and message in resp.json()["message"]
        assert api.get("/_ping").text == "OK"


def test_volumes_from_an_unknown_container_is_not_found(berthd_with_busybox: Berthd) -> None:
    # through the API: the docker CLI takes a 404 from create for a missing image and would try to pull
    with _api(berthd_with_busybox) as api:
        resp = api.post("/v1.41/containers/create", json={"Image": "busybox", "Cmd": ["true"],
                                                          "HostConfig": {"VolumesFrom": ["no-such-ctr"]}})
        assert (resp.status_code, resp.json()["message"]) == (404, "No such container: no-such-ctr")
        resp = api.post("/v1.41/containers/create", json={"Image": "busybox", "HostConfig": {"Mounts": "x"}})
        assert (resp.status_code, resp.json()["message"]) == (400, "Mounts: expected a list of objects")


def test_a_symlink_in_a_volume_does_not_lead_a_mount_to_the_host(berthd_with_busybox: Berthd,
                                                                 host_dir: Path) -> None:
    d = berthd_with_busybox
    target = host_dir / "victim"
    target.mkdir()
    source = host_dir / "src"
    source.mkdir()
    (source / "marker").write_text("m")
    d.docker("run", "--rm", "-v", "linkvol:/data", "busybox", "busybox", "ln", "-s", str(target),
             "/data/escape")
    out = d.docker("run", "--rm", "-v", "linkvol:/data", "-v", f"{source}:/data/escape/sub", "busybox",
                   "cat", f"{target}/sub/marker").stdout
    assert out == "m"  # the mount landed inside the container, where the link points there
    assert list(target.iterdir()) == []
    d.docker("volume", "rm", "linkvol")


def test_a_symlink_in_the_image_does_not_lead_a_mount_to_the_host(berthd_with_busybox: Berthd, volume_image: str,
                                                                  host_dir: Path) -> None:
    d = berthd_with_busybox
    (host_dir / "marker").write_text("inside")
    out = d.docker("run", "--rm", "-v", f"{host_dir}:/hostlink/sub", volume_image, "cat", f"{ESCAPE}/sub/marker")
    assert out.stdout == "inside" and not ESCAPE.exists()


def test_broken_volume_metadata_does_not_stop_the_daemon(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    d.docker("volume", "create", "brokenvol")
    (d.data_root / "volumes" / "brokenvol" / "volume.json").write_text("{not json")
    with _api(d) as api:
        doc = api.get("/v1.41/volumes").json()
        assert "brokenvol" not in [v["Name"] for v in doc["Volumes"]]
        assert any("brokenvol" in w for w in doc["Warnings"])
        assert api.get("/v1.41/volumes/brokenvol").status_code == 503
    d.docker("volume", "rm", "brokenvol")
    assert "brokenvol" not in _volumes(d)


def test_berth_volume_verbs(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    assert d.berth("volume", "create", "--label", "team=a", "-o", "type=tmpfs", "-o", "device=tmpfs",
                   "bv1").stdout == "bv1\n"
    d.berth("volume", "create", "bv2")
    assert d.berth("volume", "ls", "-q", "--filter", "label=team=a").stdout == "bv1\n"
    table = d.berth("volume", "ls", "--filter", "name=bv").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"] and [r.split() for r in table[1:]] == [
        ["local", "bv1"], ["local", "bv2"]]
    doc = json.loads(d.berth("volume", "inspect", "bv1").stdout)[0]
    assert (doc["Labels"], doc["Options"]) == ({"team": "a"}, {"type": "tmpfs", "device": "tmpfs"})
    assert d.berth("volume", "inspect", "-f", "{{.Driver}}", "bv2").stdout == "local\n"
    d.docker("run", "-d", "--name", "bv-user", "-v", "bv2:/d", "busybox", "sleep", "1000")
    bad = d.berth("volume", "rm", "bv2", "nosuch", check=False)
    assert bad.returncode == 1 and "volume is in use" in bad.stderr and "no such volume" in bad.stderr
    out = d.berth("volume", "prune", "-f", "--filter", "label=team").stdout
    assert out.startswith("Deleted Volumes:\nbv1\n") and "Total reclaimed space:" in out
    d.docker("rm", "-f", "bv-user")
    assert d.berth("volume", "rm", "bv2").stdout == "bv2\n"
    bad = d.berth("volume", "create", "--opt", "novalue", "bv3", check=False)
    assert bad.returncode == 125 and "expected key=value" in bad.stderr


def test_ps_and_system_df_show_the_mounts(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    d.docker("volume", "create", "ps-vol")
    d.docker("run", "-d", "--name", "ps-mounts", "-v", "ps-vol:/data", "busybox", "sleep", "1000")
    assert d.docker("ps", "--filter", "name=ps-mounts", "--format", "{{.Mounts}}").stdout.strip() == "ps-vol"
    verbose = d.docker("system", "df", "-v").stdout
    assert any(line.split()[:2] == ["ps-vol", "1"] for line in verbose.splitlines()), verbose
    d.docker("rm", "-f", "ps-mounts")
    d.docker("volume", "rm", "ps-vol")
