"""``docker commit`` and ``berth commit`` against berthd: --change, -m and -a as the image shows them, the
image runs, ``docker history``, ``docker diff`` against the committed content, running containers paused
and resumed, ``docker save`` read by skopeo and loaded back, and bad input answered with one clear line
and the right status while the daemon stays up."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.berthd import Berthd
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]

"""What ``docker diff`` of berthd shows for a container that changed nothing (dockerd shows nothing)."""


@pytest.fixture
def names(berthd_with_busybox: Berthd) -> Iterator[dict[str, str]]:
    """Unique container and image names for one test; containers and images removed afterwards."""
    suffix = secrets.token_hex(4)
    made = {"container": f"commit-{suffix}", "other": f"commit2-{suffix}", "image": f"committed-{suffix}"}
    yield made
    berthd_with_busybox.docker("rm", "-f", made["container"], made["other"], check=False)
    for tag in ("v1", "latest", "berth", "body"):
        berthd_with_busybox.docker("rmi", f"{made['image']}:{tag}", check=False)


def _changed_container(d: Berthd, name: str) -> None:
    d.docker("run", "--name", name, "busybox", "sh", "-c",
             "echo hi > /greeting && busybox mkdir -p /data/sub && echo d > /data/sub/f && busybox rm /bin/id")


def test_commit_change_message_author_history_and_diff(berthd_with_busybox: Berthd, names: dict[str, str]) -> None:
    d = berthd_with_busybox
    c, image = names["container"], f"{names['image']}:v1"
    _changed_container(d, c)
    changes = {line.split(" ", 1)[1] for line in d.docker("diff", c).stdout.splitlines() if line[0] in "AD"}
    assert {"/greeting", "/data", "/data/sub/f", "/bin/id"} <= changes

    out = d.docker("commit", "-c", 'CMD ["cat", "/greeting"]', "-c", "ENV MODE=committed", "-m", "my message",
                   "-a", "Me <me@example.com>", c, image).stdout.strip()
    assert out.startswith("sha256:") and len(out) == 71
    assert d.docker("run", "--rm", image).stdout == "hi\n"
    shown = d.docker("run", "--rm", image, "sh", "-c",
                     'cat /data/sub/f; echo "$MODE"; test -e /bin/id || echo gone').stdout
    assert shown == "d\ncommitted\ngone\n"

    doc = json.loads(d.docker("image", "inspect", image).stdout)[0]
    assert doc["Id"] == out and doc["Author"] == "Me <me@example.com>" and doc["Comment"] == "my message"
    assert doc["Config"]["Cmd"] == ["cat", "/greeting"]
    base = json.loads(d.docker("image", "inspect", "busybox").stdout)[0]
    assert doc["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    history = d.docker("history", "--no-trunc", "--format", "{{.Comment}}|{{.CreatedBy}}", image).stdout
    assert history.splitlines()[0].startswith("my message|sh -c echo hi > /greeting")

    # A container of the committed image starts with no changes of its own: everything came with the image,
    # and the mount points berthd adds (Docker's init layer) were not committed.
    d.docker("create", "--name", names["other"], image)
    assert d.docker("diff", names["other"]).stdout == ""


def test_commit_running_container_pauses_and_resumes(berthd_with_busybox: Berthd, names: dict[str, str]) -> None:
    d = berthd_with_busybox
    c = names["container"]
    d.docker("run", "-d", "--name", c, "busybox", "sh", "-c", "echo up > /state; exec sleep 300")
    assert d.docker("exec", c, "cat", "/state").stdout == "up\n"
    d.docker("commit", c, names["image"])
    assert d.docker("inspect", "-f", "{{.State.Status}}", c).stdout.strip() == "running"
    assert d.docker("run", "--rm", names["image"], "cat", "/state").stdout == "up\n"
    d.docker("commit", "--pause=false", c, f"{names['image']}:v1")
    assert d.docker("inspect", "-f", "{{.State.Status}}", c).stdout.strip() == "running"
    until = str(int(time.time()) + 1)  # "--until 0s" would be this second, truncated: events in it are missed
    events = d.docker("events", "--since", "5m", "--until", until, "--filter", "event=commit", "--filter",
                      f"container={c}", "--format", "{{.Action}} {{index .Actor.Attributes \"imageRef\"}}").stdout
    assert events.splitlines() == [f"commit {names['image']}:latest", f"commit {names['image']}:v1"]


def test_save_of_committed_image_loads_in_skopeo_and_back(berthd_with_busybox: Berthd, names: dict[str, str],
                                                          tmp_path: Path) -> None:
    d = berthd_with_busybox
    c, image = names["container"], f"{names['image']}:v1"
    _changed_container(d, c)
    image_id = d.docker("commit", "-c", 'CMD ["cat", "/greeting"]', c, image).stdout.strip()
    archive = tmp_path / "committed.tar"
    d.docker("save", "-o", str(archive), image)
    seen = subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}"], capture_output=True, text=True,
                          timeout=60)
    assert seen.returncode == 0, seen.stderr
    base = json.loads(d.docker("image", "inspect", "busybox").stdout)[0]
    assert len(json.loads(seen.stdout)["Layers"]) == len(base["RootFS"]["Layers"]) + 1
    d.docker("rmi", image)
    d.docker("load", "-i", str(archive))
    assert d.docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip() == image_id
    assert d.docker("run", "--rm", image).stdout == "hi\n"


def test_push_and_pull_of_committed_image(berthd_with_busybox: Berthd, registry: LocalRegistry,
                                         names: dict[str, str]) -> None:
    d = berthd_with_busybox
    c, remote = names["container"], f"{registry.domain}/{names['image']}:v1"
    _changed_container(d, c)
    image_id = d.docker("commit", "-c", 'CMD ["cat", "/greeting"]', c, remote).stdout.strip()
    d.docker("push", remote)
    d.docker("rmi", remote)
    d.docker("pull", "-q", remote)
    assert d.docker("image", "inspect", "-f", "{{.Id}}", remote).stdout.strip() == image_id
    assert d.docker("run", "--rm", remote).stdout == "hi\n"
    d.docker("rmi", remote)


def test_berth_commit(berthd_with_busybox: Berthd, names: dict[str, str]) -> None:
    d = berthd_with_busybox
    c, image = names["container"], f"{names['image']}:berth"
    _changed_container(d, c)
    out = d.berth("commit", "-c", 'CMD ["cat", "/greeting"]', "-m", "from berth", "-a", "B", "-p", c, image).stdout
    assert out.strip().startswith("sha256:")
    assert d.docker("run", "--rm", image).stdout == "hi\n"
    assert d.docker("image", "inspect", "-f", "{{.Comment}} {{.Author}}", image).stdout.strip() == "from berth B"
    bad = d.berth("commit", "no-such-container-x", image, check=False)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "No such container: no-such-container-x" in bad.stderr


def test_bad_input_gets_clear_errors_and_daemon_stays_up(berthd_with_busybox: Berthd,
                                                         names: dict[str, str]) -> None:
    d = berthd_with_busybox
    c = names["container"]
    d.docker("create", "--name", c, "busybox", "true")
    missing = d.docker("commit", "no-such-container-x", check=False)
    assert missing.returncode == 1 and "No such container: no-such-container-x" in missing.stderr
    bad_change = d.docker("commit", "-c", "RUN rm -rf /", c, check=False)
    assert bad_change.returncode == 1 and "RUN is not a valid change command" in bad_change.stderr
    assert len(bad_change.stderr.strip().splitlines()) == 1

    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://berth", timeout=30) as api:
        for params, body, status, message in (
            ({"container": "no-such-container-x"}, None, 404, "No such container"),
            ({"container": c, "repo": "Upper"}, None, 400, "repository name must be lowercase"),
            ({"container": c, "repo": "x:y"}, None, 400, "unexpected repository name"),
            ({"container": c, "repo": "x", "tag": "bad tag"}, None, 400, "invalid tag format"),
            ({"container": c, "changes": "EXPOSE nope"}, None, 400, "EXPOSE: invalid port"),
            ({"container": c}, b"[1, 2]", 400, "expected a JSON object"),
            ({"container": c}, b"{not json", 400, "invalid JSON body"),
            ({"container": c}, b'{"Cmd": 5}', 400, "Cmd must be a list of strings"),
        ):
            resp = api.post("/v1.41/commit", params=params, content=body,
                            headers={"Content-Type": "application/json"})
            assert resp.status_code == status, (params, body, resp.text)
            assert message in resp.json()["message"]
        resp = api.post("/v1.41/commit", params={"container": c, "repo": names["image"], "tag": "body"},
                        json={"Cmd": ["echo", "from body"], "Env": ["A=1"]})
        assert resp.status_code == 201, resp.text
        assert resp.json()["Id"].startswith("sha256:")
    assert d.docker("run", "--rm", f"{names['image']}:body").stdout == "from body\n"
    assert d.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip() == "1.41"
