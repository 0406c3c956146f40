"""Restart policies through the docker CLI against a real berthd: Docker's behaviour while the daemon
runs, and across a daemon stopped gracefully or killed (Berth restores containers live, as dockerd does
with ``--live-restore``)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.berthd import Berthd
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]

POLICIES = {"no": "no", "always": "always", "onfail": "on-failure:2", "unless": "unless-stopped"}


@pytest.fixture
def daemon(busybox_image: LayoutImage, registry: LocalRegistry) -> Iterator[Berthd]:
    d = Berthd()
    try:
        d.start()
        push_with_skopeo(busybox_image, "restart/busybox:latest", registry)
        d.docker("pull", "-q", f"{registry.domain}/restart/busybox:latest")
        d.docker("tag", f"{registry.domain}/restart/busybox:latest", "busybox")
        yield d
    finally:
        d.cleanup()


def _state(d: Berthd, name: str) -> tuple[str, int, int]:
    out = d.docker("inspect", "--format", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}", name).stdout
    status, count, code = out.split()
    return status, int(count), int(code)


def _until(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_policies_while_the_daemon_runs(daemon: Berthd) -> None:
    for name, policy in POLICIES.items():
        daemon.docker("run", "-d", "--name", f"run-{name}", "--restart", policy, "busybox", "sh", "-c", "exit 3")
    _until(lambda: _state(daemon, "run-onfail")[:2] == ("exited", 2))
    _until(lambda: _state(daemon, "run-always")[1] >= 3 and _state(daemon, "run-unless")[1] >= 3)
    assert _state(daemon, "run-no") == ("exited", 0, 3)
    assert _state(daemon, "run-onfail") == ("exited", 2, 3)
    # Backoff: 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s... so after a couple of seconds far fewer than 100 restarts.
    assert _state(daemon, "run-always")[1] < 15
    ps = daemon.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert "run-no" not in ps and "run-onfail" not in ps
    # A user's stop ends the cycle for every policy, also while a restart is pending.
    for name in ("always", "unless"):
        daemon.docker("stop", "-t", "1", f"run-{name}")
        assert _state(daemon, f"run-{name}")[0] == "exited"
    time.sleep(1)
    assert _state(daemon, "run-always")[0] == "exited"
    # docker kill is not a stop by the user: the policy applies.
    daemon.docker("run", "-d", "--name", "run-killed", "--restart", "always", "busybox", "sleep", "1000")
    daemon.docker("kill", "run-killed")
    _until(lambda: _state(daemon, "run-killed")[:2] == ("running", 1))
    daemon.docker("rm", "-f", *(f"run-{n}" for n in [*POLICIES, "killed"]))
    assert daemon.docker("ps", "-aq").stdout == ""


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["graceful", "killed"])
def test_policies_across_a_daemon_restart(daemon: Berthd, how: signal.Signals) -> None:
    # First run: exit 3 after a second; every later run sleeps. The first exit happens while berthd is down.
    script = "if [ -f /ran ]; then exec sleep 1000; fi; touch /ran; sleep 1; exit 3"
    for name, policy in POLICIES.items():
        daemon.docker("run", "-d", "--name", f"x-{name}", "--restart", policy, "busybox", "sh", "-c", script)
    for name in ("always", "unless"):  # stopped by the user before the daemon goes down
        daemon.docker("run", "-d", "--name", f"stopped-{name}", "--restart", POLICIES[name], "busybox",
                      "sleep", "1000")
        daemon.docker("stop", "-t", "0", f"stopped-{name}")
    daemon.docker("run", "-d", "--name", "steady", "--restart", "always", "busybox", "sleep", "1000")
    steady_pid = daemon.docker("inspect", "--format", "{{.State.Pid}}", "steady").stdout.strip()

    daemon.stop(how)
    time.sleep(2.5)
    daemon.start()

    # (On a loaded machine a first run may still be going when the daemon is back: the state is the same.)
    _until(lambda: all(_state(daemon, f"x-{n}")[:2] == ("running", 1) for n in ("always", "onfail", "unless")))
    _until(lambda: _state(daemon, "x-no")[0] == "exited")
    assert _state(daemon, "x-no") == ("exited", 0, 3)
    _until(lambda: _state(daemon, "stopped-always")[0] == "running")  # always: started at daemon start
    assert _state(daemon, "stopped-unless")[0] == "exited"  # unless-stopped: the user's stop holds
    assert daemon.docker("inspect", "--format", "{{.State.Running}} {{.State.Pid}}", "steady").stdout.split() == [
        "true", steady_pid]  # running containers were never touched
    names = [f"x-{n}" for n in POLICIES] + ["stopped-always", "stopped-unless", "steady"]
    daemon.docker("rm", "-f", *names)
