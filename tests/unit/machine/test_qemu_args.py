"""QEMU's argv per host: macOS (hvf, aarch64, UEFI), Windows (whpx), Linux (kvm, tcg)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.machine.qemu import (
    READY_PORT,
    SHARE_TAG,
    Accel,
    Arch,
    HostOS,
    QemuPaths,
    QemuSpec,
    Resources,
    choose_accel,
    qemu_argv,
)

PATHS = QemuPaths(disk=Path("/m/disk.qcow2"), seed=Path("/m/seed.iso"), serial_log=Path("/m/serial.log"),
                  ready_socket=Path("/m/ready.sock"), qmp_socket=Path("/m/qmp.sock"), kernel=Path("/c/vmlinuz"),
                  initrd=Path("/c/initrd.img"), share=Path("/home/u"), qmp_port=4444,
                  ready_port=4445)


def spec(host: HostOS, arch: Arch, accel: Accel, **paths: object) -> QemuSpec:
    return QemuSpec(host, arch, accel, Resources(3, 3072), QemuPaths(**{**PATHS.__dict__, **paths}), ssh_port=2222)


def flag(argv: list[str], name: str) -> list[str]:
    """Every value given to ``name``."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == name]


def common(argv: list[str]) -> None:
    assert flag(argv, "-smp") == ["3"] and flag(argv, "-m") == ["3072"]
    drives = flag(argv, "-drive")
    assert "file=/m/disk.qcow2,if=virtio,format=qcow2,discard=unmap" in drives
    assert any(d.startswith("file=/m/seed.iso,") and "readonly=on" in d for d in drives)
    assert flag(argv, "-netdev") == ["user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22"]
    devices = flag(argv, "-device")
    assert {"virtio-net-pci,netdev=net0", "virtio-rng-pci", "virtio-serial-pci",
            f"virtserialport,chardev=ready,name={READY_PORT}"} <= set(devices)
    if not argv[0].endswith(".exe"):
        assert flag(argv, "-chardev") == ["socket,id=ready,path=/m/ready.sock"]
    assert flag(argv, "-serial") == ["file:/m/serial.log"]
    assert "-nodefaults" in argv and flag(argv, "-display") == ["none"]


def test_linux_kvm() -> None:
    argv = qemu_argv(spec(HostOS.LINUX, Arch.X86_64, Accel.KVM))
    common(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert flag(argv, "-machine") == ["q35"] and flag(argv, "-accel") == ["kvm"] and flag(argv, "-cpu") == ["host"]
    assert flag(argv, "-qmp") == ["unix:/m/qmp.sock,server=on,wait=off"]
    assert flag(argv, "-virtfs") == [f"local,path=/home/u,mount_tag={SHARE_TAG},security_model=mapped-xattr,id=share"]
    assert flag(argv, "-kernel") == ["/c/vmlinuz"] and flag(argv, "-initrd") == ["/c/initrd.img"]
    assert "console=ttyS0" in flag(argv, "-append")[0] and "root=/dev/vda" in flag(argv, "-append")[0]


def test_linux_tcg_multithreaded_and_restricted() -> None:
    argv = qemu_argv(QemuSpec(HostOS.LINUX, Arch.X86_64, Accel.TCG, Resources(2, 2048), PATHS, 2222,
                              restrict_network=True))
    assert flag(argv, "-accel") == ["tcg,thread=multi"] and flag(argv, "-cpu") == ["max"]
    assert flag(argv, "-netdev") == ["user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"]


def test_macos_hvf_aarch64_uefi() -> None:
    argv = qemu_argv(spec(HostOS.MACOS, Arch.AARCH64, Accel.HVF, firmware=Path("/opt/edk2-aarch64-code.fd")))
    common(argv)
    assert argv[0] == "qemu-system-aarch64"
    assert flag(argv, "-machine") == ["virt,highmem=on"] and flag(argv, "-accel") == ["hvf"]
    assert flag(argv, "-cpu") == ["host"]
    assert "if=pflash,format=raw,readonly=on,file=/opt/edk2-aarch64-code.fd" in flag(argv, "-drive")
    assert "console=ttyAMA0" in flag(argv, "-append")[0]
    assert flag(argv, "-qmp") == ["unix:/m/qmp.sock,server=on,wait=off"]


def test_macos_aarch64_needs_firmware() -> None:
    with pytest.raises(ValueError, match="UEFI"):
        qemu_argv(spec(HostOS.MACOS, Arch.AARCH64, Accel.HVF))


def test_windows_whpx() -> None:
    argv = qemu_argv(spec(HostOS.WINDOWS, Arch.X86_64, Accel.WHPX))
    common(argv)
    assert argv[0] == "qemu-system-x86_64.exe"
    assert flag(argv, "-accel") == ["whpx"] and flag(argv, "-machine") == ["q35,kernel-irqchip=off"]
    # no unix sockets there: QMP and the ready port are TCP on the loopback
    assert flag(argv, "-qmp") == ["tcp:127.0.0.1:4444,server=on,wait=off"]
    assert flag(argv, "-chardev") == ["socket,id=ready,host=127.0.0.1,port=4445"]
    assert "security_model=none" in flag(argv, "-virtfs")[0]


def test_no_share_no_virtfs_and_firmware_boot() -> None:
    argv = qemu_argv(spec(HostOS.LINUX, Arch.X86_64, Accel.TCG, share=None, kernel=None, initrd=None))
    assert "-virtfs" not in argv and "-kernel" not in argv and "-append" not in argv


@pytest.mark.parametrize(("host", "accel"), [(HostOS.LINUX, Accel.HVF), (HostOS.MACOS, Accel.KVM),
                                             (HostOS.WINDOWS, Accel.KVM)])
def test_accelerator_of_another_host_is_refused(host: HostOS, accel: Accel) -> None:
    with pytest.raises(ValueError, match="not available"):
        qemu_argv(spec(host, Arch.X86_64, accel))


def test_choose_accel() -> None:
    assert choose_accel(HostOS.MACOS, False) is Accel.HVF
    assert choose_accel(HostOS.WINDOWS, False) is Accel.WHPX
    assert choose_accel(HostOS.LINUX, True) is Accel.KVM
    assert choose_accel(HostOS.LINUX, False) is Accel.TCG
