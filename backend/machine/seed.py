"""The first-boot seed: keys generated on the host and a cloud-init NoCloud ISO (volume ``cidata``).

Guarantees: the user key's private half stays on the host (``id_ed25519``, mode 0600); the guest's SSH host
key is generated here and handed to the guest in user-data's ``ssh_keys``, so its public half is pinned
(``host_key.pub``) before the guest ever boots. The user-data's guest setup (see :func:`user_data`):

- cloud-init looks only at NoCloud (``datasource_list``), and timesyncd and apt's timers are masked, so
  nothing in the guest phones home;
- ``berth-guest-boot.service`` mounts the 9p share at the host's path and writes ``BOOTED`` to the
  virtio-serial port :data:`~backend.machine.qemu.READY_PORT` once sshd runs (on every boot);
- ``/usr/local/sbin/berth-guest-install`` (run by the host over SSH after copying the wheels) installs berthd
  into ``/opt/berth`` offline and enables ``berthd.service``, whose start writes ``READY`` to the same port
  when the API answers on :data:`GUEST_SOCKET`, its only address: the host reaches it over SSH
  (direct-streamlocal), nothing in the guest's network (a ``--network host`` container) can.
"""

from __future__ import annotations

import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import pycdlib
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.machine.qemu import READY_PORT, SHARE_TAG

GUEST_WHEELS = "/var/lib/berth-machine/wheels"
GUEST_SOCKET = "/run/berth/berth.sock"
_PORT_DEVICE = f"/dev/virtio-ports/{READY_PORT}"

_BOOT_UNIT = """[Unit]
Description=Berth machine: mount the host share, report BOOTED to the host
After=ssh.service
Wants=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/berth-guest-boot

[Install]
WantedBy=multi-user.target
"""

_BERTHD_UNIT = f"""[Unit]
Description=Berth container engine inside the machine
After=network-online.target berth-guest-boot.service

[Service]
Type=simple
ExecStart=/opt/berth/bin/berthd -H unix://{GUEST_SOCKET}
ExecStartPost=/usr/local/sbin/berth-guest-ready
KillMode=process
Delegate=yes
# berthd's graceful stop waits for open API connections (the host agent's /events stream): cap it.
TimeoutStopSec=10
Restart=on-failure
RestartSec=2
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
"""

_READY_SCRIPT = f"""#!/usr/bin/python3
# Wait until berthd's API accepts connections, then tell the host.
import socket, sys, time
for _ in range(600):
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect("{GUEST_SOCKET}")
    except OSError:
        time.sleep(0.1)
        continue
    with open("{_PORT_DEVICE}", "w") as port:
        port.write("READY\\n")
    sys.exit(0)
sys.exit(1)
"""

_INSTALL_SCRIPT = f"""#!/bin/sh
# Install berthd from the wheels the host copied to {GUEST_WHEELS} (no network), then start it.
set -eu
[ -x /opt/berth/bin/python ] || python3 -m venv /opt/berth
/opt/berth/bin/python -m pip install -q --no-index --no-deps --no-compile --force-reinstall \\
    --disable-pip-version-check \\
    {GUEST_WHEELS}/*.whl
systemctl daemon-reload
systemctl enable berthd.service
systemctl restart berthd.service
"""


def _boot_script(share: str | None) -> str:
    mount = ""
    if share is not None:
        mount = (f"mkdir -p '{share}'\nmountpoint -q '{share}' || mount -t 9p -o "
                 f"trans=virtio,version=9p2000.L,msize=262144,cache=none {SHARE_TAG} '{share}'\n")
    return f"#!/bin/sh\n# Mount the host share; tell the host that sshd runs.\n{mount}echo BOOTED > {_PORT_DEVICE}\n"


@dataclass(frozen=True)
class SeedKeys:
    """OpenSSH-format key material: the host's user key and the guest's host key."""

    user_private: str
    user_public: str
    host_private: str
    host_public: str


def _ed25519() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


def generate_keys() -> SeedKeys:
    """Two fresh ed25519 key pairs."""
    return SeedKeys(*_ed25519(), *_ed25519())


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` created with mode 0600 (never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def user_data(keys: SeedKeys, share: str | None) -> str:
    """The ``#cloud-config`` user-data for a machine (see the module docstring)."""
    def script(path: str, content: str, mode: str = "0755") -> dict[str, str]:
        return {"path": path, "permissions": mode, "content": content}

    config = {
        "datasource_list": ["NoCloud"],
        "disable_root": False,
        "ssh_pwauth": False,
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {"ed25519_private": keys.host_private, "ed25519_public": keys.host_public},
        "ssh_authorized_keys": [keys.user_public],
        "write_files": [
            script("/etc/cloud/cloud.cfg.d/90-berth.cfg", "datasource_list: [NoCloud]\n", "0644"),
            script("/etc/systemd/system/berth-guest-boot.service", _BOOT_UNIT, "0644"),
            script("/etc/systemd/system/berthd.service", _BERTHD_UNIT, "0644"),
            script("/usr/local/sbin/berth-guest-boot", _boot_script(share)),
            script("/usr/local/sbin/berth-guest-ready", _READY_SCRIPT),
            script("/usr/local/sbin/berth-guest-install", _INSTALL_SCRIPT),
        ],
        "bootcmd": ["systemctl mask --now systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer "
                    ">/dev/null 2>&1 || true", "resize2fs /dev/vda >/dev/null 2>&1 || true"],
        "runcmd": ["systemctl daemon-reload", "systemctl enable --now berth-guest-boot.service"],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)


def meta_data(name: str) -> str:
    """NoCloud meta-data: a fresh instance id per seed, the hostname ``berth-<name>``."""
    return f"instance-id: berth-{name}-{secrets.token_hex(4)}\nlocal-hostname: berth-{name}\n"


def write_seed_iso(path: Path, files: dict[str, str]) -> None:
    """An ISO 9660 image (Rock Ridge and Joliet names) labelled ``cidata`` with ``files`` at its root;
    written 0600 (it holds the guest's private host key)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for index, (name, text) in enumerate(sorted(files.items())):
        data = text.encode()
        iso.add_fp(io.BytesIO(data), len(data), f"/FILE{index}.;1", rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(out.getvalue())
