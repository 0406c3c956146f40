"""A pulled image runs: overlay root + the OCI config built from image and request + berth-runtime."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.engine.containers.create_request import parse_create_request
from backend.engine.containers.oci_spec import build_oci_spec
from backend.engine.images.layer_store import chain_ids
from backend.engine.images.overlay import mount_rootfs, unmount_rootfs
from backend.engine.images.service import ImageService
from backend.engine.registry.client import RegistryClient
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]
RUNTIME = str(Path(sys.executable).parent / "berth-runtime")


def test_pulled_image_runs_with_dockers_defaults(multilayer_image: LayoutImage, registry: LocalRegistry,
                                                  tmp_path: Path) -> None:
    push_with_skopeo(multilayer_image, "run/multi:latest", registry)
    service = ImageService(str(tmp_path / "images"), RegistryClient())
    record = asyncio.run(service.pull(f"{registry.domain}/run/multi"))
    container = tmp_path / "container"
    merged = mount_rootfs(service.layers, list(reversed(chain_ids(record.diff_ids))), str(container))
    try:
        script = ("cat /etc/motd; ls /opt/data; test -e /etc/removed.txt || echo whiteout-ok; "
                  "echo $A $HOSTNAME; grep CapEff /proc/self/status; grep Seccomp: /proc/self/status; "
                  "touch /new-file && echo writable")
        req = parse_create_request({"Image": "x", "Cmd": ["sh", "-c", script], "Env": ["A=from-request"],
                                    "Hostname": "web1", "HostConfig": {"Memory": 32 << 20}})
        cid = "r" + "0" * 63
        spec = build_oci_spec(req, service.config(record), merged, container_id=cid,
                              cgroups_path=f"/berth-test-run/{cid}")
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(spec))
        result = subprocess.run([RUNTIME, "--root", str(tmp_path / "state"), "run", "-b", str(bundle), cid],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "layer 4 is zstd-compressed", "c.txt", "whiteout-ok", "from-request web1",
            "CapEff:\t00000000a80425fb", "Seccomp:\t2", "writable"]
        assert (container / "upper" / "new-file").exists()
    finally:
        unmount_rootfs(str(container))
        for parent in Path("/sys/fs/cgroup").glob("*/berth-test-run"):
            parent.rmdir()
