"""Issue 4's acceptance list for the stock docker CLI, in one walk against a real berthd."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]


def test_the_docker_cli_walk(berthd_with_busybox: Berthd, registry: LocalRegistry, tmp_path: Path) -> None:
    d = berthd_with_busybox
    since = str(int(time.time()) - 1)
    assert "Api Version" in d.docker("version").stdout or "API version" in d.docker("version").stdout
    assert "Containers:" in d.docker("info").stdout
    assert d.docker("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    d.docker("run", "-d", "--name", "web", "busybox", "sh", "-c", "echo started; sleep 1000")
    assert "web" in d.docker("ps").stdout
    assert d.docker("logs", "web").stdout == "started\n"
    hostname = d.docker("exec", "web", "cat", "/etc/hostname").stdout.strip()
    assert hostname == d.docker("inspect", "-f", "{{.Config.Hostname}}", "web").stdout.strip()
    assert d.docker("exec", "-i", "web", "sh", input="echo from-stdin\nexit 0\n").stdout == "from-stdin\n"
    (tmp_path / "in.txt").write_text("copied in\n")
    d.docker("cp", str(tmp_path / "in.txt"), "web:/in.txt")
    d.docker("cp", "web:/in.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "copied in\n"
    assert json.loads(d.docker("inspect", "web").stdout)[0]["State"]["Running"] is True
    assert "sleep 1000" in d.docker("top", "web").stdout
    assert "web" in d.docker("stats", "--no-stream").stdout
    d.docker("pause", "web")
    d.docker("unpause", "web")
    d.docker("stop", "-t", "1", "web")
    d.docker("start", "web")
    d.docker("restart", "-t", "1", "web")
    d.docker("rename", "web", "site")
    d.docker("rm", "-f", "site")
    assert "site" not in d.docker("ps", "-a").stdout
    assert "busybox" in d.docker("images").stdout

    pushed = f"{registry.domain}/walk/busybox:v1"
    d.docker("tag", "busybox", pushed)
    d.docker("push", pushed)
    d.docker("rmi", pushed)
    d.docker("pull", pushed)
    d.docker("save", "-o", str(tmp_path / "img.tar"), pushed)
    d.docker("rmi", pushed)
    assert "Loaded image" in d.docker("load", "-i", str(tmp_path / "img.tar")).stdout
    d.docker("rmi", pushed)

    events = d.docker("events", "--since", since, "--until", str(int(time.time()) + 1)).stdout
    for action in ("create", "start", "exec_start", "pause", "unpause", "die", "rename", "destroy", "push",
                   "pull", "tag", "untag", "load"):
        assert f" {action}" in events, f"no {action} event in: {events}"
