"""QEMU's command line for a machine, and the choice of accelerator.

:func:`qemu_argv` is pure: (host OS, guest architecture, accelerator, resources, paths) -> argv. It guarantees
for every host: a virtio disk (the machine's qcow2 overlay), user-mode virtio-net whose only way in is
``127.0.0.1:<ssh_port>`` -> guest port 22 (plus ports added later over QMP), virtio-rng, a QMP control
channel (a unix socket; on Windows ``127.0.0.1:<qmp_port>``), the serial console into a log file, the
virtio-serial port ``org.berth.ready`` connected to a host socket the guest writes ``READY`` to, the NoCloud
seed ISO as a read-only virtio disk, and the share as 9p (``mount_tag`` :data:`SHARE_TAG`). Per host:

- macOS: ``qemu-system-aarch64 -machine virt,highmem=on -accel hvf -cpu host`` with UEFI (edk2-aarch64-code.fd);
- Windows: ``qemu-system-x86_64 -machine q35,kernel-irqchip=off -accel whpx``;
- Linux: ``-machine q35 -accel kvm -cpu host`` when KVM really runs guests (:func:`kvm_runs_guests`), else
  ``-accel tcg,thread=multi -cpu max``.
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SHARE_TAG = "berth-share"
READY_PORT = "org.berth.ready"


class HostOS(enum.Enum):
    LINUX = "linux"
    MACOS = "darwin"
    WINDOWS = "windows"


class Arch(enum.Enum):
    X86_64 = "x86_64"
    AARCH64 = "aarch64"


class Accel(enum.Enum):
    KVM = "kvm"
    HVF = "hvf"
    WHPX = "whpx"
    TCG = "tcg"


@dataclass(frozen=True)
class Resources:
    cpus: int
    memory_mib: int


@dataclass(frozen=True)
class QemuPaths:
    """Files and sockets of one machine. ``kernel``/``initrd`` None boot from the disk (firmware);
    ``qmp_port`` and ``ready_port`` (TCP on 127.0.0.1) are used instead of ``qmp_socket`` and ``ready_socket``
    on Windows; ``firmware`` is the UEFI code for aarch64."""

    disk: Path
    seed: Path
    serial_log: Path
    ready_socket: Path
    qmp_socket: Path
    kernel: Path | None = None
    initrd: Path | None = None
    share: Path | None = None
    firmware: Path | None = None
    qmp_port: int = 0
    ready_port: int = 0


@dataclass(frozen=True)
class QemuSpec:
    host: HostOS
    arch: Arch
    accel: Accel
    resources: Resources
    paths: QemuPaths
    ssh_port: int
    restrict_network: bool = False
    kernel_args: str = "console=ttyS0 root=/dev/vda rw quiet"


def host_os() -> HostOS:
    """The OS this process runs on."""
    return {"darwin": HostOS.MACOS, "win32": HostOS.WINDOWS}.get(sys.platform, HostOS.LINUX)


def qemu_binary(host: HostOS, arch: Arch) -> str:
    """The emulator's name (``.exe`` on Windows)."""
    return f"qemu-system-{arch.value}" + (".exe" if host is HostOS.WINDOWS else "")


def qemu_argv(spec: QemuSpec) -> list[str]:
    """The full argv for ``spec``. Raises ValueError for combinations that cannot boot (aarch64 without
    firmware, an accelerator the host does not have)."""
    host, arch, paths = spec.host, spec.arch, spec.paths
    allowed = {HostOS.LINUX: {Accel.KVM, Accel.TCG}, HostOS.MACOS: {Accel.HVF, Accel.TCG},
               HostOS.WINDOWS: {Accel.WHPX, Accel.TCG}}[host]
    if spec.accel not in allowed:
        raise ValueError(f"accelerator {spec.accel.value} is not available on {host.value}")
    argv = [qemu_binary(host, arch), "-name", "berth", "-nodefaults", "-no-user-config", "-display", "none",
            "-smp", str(spec.resources.cpus), "-m", str(spec.resources.memory_mib)]
    accel = "tcg,thread=multi" if spec.accel is Accel.TCG else spec.accel.value
    if arch is Arch.AARCH64:
        if paths.firmware is None:
            raise ValueError("aarch64 machines need UEFI firmware (edk2-aarch64-code.fd)")
        argv += ["-machine", "virt,highmem=on", "-accel", accel,
                 "-cpu", "max" if spec.accel is Accel.TCG else "host",
                 "-drive", f"if=pflash,format=raw,readonly=on,file={paths.firmware}"]
    else:
        machine = "q35,kernel-irqchip=off" if spec.accel is Accel.WHPX else "q35"
        argv += ["-machine", machine, "-accel", accel]
        if spec.accel in (Accel.KVM, Accel.HVF):
            argv += ["-cpu", "host"]
        elif spec.accel is Accel.TCG:
            argv += ["-cpu", "max"]
    if paths.kernel is not None:
        console = "ttyAMA0" if arch is Arch.AARCH64 else "ttyS0"
        argv += ["-kernel", str(paths.kernel), "-append", spec.kernel_args.replace("ttyS0", console)]
        if paths.initrd is not None:
            argv += ["-initrd", str(paths.initrd)]
    restrict = ",restrict=on" if spec.restrict_network else ""
    ready = (f"socket,id=ready,host=127.0.0.1,port={paths.ready_port}" if host is HostOS.WINDOWS
             else f"socket,id=ready,path={paths.ready_socket}")
    argv += [
        "-drive", f"file={paths.disk},if=virtio,format=qcow2,discard=unmap",
        "-drive", f"file={paths.seed},if=virtio,format=raw,readonly=on,media=disk",
        "-netdev", f"user,id=net0{restrict},hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{paths.serial_log}",
        "-chardev", ready,
        "-device", "virtio-serial-pci",
        "-device", f"virtserialport,chardev=ready,name={READY_PORT}",
    ]
    if host is HostOS.WINDOWS:
        argv += ["-qmp", f"tcp:127.0.0.1:{paths.qmp_port},server=on,wait=off"]
    else:
        argv += ["-qmp", f"unix:{paths.qmp_socket},server=on,wait=off"]
    if paths.share is not None:
        model = "none" if host is HostOS.WINDOWS else "mapped-xattr"
        argv += ["-virtfs", f"local,path={paths.share},mount_tag={SHARE_TAG},security_model={model},id=share"]
    return argv


# A 64 KiB x86 BIOS whose reset vector runs `mov al,1; out 0xf4,al; hlt`: with isa-debug-exit QEMU exits 3
# only if the accelerator really executed guest code.
_PROBE_CODE = bytes([0xB0, 0x01, 0xE6, 0xF4, 0xF4, 0xEB, 0xFE])
_PROBE_EXIT = 3


def kvm_runs_guests(binary: str = "qemu-system-x86_64", timeout: float = 5.0) -> bool:
    """True when ``/dev/kvm`` opens and QEMU under ``-accel kvm`` runs a tiny guest to its exit port within
    ``timeout`` seconds (nested KVM that creates VMs but never runs them answers False)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    rom = bytearray(b"\xf4" * 65536)
    rom[-16:-16 + len(_PROBE_CODE)] = _PROBE_CODE
    with tempfile.NamedTemporaryFile(suffix=".rom") as f:
        f.write(rom)
        f.flush()
        try:
            proc = subprocess.run([binary, "-accel", "kvm", "-machine", "pc", "-nodefaults", "-display", "none",
                                   "-bios", f.name, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
                                  capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return proc.returncode == _PROBE_EXIT


def choose_accel(host: HostOS, kvm_works: bool) -> Accel:
    """hvf on macOS, whpx on Windows, kvm on Linux when it runs guests, else tcg."""
    if host is HostOS.MACOS:
        return Accel.HVF
    if host is HostOS.WINDOWS:
        return Accel.WHPX
    return Accel.KVM if kvm_works else Accel.TCG
