"""The ``docker cp`` race: a container swaps a path component for a symlink to ``/`` in a loop while the host
copies into and out of that path 500 times. Nothing may land outside the container and nothing of the host
may be read (the shared checks of conftest.py hash the sentinel tree and the host marker afterwards).
"""

from __future__ import annotations

import io
import tarfile
import uuid

import httpx
import pytest

from tests.fixtures.berthd import Berthd
from tests.security.hostile import MARKER, MARKER_TEXT, SENTINEL, Tar

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]
ROUNDS = 500
SWAPPER = ("mkdir -p /w/real; while true; do mv /w/real /w/hold; ln -s / /w/real; rm /w/real; "
           "mv /w/hold /w/real; done")


def test_cp_in_and_out_while_a_component_flips_to_a_symlink(berthd_with_busybox: Berthd) -> None:
    name = f"sec-race-{uuid.uuid4().hex[:6]}"
    marker_dir, marker_name = MARKER.rsplit("/", 1)
    payload = Tar().file(f"{SENTINEL[1:]}/escaped", b"pwned").file("escaped", b"pwned").bytes()
    berthd_with_busybox.docker("run", "-d", "--name", name, "busybox", "sh", "-c", SWAPPER)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(berthd_with_busybox.socket)),
                          base_url="http://berth/v1.41", timeout=30) as api:
            for i in range(ROUNDS):
                put = api.put(f"/containers/{name}/archive", params={"path": "/w/real"}, content=payload)
                assert put.status_code in (200, 404, 400), put.text
                path = f"/w/real{marker_dir}/{marker_name}" if i % 2 else f"/w/real{SENTINEL}/dir/sub/file"
                got = api.get(f"/containers/{name}/archive", params={"path": path})
                assert got.status_code in (200, 404), got.text
                if got.status_code == 200:
                    with tarfile.open(fileobj=io.BytesIO(got.content)) as tar:
                        for member in tar.getmembers():
                            f = tar.extractfile(member)
                            data = f.read() if f is not None else b""
                            assert MARKER_TEXT not in data and b"sentinel" not in data
    finally:
        berthd_with_busybox.docker("rm", "-f", name)
