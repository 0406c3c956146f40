"""berth compose against a real berthd: a three-service project (web built from a local Dockerfile, a db with
a named volume, a cache) brought up, inspected, scaled, taken down; the orchestrator driven directly with a
hand-built Project, and the CLI with a compose file."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from backend.api.client import EngineClient
from backend.compose.model import (
    BuildConfig,
    DependsOn,
    DependsOnCondition,
    Healthcheck,
    NetworkConfig,
    PortConfig,
    Project,
    Service,
    ServiceNetwork,
    ServiceVolume,
    VolumeConfig,
)
from backend.compose.project import LABEL_PROJECT, LABEL_SERVICE, Orchestrator, UpOptions
from tests.fixtures.berthd import Berthd
from tests.fixtures.dockerd import LocalDockerd

pytestmark = [pytest.mark.root, pytest.mark.network]

DOCKERFILE = """FROM busybox
RUN mkdir -p /www && echo web-ok > /www/index.html
CMD ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
"""

COMPOSE_FILE = """services:
  web:
    build: ./web
    ports: ["127.0.0.1:{port}:80"]
    depends_on:
      db: {{condition: service_started}}
      cache: {{condition: service_started}}
  db:
    image: busybox
    command: ["sh", "-c", "echo db-up; cat /data/value 2>/dev/null; exec sleep 600"]
    volumes: ["dbdata:/data"]
  cache:
    image: busybox
    command: ["sleep", "600"]
volumes:
  dbdata: {{}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_get(port: int, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                return data.decode(errors="replace")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def project_dir(tmp_path: Path) -> tuple[Path, str, int]:
    """A compose project directory with a unique project name and a free host port for web."""
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "web" / ".dockerignore").write_text("secret.txt\n")
    (tmp_path / "web" / "secret.txt").write_text("not sent")
    port = _free_port()
    (tmp_path / "compose.yaml").write_text(COMPOSE_FILE.format(port=port))
    return tmp_path, f"bt{secrets.token_hex(4)}", port


def _hand_project(name: str, workdir: Path, port: int) -> Project:
    default = {"default": ServiceNetwork()}
    return Project(
        name=name, working_dir=str(workdir), config_files=[str(workdir / "compose.yaml")],
        services={
            "web": Service("web", build=BuildConfig(str(workdir / "web")), networks=default,
                           ports=[PortConfig(80, str(port), "127.0.0.1")] if port else [],
                           depends_on={"db": DependsOn(DependsOnCondition.HEALTHY), "cache": DependsOn()}),
            "db": Service("db", image="busybox", networks=default,
                          command=["sh", "-c", "echo db-up; exec sleep 600"],
                          healthcheck=Healthcheck(["CMD", "true"], interval=0.3),
                          volumes=[ServiceVolume("volume", "/data", "dbdata")]),
            "cache": Service("cache", image="busybox", command=["sleep", "600"], networks=default),
        },
        networks={"default": NetworkConfig(f"{name}_default")},
        volumes={"dbdata": VolumeConfig(f"{name}_dbdata")})


def test_orchestrator_up_ps_down(berthd_with_busybox: Berthd, project_dir: tuple[Path, str, int]) -> None:
    workdir, name, port = project_dir
    project = _hand_project(name, workdir, port)
    lines: list[str] = []

    async def scenario() -> None:
        async with EngineClient(berthd_with_busybox.url) as client:
            orchestrator = Orchestrator(client, project, lines.append)
            try:
                started = await orchestrator.up(UpOptions(), lambda m: None)
                assert started.index(f"{name}-db-1") < started.index(f"{name}-web-1")
                assert lines.index(f"Container {name}-db-1  Healthy") < lines.index(f"Container {name}-web-1  Created")
                containers = await orchestrator.containers()
                assert sorted(c.labels[LABEL_SERVICE] for c in containers) == ["cache", "db", "web"]
                assert all(c.state == "running" for c in containers)
                assert "web-ok" in await asyncio.to_thread(_http_get, port)
                # unchanged config: nothing recreated
                lines.clear()
                await orchestrator.up(UpOptions(), lambda m: None)
                assert not [line for line in lines if "Created" in line]
                # scale and force-recreate
                await orchestrator.up(UpOptions(scale={"cache": 2}), lambda m: None)
                assert len(await orchestrator.containers(["cache"])) == 2
            finally:
                await orchestrator.down(volumes=True, rmi="local")
            left = await client.list_containers(all=True, filters={"label": [f"{LABEL_PROJECT}={name}"]})
            assert left == []
            assert not [n for n in await client.list_networks() if n.name.startswith(name)]
            assert not [v for v in await client.list_volumes() if v.name.startswith(name)]

    asyncio.run(scenario())


def _compose(daemon: Berthd, workdir: Path, name: str, *args: str, check: bool = True, timeout: float = 120):  # type: ignore[no-untyped-def]
    return daemon.berth("compose", "-f", str(workdir / "compose.yaml"), "-p", name, *args, check=check,
                        timeout=timeout)


def test_compose_cli_lifecycle(berthd_with_busybox: Berthd, project_dir: tuple[Path, str, int]) -> None:
    workdir, name, port = project_dir
    d = berthd_with_busybox
    try:
        up = _compose(d, workdir, name, "up", "-d")
        assert f"Container {name}-web-1  Started" in up.stderr
        assert "web-ok" in _http_get(port)
        ps = _compose(d, workdir, name, "ps").stdout
        assert "SERVICE" in ps and f"{name}-db-1" in ps and f"{name}-web-1" in ps
        assert len(_compose(d, workdir, name, "ps", "-q").stdout.split()) == 3
        rows = [json.loads(line) for line in _compose(d, workdir, name, "ps", "--format", "json").stdout.splitlines()]
        assert {r["Service"] for r in rows} == {"web", "db", "cache"}
        assert re.search(r"-db-1 +\| db-up$", _compose(d, workdir, name, "logs", "db").stdout, re.M)
        assert _compose(d, workdir, name, "exec", "-T", "db", "sh", "-c", "echo hi > /data/value").returncode == 0
        assert _compose(d, workdir, name, "exec", "-T", "cache", "sh", "-c", "exit 3", check=False).returncode == 3
        run = _compose(d, workdir, name, "run", "--rm", "-T", "--no-deps", "cache", "echo", "one-off")
        assert "one-off" in run.stdout
        assert len(_compose(d, workdir, name, "ps", "-a", "-q").stdout.split()) == 3
        _compose(d, workdir, name, "up", "-d", "--scale", "cache=3", "--no-build")  # web has a fixed host port
        assert len(_compose(d, workdir, name, "ps", "-q", "cache").stdout.split()) == 3
        assert name in _compose(d, workdir, name, "ls").stdout
        # down then up keeps the named volume's data
        _compose(d, workdir, name, "down")
        assert _compose(d, workdir, name, "ps", "-a", "-q").stdout.strip() == ""
        _compose(d, workdir, name, "up", "-d", "db")
        assert "hi" in _compose(d, workdir, name, "exec", "-T", "db", "cat", "/data/value").stdout
        # an orphan is reported, and removed with --remove-orphans
        d.docker("run", "-d", "--name", f"{name}-old-1", "--label", f"{LABEL_PROJECT}={name}",
                 "--label", f"{LABEL_SERVICE}=old", "--label", "com.docker.compose.oneoff=False", "busybox",
                 "sleep", "600")
        assert f"{name}-old-1" in _compose(d, workdir, name, "up", "-d", "db").stderr
        _compose(d, workdir, name, "up", "-d", "db", "--remove-orphans")
        assert f"{name}-old-1" not in d.docker("ps", "-a", "--format", "{{.Names}}").stdout
    finally:
        _compose(d, workdir, name, "down", "-v", "--remove-orphans", "--rmi", "local", check=False)
    assert d.docker("ps", "-a", "-q", "--filter", f"label={LABEL_PROJECT}={name}").stdout.strip() == ""
    assert name not in d.docker("network", "ls", "--format", "{{.Name}}").stdout
    assert name not in d.docker("volume", "ls", "--format", "{{.Name}}").stdout


def test_compose_config(berthd_with_busybox: Berthd, project_dir: tuple[Path, str, int]) -> None:
    workdir, name, _ = project_dir
    d = berthd_with_busybox
    assert _compose(d, workdir, name, "config", "--services").stdout.split() == ["web", "db", "cache"]
    assert _compose(d, workdir, name, "config", "--volumes").stdout.split() == ["dbdata"]
    out = _compose(d, workdir, name, "config").stdout
    assert "services:" in out and "image: busybox" in out


def test_compose_bad_input(berthd_with_busybox: Berthd, tmp_path: Path) -> None:
    d = berthd_with_busybox
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: busybox\n    bogus_key: 1\n")
    for args in (("up", "-d"), ("up", "--scale", "a=x"), ("ps", "nosuch"), ("exec", "nosuch", "true"),
                 ("bogus",)):
        result = d.berth("compose", "-f", str(tmp_path / "compose.yaml"), *args, check=False)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    assert d.berth("compose", "version").stdout.startswith("Berth Compose version")
    assert d.docker("version").returncode == 0


def test_orchestrator_against_dockerd(dockerd: LocalDockerd, berthd_with_busybox: Berthd,
                                      project_dir: tuple[Path, str, int]) -> None:
    """The same project against the real dockerd (its own network namespace, no bridge: network_mode none)."""
    workdir, name, _ = project_dir
    archive = subprocess.run(["docker", "save", "busybox:latest"], env=berthd_with_busybox.env, capture_output=True,
                             check=True, timeout=60).stdout
    dockerd.docker("load", input=archive, check=True)
    project = _hand_project(name, workdir, 0)
    project = replace(project, networks={}, services={
        n: replace(s, networks={}, ports=[], network_mode="none") for n, s in project.services.items()})

    async def scenario() -> None:
        async with EngineClient(dockerd.host) as client:
            orchestrator = Orchestrator(client, project, lambda line: None)
            try:
                await orchestrator.up(UpOptions(scale={"web": 2}), lambda m: None)
                containers = await orchestrator.containers()
                assert sorted(c.names[0] for c in containers) == sorted(
                    f"/{name}-{s}" for s in ("cache-1", "db-1", "web-1", "web-2"))
                assert all(c.state == "running" for c in containers)
            finally:
                await orchestrator.down(volumes=True, rmi="local")
            assert await client.list_containers(all=True, filters={"label": [f"{LABEL_PROJECT}={name}"]}) == []
            assert not [v for v in await client.list_volumes() if v.name.startswith(name)]

    asyncio.run(scenario())


def test_compose_lifecycle_verbs(berthd_with_busybox: Berthd, project_dir: tuple[Path, str, int]) -> None:
    """stop/start/restart/pause/unpause/kill/rm/top/images/build on a project, each reaching the engine."""
    workdir, name, _ = project_dir
    d = berthd_with_busybox

    def states() -> dict[str, str]:
        rows = d.docker("ps", "-a", "--filter", f"label={LABEL_PROJECT}={name}", "--format",
                        "{{.Names}} {{.State}}").stdout.splitlines()
        return dict(row.split(" ", 1) for row in rows)

    try:
        _compose(d, workdir, name, "build")
        assert f"{name}-web" in _compose(d, workdir, name, "images").stdout or \
            f"{name}-web" in d.docker("images", "--format", "{{.Repository}}").stdout
        _compose(d, workdir, name, "up", "-d")
        assert "sleep 600" in _compose(d, workdir, name, "top", "cache").stdout
        _compose(d, workdir, name, "pause", "cache")
        assert states()[f"{name}-cache-1"] == "paused"
        _compose(d, workdir, name, "unpause", "cache")
        _compose(d, workdir, name, "stop", "-t", "1", "cache")
        assert states()[f"{name}-cache-1"] == "exited"
        _compose(d, workdir, name, "start", "cache")
        assert states()[f"{name}-cache-1"] == "running"
        _compose(d, workdir, name, "restart", "-t", "1", "cache")
        assert states()[f"{name}-cache-1"] == "running"
        _compose(d, workdir, name, "kill", "cache")
        assert states()[f"{name}-cache-1"] == "exited"
        _compose(d, workdir, name, "rm", "-f", "cache")
        assert f"{name}-cache-1" not in states()
    finally:
        _compose(d, workdir, name, "down", "-v", "--rmi", "local", check=False)
