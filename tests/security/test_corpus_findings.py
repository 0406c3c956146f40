"""Engine bugs the hostile-input corpus found, each pinned by a test (the expected answers are dockerd
20.10's, checked by hand against tests/fixtures/dockerd.py's LocalDockerd):

- a volume holding a tree deeper than Python's recursion limit is removed (and sized) all the same;
- an image reference that is neither a reference nor an ID is 400 "invalid reference format", not 404;
- a bad ``HostIp`` in a port binding is named in the error (not the port);
- ``Env`` (or any ``[]string`` field but Docker's ``StrSlice`` ones) sent as a plain string is refused;
- ``docker import`` of an empty stream makes an image of one empty layer, as dockerd does.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]
CREATE = "/v1.41/containers/create"
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
"""The diff ID of an empty tar (two zero blocks): the one layer of an image imported from nothing."""


@pytest.fixture(scope="module")
def api(berthd_with_busybox: Berthd) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(berthd_with_busybox.socket)), base_url="http://berth",
                      timeout=60) as client:
        yield client


def _refused(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, f"{response.status_code}: {response.text[:300]}"
    assert response.json()["message"] == message


def test_volume_with_a_tree_deeper_than_the_recursion_limit(berthd_with_busybox: Berthd) -> None:
    volume = f"sec-deep-{uuid.uuid4().hex[:6]}"
    berthd_with_busybox.docker("volume", "create", volume)
    try:
        berthd_with_busybox.docker("run", "--rm", "-v", f"{volume}:/v", "busybox", "sh", "-c",
                                   "cd /v && i=0; while [ $i -lt 1500 ]; do mkdir d && cd d; i=$((i+1)); done; "
                                   "echo bottom > f", timeout=120)
        usage = berthd_with_busybox.docker("system", "df", "-v", "--format", "{{json .Volumes}}").stdout
        [mine] = [v for v in json.loads(usage) if v["Name"] == volume]
        assert mine["Size"] != "0B", mine
    finally:
        berthd_with_busybox.docker("volume", "rm", volume)
    assert volume not in berthd_with_busybox.docker("volume", "ls", "-q").stdout.split()


@pytest.mark.parametrize(("image", "message"), [
    ("BusyBox", "invalid reference format: repository name must be lowercase"),
    ("busy box", "invalid reference format"),
    ("../../busybox", "invalid reference format"),
    ("busybox@sha256:xyz", "invalid reference format"),
    ("a" * 300, "repository name must not be more than 255 characters"),
], ids=["uppercase", "space", "traversal", "bad-digest", "too-long"])
def test_create_with_an_invalid_reference(api: httpx.Client, image: str, message: str) -> None:
    _refused(api.post(CREATE, json={"Image": image, "Cmd": ["true"]}), 400, message)
    _refused(api.get(f"/v1.41/images/{urllib.parse.quote(image, safe='')}/history"), 400, message)


def test_create_with_a_missing_image_is_still_404(api: httpx.Client) -> None:
    _refused(api.post(CREATE, json={"Image": "nosuch/image:v1", "Cmd": ["true"]}), 404,
             "No such image: nosuch/image:v1")


@pytest.mark.parametrize("host_ip", ["not-an-ip", "999.1.1.1", "1.2.3", "::zz"])
def test_bad_host_ip_is_named(api: httpx.Client, host_ip: str) -> None:
    body = {"Image": "busybox", "Cmd": ["true"],
            "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": host_ip, "HostPort": "8080"}]}}}
    _refused(api.post(CREATE, json=body), 400, f"invalid IP address: {host_ip}")


@pytest.mark.parametrize(("body", "field"), [
    ({"Env": "A=1"}, "ContainerConfigWrapper.Env"),
    ({"HostConfig": {"Dns": "10.0.0.1"}}, "HostConfig.HostConfig.Dns"),
    ({"HostConfig": {"Binds": "/tmp:/x"}}, "HostConfig.HostConfig.Binds"),
    ({"HostConfig": {"ExtraHosts": "a:10.0.0.1"}}, "HostConfig.HostConfig.ExtraHosts"),
], ids=["env", "dns", "binds", "extra-hosts"])
def test_a_string_where_a_list_belongs(api: httpx.Client, body: dict[str, object], field: str) -> None:
    _refused(api.post(CREATE, json={"Image": "busybox", "Cmd": ["true"], **body}), 400,
             f"json: cannot unmarshal string into Go struct field {field} of type []string")


def test_str_slice_fields_take_a_string(api: httpx.Client, berthd_with_busybox: Berthd) -> None:
    """Docker's StrSlice fields (Cmd, Entrypoint, CapAdd, CapDrop) take one string as a one-item list."""
    name = f"sec-strslice-{uuid.uuid4().hex[:6]}"
    body = {"Image": "busybox", "Cmd": "true", "Entrypoint": "/bin/sh",
            "HostConfig": {"CapAdd": "NET_ADMIN", "CapDrop": "MKNOD"}}
    created = api.post(f"{CREATE}?name={name}", json=body)
    assert created.status_code == 201, created.text
    try:
        inspect = api.get(f"/v1.41/containers/{name}/json").json()
        assert (inspect["Config"]["Cmd"], inspect["Config"]["Entrypoint"]) == (["true"], ["/bin/sh"])
    finally:
        berthd_with_busybox.docker("rm", "-f", name)


def test_import_of_an_empty_stream(berthd_with_busybox: Berthd) -> None:
    """As dockerd: an image of one empty layer (its size is the empty tar's 1024 bytes here, where dockerd
    counts file content and says 0: Berth's layer sizes are tar bytes throughout)."""
    image = f"sec-empty-{uuid.uuid4().hex[:6]}:latest"
    berthd_with_busybox.docker("import", "-", image, input="")
    try:
        shown = berthd_with_busybox.docker("image", "inspect", image, "--format", "{{json .RootFS.Layers}}")
        assert json.loads(shown.stdout) == [EMPTY_LAYER]
    finally:
        berthd_with_busybox.docker("rmi", image)
