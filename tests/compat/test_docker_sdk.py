"""The Python ``docker`` SDK, unchanged, against a real berthd.

Every test runs real containers from ``busybox:latest`` on the module's daemon (``berthd_with_busybox``),
names them uniquely through the ``names`` fixture and removes them afterwards.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from tests.fixtures.berthd import Berthd
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]

# A shell that exits at once on SIGTERM once it logged "ready" (PID 1 ignores signals it has no handler for).
LOOP = ["sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done"]


@pytest.fixture(scope="module")
def client(berthd_with_busybox: Berthd) -> Iterator[docker.DockerClient]:
    sdk = docker.DockerClient(base_url=berthd_with_busybox.url, timeout=30)
    yield sdk
    sdk.close()


@pytest.fixture
def names(client: docker.DockerClient) -> Iterator[Callable[[], str]]:
    """Unique container names; every container so named is force-removed after the test."""
    made: list[str] = []

    def new() -> str:
        made.append(f"sdk-{secrets.token_hex(4)}")
        return made[-1]

    yield new
    for name in made:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(name, force=True)


def run_detached(client: docker.DockerClient, name: str, command: list[str] | str = LOOP,
                 **kwargs: object) -> Container:
    container: Container = client.containers.run("busybox", command, name=name, detach=True, **kwargs)
    return container


def wait_ready(container: Container, starts: int = 1) -> None:
    """Wait until the LOOP shell of the ``starts``-th start has set its TERM trap."""
    deadline = time.monotonic() + 10
    while container.logs().count(b"ready") < starts:
        assert time.monotonic() < deadline, "the container never logged ready"
        time.sleep(0.02)


def test_ping_version_info(client: docker.DockerClient) -> None:
    assert client.ping() is True
    version = client.version()
    assert version["ApiVersion"] and version["Os"] == "linux"
    info = client.info()
    assert info["Images"] >= 1 and info["LoggingDriver"] == "json-file"


def test_run_foreground_output_and_remove(client: docker.DockerClient, names: Callable[[], str]) -> None:
    name = names()
    script = ["sh", "-c", "echo out; echo err >&2"]
    assert client.containers.run("busybox", script, name=name, remove=True) == b"out\n"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)
    assert client.containers.run("busybox", script, stdout=False, stderr=True, remove=True) == b"err\n"
    assert client.containers.run("busybox", script, stdout=True, stderr=True, remove=True) in (
        b"out\nerr\n", b"err\nout\n")


def test_run_failure_raises_container_error(client: docker.DockerClient) -> None:
    with pytest.raises(docker.errors.ContainerError) as excinfo:
        client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 7"], remove=True)
    assert excinfo.value.exit_status == 7
    assert excinfo.value.stderr == b"bad\n"


def test_run_options(client: docker.DockerClient, names: Callable[[], str]) -> None:
    out = client.containers.run(
        "busybox", ["echo $FOO $(pwd) $(id -u):$(id -g)"], entrypoint=["sh", "-c"], environment={"FOO": "bar"},
        working_dir="/tmp", user="1000:1001", remove=True)
    assert out == b"bar /tmp 1000:1001\n"
    name = names()
    container = run_detached(client, name, labels={"berth.test": "sdk", "tier": "a"})
    assert container.name == name
    assert container.labels == {"berth.test": "sdk", "tier": "a", "org.berth.test": "busybox"}  # the image's too
    assert container.attrs["Config"]["Cmd"] == LOOP
    assert client.containers.get(name).id == container.id
    container.remove(force=True)


def test_run_detached_with_remove(client: docker.DockerClient, names: Callable[[], str]) -> None:
    name = names()
    container = run_detached(client, name, "true", remove=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            container.reload()
        except docker.errors.NotFound:
            return
        time.sleep(0.05)
    pytest.fail("auto_remove container was not removed")


def test_list_with_filters(client: docker.DockerClient, names: Callable[[], str]) -> None:
    tag = secrets.token_hex(4)
    running, exited = names(), names()
    run_detached(client, running, labels={"batch": tag, "role": "server"})
    done = run_detached(client, exited, "true", labels={"batch": tag, "role": "job"})
    done.wait(timeout=10)

    def listed(**kwargs: object) -> set[str]:
        return {c.name for c in client.containers.list(**kwargs)}

    assert running in listed() and exited not in listed()
    assert {running, exited} <= listed(all=True)
    assert listed(all=True, filters={"name": running}) == {running}
    assert listed(all=True, filters={"label": f"batch={tag}"}) == {running, exited}
    assert listed(all=True, filters={"label": [f"batch={tag}", "role=job"]}) == {exited}
    assert listed(all=True, filters={"label": "batch=none-such"}) == set()
    assert exited in listed(all=True, filters={"status": "exited"})
    assert running not in listed(all=True, filters={"status": "exited"})
    assert listed(all=True, filters={"status": "running", "label": f"batch={tag}"}) == {running}


def test_logs(client: docker.DockerClient, names: Callable[[], str]) -> None:
    container = run_detached(client, names(), ["sh", "-c", "for i in 1 2 3 4; do echo line$i; done; echo oops >&2"])
    assert container.wait(timeout=10)["StatusCode"] == 0
    assert container.logs(stderr=False) == b"line1\nline2\nline3\nline4\n"
    assert container.logs(stdout=False) == b"oops\n"
    assert container.logs(tail=2) == b"line4\noops\n"  # as dockerd: tail counts lines of both streams
    stamped = container.logs(stderr=False, timestamps=True).decode().splitlines()
    assert len(stamped) == 4
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line\d", line) for line in stamped)
    streamed = b"".join(container.logs(stream=True, stderr=False))
    assert streamed == b"line1\nline2\nline3\nline4\n"


def test_logs_follow(client: docker.DockerClient, names: Callable[[], str]) -> None:
    container = run_detached(client, names(), ["sh", "-c", "echo a; sleep 0.3; echo b; sleep 0.3; echo c"])
    assert b"".join(container.logs(stream=True, follow=True)) == b"a\nb\nc\n"


def test_exec_run(client: docker.DockerClient, names: Callable[[], str]) -> None:
    container = run_detached(client, names())
    result = container.exec_run("echo hi")
    assert (result.exit_code, result.output) == (0, b"hi\n")
    result = container.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"], demux=True)
    assert result.exit_code == 3
    assert result.output == (b"out\n", b"err\n")
    result = container.exec_run(["sh", "-c", "echo $X $(pwd) $(id -u)"], environment={"X": "y"}, workdir="/bin",
                                user="1000")
    assert (result.exit_code, result.output) == (0, b"y /bin 1000\n")
    result = container.exec_run(["sh", "-c", "echo one; sleep 0.2; echo two"], stream=True)
    assert result.exit_code is None
    assert b"".join(result.output) == b"one\ntwo\n"
    container.remove(force=True)


def test_lifecycle(client: docker.DockerClient, names: Callable[[], str]) -> None:
    container = run_detached(client, names())
    wait_ready(container)
    container.reload()
    assert container.status == "running"
    assert container.attrs["State"]["Running"] is True
    container.pause()
    container.reload()
    assert container.status == "paused"
    container.unpause()
    container.reload()
    assert container.status == "running"
    started = container.attrs["State"]["StartedAt"]
    container.restart(timeout=5)
    wait_ready(container, 2)
    container.reload()
    assert container.status == "running" and container.attrs["State"]["StartedAt"] != started
    new_name = names()
    container.rename(new_name)
    container.reload()
    assert container.name == new_name
    container.stop(timeout=5)
    assert container.wait(timeout=10)["StatusCode"] == 0
    container.reload()
    assert container.status == "exited"
    container.start()
    wait_ready(container, 3)
    container.kill(signal=15)
    assert container.wait(timeout=10)["StatusCode"] == 0
    container.start()
    container.kill(signal="SIGKILL")
    assert container.wait(timeout=10)["StatusCode"] == 137
    container.remove()
    with pytest.raises(docker.errors.NotFound):
        container.reload()


def test_top_and_stats(client: docker.DockerClient, names: Callable[[], str]) -> None:
    container = run_detached(client, names())
    top = container.top()
    assert "PID" in top["Titles"] and "CMD" in top["Titles"]
    commands = [row[top["Titles"].index("CMD")] for row in top["Processes"]]
    assert any("while :" in cmd for cmd in commands), commands
    stats = container.stats(stream=False)
    assert stats["id"] == container.id
    assert stats["memory_stats"]["usage"] > 0
    assert stats["pids_stats"]["current"] >= 1
    container.remove(force=True)


def test_images(client: docker.DockerClient, busybox_image: LayoutImage, registry: LocalRegistry) -> None:
    repo = f"{registry.domain}/sdk/bb"
    push_with_skopeo(busybox_image, "sdk/bb:v1", registry)
    image = client.images.pull(repo, tag="v1")
    assert f"{repo}:v1" in image.tags
    assert client.images.get(f"{repo}:v1").id == image.id
    assert image.id in {i.id for i in client.images.list()}
    local = f"sdk-local-{secrets.token_hex(3)}"
    assert image.tag(local, "t1") is True
    assert client.images.get(f"{local}:t1").id == image.id
    assert [i.id for i in client.images.list(name=local)] == [image.id]
    client.images.remove(f"{local}:t1")
    client.images.remove(f"{repo}:v1")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(f"{local}:t1")
    assert client.images.get("busybox:latest").id


def test_events_since_until(client: docker.DockerClient, names: Callable[[], str]) -> None:
    since = time.time() - 1
    name = names()
    client.containers.run("busybox", "true", name=name, remove=True)
    events = list(client.events(since=since, until=time.time() + 0.05, decode=True,
                                filters={"type": "container", "container": name}))
    lifecycle = ("create", "start", "die", "destroy")
    assert [e["Action"] for e in events if e["Action"] in lifecycle] == list(lifecycle)
    assert all(e["Actor"]["Attributes"]["name"] == name for e in events)


def test_errors(client: docker.DockerClient, names: Callable[[], str]) -> None:
    with pytest.raises(docker.errors.NotFound) as missing:
        client.containers.get("sdk-no-such-container")
    assert missing.value.status_code == 404
    with pytest.raises(docker.errors.NotFound):
        client.api.stop("sdk-no-such-container")
    with pytest.raises(docker.errors.APIError) as bad_name:
        client.containers.create("busybox", "true", name="bad name!")
    assert bad_name.value.status_code == 400
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.create("sdk-no-such-image:latest", "true")
    name = names()
    container = run_detached(client, name)
    wait_ready(container)
    with pytest.raises(docker.errors.APIError) as conflict:
        client.containers.create("busybox", "true", name=name)
    assert conflict.value.status_code == 409
    with pytest.raises(docker.errors.APIError) as bad_signal:
        container.kill(signal="SIGNOPE")
    assert bad_signal.value.status_code == 400
    with pytest.raises(docker.errors.APIError) as running:
        container.remove()
    assert running.value.status_code == 409
    container.stop(timeout=5)
    with pytest.raises(docker.errors.APIError) as stopped:
        container.exec_run("true")
    assert stopped.value.status_code == 409
    container.remove()
    with pytest.raises(docker.errors.APIError) as bad_filter:
        client.containers.list(filters={"colour": "blue"})
    assert bad_filter.value.status_code == 400
    for error in (missing.value, bad_name.value, conflict.value, bad_signal.value, running.value, stopped.value,
                  bad_filter.value):
        assert error.explanation and "\n" not in error.explanation.strip(), error.explanation
    assert client.ping() is True
