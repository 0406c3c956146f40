"""Swarm over SSH contexts: engine e1 is initialised as a manager on its link address (10.231.3.1) by ``berth
swarm init``, e2 joins as a worker over that link (EngineClient's join through the SSH transport), then ``berth
stack deploy`` of a two-service Compose file runs replicas on both nodes, ``service scale`` changes the count,
``service logs`` reads both nodes' output, ``stack rm`` removes it; the desktop's Stacks page shows a stack and
its services. The busybox image is loaded on both nodes from the local archive (never a registry)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.actions import ActionRunner
from app.engine_session import EngineSession
from app.views.stacks_page import StacksPage
from backend.api.client import EngineClient
from tests.fixtures.remote_engines import RemoteEngines
from tests.gui.conftest import eventually, qloop, run_async

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]
__all__ = ["qloop"]

COMPOSE = """\
services:
  web:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      replicas: 2
      placement:
        max_replicas_per_node: 1
      resources:
        limits: {cpus: "0.5", memory: 64M}
      restart_policy: {condition: on-failure, delay: 2s, max_attempts: 3}
      update_config: {parallelism: 1, delay: 1s, order: start-first}
      labels: {tier: front}
  worker:
    image: busybox:latest
    command: ["sh", "-c", "echo worker-up; exec sleep 3600"]
    environment: {ROLE: worker}
    deploy:
      replicas: 2
"""


async def _join(rig: RemoteEngines, token: str) -> None:
    manager, worker = rig.engines
    async with EngineClient(worker.url) as client:
        await client.swarm_join(f"{manager.peer_address}:2377", token, advertise_addr=worker.peer_address,
                                listen_addr=f"{worker.peer_address}:2377")


@pytest.fixture(scope="module")
def swarm(remote_engines: RemoteEngines, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[RemoteEngines]:
    rig = remote_engines
    monkeypatch_module.setenv("HOME", str(rig.home))  # the in-process client's keys and known_hosts
    for key in ("SSH_AUTH_SOCK", "DOCKER_HOST", "DOCKER_CONTEXT", "BERTH_HOST", "BERTH_CONTEXT"):
        monkeypatch_module.delenv(key, raising=False)
    for engine in rig.engines:
        if engine.name not in rig.berth("context", "ls", "-q").stdout.split():
            rig.berth("context", "create", engine.name, "--host", engine.url)
        rig.berth("--context", engine.name, "load", "-q", "-i", str(rig.archive))
    manager = rig.engines[0]
    init = rig.berth("--context", "e1", "swarm", "init", "--advertise-addr", manager.peer_address, "--listen-addr",
                     f"{manager.peer_address}:2377", "--default-addr-pool", "198.19.0.0/16").stdout
    assert "is now a manager" in init
    asyncio.run(_join(rig, rig.berth("--context", "e1", "swarm", "join-token", "-q", "worker").stdout.strip()))
    try:
        yield rig
    finally:
        for engine in reversed(rig.engines):
            engine.dockerd.docker("swarm", "leave", "--force", timeout=60)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _wait(what: str, check, timeout: float = 90.0, show=lambda: "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{show()}")
        time.sleep(1)


def _running_tasks(rig: RemoteEngines, stack: str) -> list[list[str]]:
    out = rig.berth("--context", "e1", "stack", "ps", stack, "--filter", "desired-state=running",
                    "--format", "{{.Name}} {{.Node}} {{.CurrentState}}").stdout
    return [line.split() for line in out.splitlines() if line.split()[2:3] == ["Running"]]


def test_nodes(swarm: RemoteEngines) -> None:
    lines = swarm.berth("--context", "e1", "node", "ls").stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "HOSTNAME"] and len(lines) == 3
    assert sum("Leader" in line for line in lines) == 1 and sum(" * " in line for line in lines) == 1


def test_stack_deploy_scale_rm(swarm: RemoteEngines, tmp_path: Path) -> None:
    stack = f"st{secrets.token_hex(2)}"
    compose = tmp_path / "compose.yml"
    compose.write_text(COMPOSE)
    out = swarm.berth("--context", "e1", "stack", "deploy", "-c", str(compose), stack).stdout
    assert f"Creating network {stack}_default" in out and f"Creating service {stack}_web" in out
    try:
        tasks = _wait("four running tasks", lambda: len(_running_tasks(swarm, stack)) == 4 and
                      _running_tasks(swarm, stack), show=lambda: swarm.berth("--context", "e1", "stack", "ps",
                                                                            stack).stdout)
        assert isinstance(tasks, list)
        for engine in swarm.engines:  # both nodes are called "vm" (one kernel): count on each engine
            names = engine.dockerd.docker("ps", "--filter", f"label=com.docker.stack.namespace={stack}", "--format",
                                          "{{.Names}}", check=True).stdout.split()
            assert len([n for n in names if n.startswith(f"{stack}_web.")]) == 1  # max_replicas_per_node: 1
        stacks = swarm.berth("--context", "e1", "stack", "ls").stdout.splitlines()
        assert stacks[0].split() == ["NAME", "SERVICES"] and [stack, "2"] in [line.split() for line in stacks]
        spec = swarm.engines[0].dockerd.docker("service", "inspect", f"{stack}_web", "--format",
                                               "{{json .Spec}}", check=True).stdout
        for expected in ('"MemoryBytes":67108864', '"NanoCPUs":500000000', '"Condition":"on-failure"',
                         '"MaxAttempts":3', '"MaxReplicas":1', '"Order":"start-first"', '"tier":"front"'):
            assert expected in spec
        logs = _wait("the workers' output", lambda: swarm.berth("--context", "e1", "service", "logs",
                                                                f"{stack}_worker").stdout.count("worker-up") == 2)
        assert logs
        services = swarm.berth("--context", "e1", "service", "ls", "--format", "{{.Name}} {{.Replicas}}").stdout
        assert f"{stack}_worker 2/2" in services
        assert swarm.berth("--context", "e1", "service", "scale", f"{stack}_worker=3").stdout == \
            f"{stack}_worker scaled to 3\n"
        _wait("five running tasks", lambda: len(_running_tasks(swarm, stack)) == 5)
        assert f"{stack}_worker 3/3" in swarm.berth("--context", "e1", "service", "ls", "--format",
                                                    "{{.Name}} {{.Replicas}}").stdout
        bad = swarm.berth("--context", "e1", "service", "scale", "nosuchservice=2", check=False)
        assert bad.returncode == 1 and "nosuchservice" in bad.stderr and bad.stderr.count("\n") == 1
        worker = swarm.berth("--context", "e2", "stack", "ls", check=False)
        assert worker.returncode == 1 and "swarm manager" in worker.stderr
    finally:
        removed = swarm.berth("--context", "e1", "stack", "rm", stack).stdout
    assert f"Removing service {stack}_web" in removed and f"Removing network {stack}_default" in removed
    assert stack not in swarm.berth("--context", "e1", "stack", "ls").stdout
    _wait("the stack's containers to go", lambda: not any(
        stack in e.dockerd.docker("ps", "-a", "--format", "{{.Names}}").stdout for e in swarm.engines))


def test_stacks_page_shows_the_stack(qtbot: Any, swarm: RemoteEngines, qloop: asyncio.AbstractEventLoop,
                                     tmp_path: Path) -> None:
    stack = f"gui{secrets.token_hex(2)}"
    compose = tmp_path / "compose.yml"
    compose.write_text(COMPOSE)
    swarm.berth("--context", "e1", "stack", "deploy", "-c", str(compose), stack)
    session = EngineSession(EngineClient(swarm.engines[0].url))
    try:
        page = StacksPage(session, ActionRunner())
        page.reload()
        run_async(qtbot, eventually(lambda: page.loaded, 30, "the Stacks page"))
        items = [page.tree.topLevelItem(i) for i in range(page.tree.topLevelItemCount())]
        tops = {item.text(0): item for item in items}
        assert stack in tops and page.tree.isVisibleTo(page) and not page.message.isVisibleTo(page)
        children = sorted(tops[stack].child(i).text(0) for i in range(tops[stack].childCount()))
        assert children == [f"{stack}_web", f"{stack}_worker"]
    finally:
        swarm.berth("--context", "e1", "stack", "rm", stack)
        run_async(qtbot, session.stop())


def test_bad_stack_files_are_one_line(swarm: RemoteEngines, tmp_path: Path) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  b:\n    build: .\n")
    out = swarm.berth("--context", "e1", "stack", "deploy", "-c", str(compose), "bad", check=False)
    assert out.returncode == 1 and "needs an image" in out.stderr and out.stderr.count("\n") == 1
    compose.write_text("services:\n  a:\n    image: busybox\n    deploy: {mode: sometimes}\n")
    out = swarm.berth("--context", "e1", "stack", "deploy", "-c", str(compose), "bad", check=False)
    assert out.returncode == 1 and "mode" in out.stderr and out.stderr.count("\n") == 1
    missing = swarm.berth("--context", "e1", "stack", "rm", "nosuchstack", check=False)
    assert missing.returncode == 1 and "Nothing found in stack: nosuchstack" in missing.stderr
