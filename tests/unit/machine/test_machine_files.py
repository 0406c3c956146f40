"""Image verification, overlays, the seed ISO and the state store, without booting anything."""

from __future__ import annotations

import hashlib
import io
import stat
import subprocess
import tarfile
from pathlib import Path

import pycdlib
import pytest
import yaml

from backend.machine.agent import fixed_bindings
from backend.machine.errors import ImageVerificationError, MachineError, MachineNotFound
from backend.machine.image import create_overlay, fetch_image
from backend.machine.seed import generate_keys, meta_data, user_data, write_seed_iso
from backend.machine.state import MachineConfig, MachineRecord, MachineState, MachineStore


def make_image(path: Path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, str]:
    disk = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)
    tar = tmp_path / "image.tar"
    return tar, make_image(tar, {"disk.qcow2": disk.read_bytes(), "vmlinuz": b"k", "initrd.img": b"i"})


def test_fetch_verifies_and_caches(tmp_path: Path, image: tuple[Path, str]) -> None:
    tar, sha = image
    base = fetch_image(str(tar), sha, tmp_path / "cache")
    assert base.kernel.read_bytes() == b"k" and base.disk.is_file()
    tar.unlink()  # cached: the source is not read again
    assert fetch_image(str(tar), sha.upper(), tmp_path / "cache").disk == base.disk


def test_wrong_sha256_refused_and_nothing_kept(tmp_path: Path, image: tuple[Path, str]) -> None:
    tar, _ = image
    with pytest.raises(ImageVerificationError, match=r"expected 0{64}"):
        fetch_image(str(tar), "0" * 64, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_bad_digest_and_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(MachineError, match="64 hex digits"):
        fetch_image("x", "abc", tmp_path)
    tar = tmp_path / "other.tar"
    sha = make_image(tar, {"README": b"no"})
    with pytest.raises(MachineError, match="not a machine image"):
        fetch_image(str(tar), sha, tmp_path / "cache")


def test_overlay_backed_by_base_and_grown(tmp_path: Path, image: tuple[Path, str]) -> None:
    base = fetch_image(str(image[0]), image[1], tmp_path / "cache")
    overlay = tmp_path / "disk.qcow2"
    create_overlay(base, overlay, 3)
    info = subprocess.run(["qemu-img", "info", str(overlay)], check=True, capture_output=True, text=True).stdout
    assert str(base.disk) in info and "3 GiB" in info


def test_seed_iso_is_nocloud(tmp_path: Path) -> None:
    keys = generate_keys()
    assert keys.user_private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert keys.host_public.startswith("ssh-ed25519 ")
    iso = tmp_path / "seed.iso"
    write_seed_iso(iso, {"user-data": user_data(keys, "/home/u"), "meta-data": meta_data("dev")})
    assert stat.S_IMODE(iso.stat().st_mode) == 0o600
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    assert reader.pvd.volume_identifier.decode().strip() == "cidata"
    out = io.BytesIO()
    reader.get_file_from_iso_fp(out, rr_path="/user-data")
    reader.close()
    text = out.getvalue().decode()
    assert text.startswith("#cloud-config\n")
    config = yaml.safe_load(text)
    assert config["datasource_list"] == ["NoCloud"]
    assert config["ssh_keys"]["ed25519_public"] == keys.host_public
    assert config["ssh_authorized_keys"] == [keys.user_public]
    assert keys.user_private not in text  # the user's private key never leaves the host
    boot = next(f for f in config["write_files"] if f["path"] == "/usr/local/sbin/berth-guest-boot")
    assert "mount -t 9p" in boot["content"] and "/home/u" in boot["content"]
    assert any("timesyncd" in cmd for cmd in config["bootcmd"])


def test_store_transitions(tmp_path: Path) -> None:
    store = MachineStore(tmp_path)
    with pytest.raises(MachineNotFound):
        store.load("dev")
    with pytest.raises(MachineError, match="invalid machine name"):
        store.dir("../x")
    store.save(MachineRecord("dev", MachineConfig(cpus=1)))
    assert store.names() == ["dev"]
    assert store.transition("dev", MachineState.STARTING, ssh_port=5).ssh_port == 5
    store.transition("dev", MachineState.STOPPED)
    with pytest.raises(MachineError, match="cannot become stopping"):
        store.transition("dev", MachineState.STOPPING)
    assert store.load("dev").config.cpus == 1


def test_fixed_bindings_only_when_every_host_port_is_known() -> None:
    fixed = {"80/tcp": [{"HostIp": "", "HostPort": "18081"}], "53/udp": [{"HostIp": "", "HostPort": "5353"}]}
    assert fixed_bindings({"PortBindings": fixed}) == fixed
    assert fixed_bindings({"PortBindings": None}) == {}
    assert fixed_bindings({"PortBindings": {"80/tcp": [{"HostPort": "0"}]}}) is None
    assert fixed_bindings({"PortBindings": {"80/tcp": [{"HostPort": ""}]}}) is None
    assert fixed_bindings({"PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}]}}) is None
    assert fixed_bindings({"PortBindings": {}, "PublishAllPorts": True}) is None
