"""``berth context`` against two dockerd engines reached over SSH (tests/fixtures/remote_engines.py): contexts
created for both, busybox loaded through each from a local archive, containers run on each, and the failures a
user meets (unknown or changed host key, refused key, no socket) as one clear line."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time

import pytest

from tests.fixtures.remote_engines import RemoteEngines

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def contexts(remote_engines: RemoteEngines) -> RemoteEngines:
    """Contexts ``e1`` and ``e2`` (ssh://root@10.231.n.2) with busybox:latest loaded through each."""
    for engine in remote_engines.engines:
        if engine.name not in remote_engines.berth("context", "ls", "-q").stdout.split():
            remote_engines.berth("context", "create", engine.name, "--host", engine.url,
                                 "--description", f"dockerd {engine.name} over SSH")
        loaded = remote_engines.berth("--context", engine.name, "load", "-i", str(remote_engines.archive))
        assert "busybox:latest" in loaded.stdout
    return remote_engines


def test_run_on_each_engine(contexts: RemoteEngines) -> None:
    listed = contexts.berth("context", "ls").stdout
    assert "ssh://root@10.231.1.2" in listed and "ssh://root@10.231.2.2" in listed
    for engine in contexts.engines:
        name = f"ctx-{secrets.token_hex(3)}"
        out = contexts.berth("--context", engine.name, "run", "--rm", "--name", name, "busybox", "echo", "hi")
        assert out.stdout == "hi\n"
        # the container ran on that engine's dockerd: its name is in that daemon's events
        events = engine.dockerd.docker("events", "--since", "5m", "--until", str(int(time.time()) + 1),
                                       "--filter", f"container={name}", "--format", "{{.Action}}",
                                       check=True).stdout.split()
        assert "start" in events and "destroy" in events
        info = contexts.berth("--context", engine.name, "info", "--format", "{{.Name}}").stdout.strip()
        assert info  # dockerd's /info through the tunnel


def test_current_context_and_variables(contexts: RemoteEngines) -> None:
    contexts.berth("context", "use", "e2")
    try:
        assert contexts.berth("context", "show").stdout == "e2\n"
        name = f"cur-{secrets.token_hex(3)}"
        contexts.berth("run", "-d", "--name", name, "busybox", "sleep", "30")
        try:
            assert name in contexts.engines[1].dockerd.docker("ps", "--format", "{{.Names}}").stdout
            assert name not in contexts.engines[0].dockerd.docker("ps", "--format", "{{.Names}}").stdout
            # logs and exec (a hijacked connection) over the same tunnel
            out = contexts.berth("exec", name, "sh", "-c", "echo from-exec")
            assert out.stdout == "from-exec\n"
        finally:
            contexts.berth("rm", "-f", name)
    finally:
        contexts.berth("context", "use", "default")


def test_the_docker_cli_sees_berths_contexts(contexts: RemoteEngines) -> None:
    docker = shutil.which("docker")
    assert docker
    out = subprocess.run([docker, "context", "ls", "--format", "{{.Name}} {{.DockerEndpoint}}"], env=contexts.env,
                         capture_output=True, text=True, check=True).stdout
    assert "e1 ssh://root@10.231.1.2" in out


def test_host_key_and_auth_failures_are_one_line(contexts: RemoteEngines) -> None:
    known = contexts.home / ".ssh" / "known_hosts"
    saved = known.read_text()
    try:
        known.write_text("\n".join(line for line in saved.splitlines() if not line.startswith("10.231.1.2 ")))
        unknown = contexts.berth("--context", "e1", "ps", check=False)
        assert unknown.returncode == 1
        assert "host key of 10.231.1.2 is unknown" in unknown.stderr and unknown.stderr.count("\n") == 1
        other_key = saved.split("\n")[1].split()  # e2's key, presented as if it were e1's
        known.write_text(f"10.231.1.2 {other_key[1]} {other_key[2]}\n")
        changed = contexts.berth("--context", "e1", "ps", check=False)
        assert changed.returncode == 1
        assert "host key of 10.231.1.2 changed" in changed.stderr and "refusing" in changed.stderr
    finally:
        known.write_text(saved)
    key = contexts.home / ".ssh" / "id_ed25519"
    key.rename(key.with_suffix(".away"))
    try:
        refused = contexts.berth("--context", "e1", "ps", check=False)
        assert refused.returncode == 1 and "authentication as root failed" in refused.stderr
    finally:
        key.with_suffix(".away").rename(key)
    contexts.berth("context", "create", "nosock", "--host", "ssh://root@10.231.1.2/run/none.sock")
    try:
        nosock = contexts.berth("--context", "nosock", "ps", check=False)
        assert nosock.returncode == 1 and "refused a channel" in nosock.stderr and "/run/none.sock" in nosock.stderr
    finally:
        contexts.berth("context", "rm", "nosock")
    assert contexts.berth("--context", "e1", "ps", "-q").returncode == 0
