"""Health checks against berthd through the docker CLI and the berth CLI: healthy after a passing probe,
unhealthy after the retries with the probe's output in the log, the start period, ``ps`` and ``inspect``,
``ps --filter health=``, the ``health_status`` events, a hanging probe killed at its timeout, no probes
while paused, health kept across a berthd restart, an image's HEALTHCHECK (merged with flags, or turned
off by ``--no-healthcheck``), and bad values answered with Docker's one-line errors."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]

FAST = ("--health-interval", "200ms")


@pytest.fixture
def name(berthd_with_busybox: Berthd) -> Iterator[str]:
    """A unique container name; the container is removed afterwards."""
    made = f"health-{secrets.token_hex(4)}"
    yield made
    berthd_with_busybox.docker("rm", "-f", made, check=False)


def _health(d: Berthd, container: str) -> Any:
    return json.loads(d.docker("inspect", "-f", "{{json .State.Health}}", container).stdout)


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _wait_status(d: Berthd, container: str, status: str, timeout: float = 10.0) -> Any:
    _until(lambda: (_health(d, container) or {}).get("Status") == status, timeout)
    return _health(d, container)


def _ps_status(d: Berthd, container: str) -> str:
    return d.docker("ps", "-a", "--filter", f"name={container}", "--format", "{{.Status}}").stdout.strip()


def test_healthy_with_ps_filter_and_events(berthd_with_busybox: Berthd, name: str) -> None:
    d = berthd_with_busybox
    since = str(int(time.time()) - 1)
    d.docker("run", "-d", "--name", name, "--health-cmd", "echo fine", *FAST, "busybox", "sleep", "60")
    health = _wait_status(d, name, "healthy")
    assert health["FailingStreak"] == 0
    assert health["Log"][-1]["ExitCode"] == 0 and health["Log"][-1]["Output"] == "fine\n"
    assert _ps_status(d, name).endswith("(healthy)")
    assert name in d.docker("ps", "--filter", "health=healthy", "--format", "{{.Names}}").stdout.split()
    assert name not in d.docker("ps", "--filter", "health=none", "--format", "{{.Names}}").stdout.split()
    events = d.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                      f"container={name}", "--format", "{{.Action}}").stdout.splitlines()
    assert "health_status: healthy" in events


def test_unhealthy_after_retries_with_the_log(berthd_with_busybox: Berthd, name: str) -> None:
    d = berthd_with_busybox
    d.berth("run", "-d", "--name", name, "--health-cmd", "echo boom >&2; exit 3", *FAST, "--health-retries", "2",
            "busybox", "sleep", "60")
    health = _wait_status(d, name, "unhealthy")
    assert health["FailingStreak"] >= 2
    assert health["Log"][-1]["ExitCode"] == 3 and health["Log"][-1]["Output"] == "boom\n"
    _until(lambda: _health(d, name)["FailingStreak"] >= 7)
    assert len(_health(d, name)["Log"]) == 5
    assert "(unhealthy)" in d.berth("ps", "--filter", f"name={name}").stdout
    assert name in d.berth("ps", "--filter", "health=unhealthy", "--format", "{{.Names}}").stdout.split()


def test_start_period_then_success_then_failure(berthd_with_busybox: Berthd, name: str) -> None:
    d = berthd_with_busybox
    d.docker("run", "-d", "--name", name, "--health-cmd", "test -e /ok", *FAST, "--health-retries", "1",
             "--health-start-period", "60s", "busybox", "sleep", "60")
    _until(lambda: len((_health(d, name) or {}).get("Log") or []) >= 3)
    health = _health(d, name)
    assert health["Status"] == "starting" and health["FailingStreak"] == 0
    assert _ps_status(d, name).endswith("(health: starting)")
    assert name in d.docker("ps", "--filter", "health=starting", "--format", "{{.Names}}").stdout.split()
    d.docker("exec", name, "sh", "-c", ": > /ok")
    _wait_status(d, name, "healthy")
    d.docker("exec", name, "busybox", "rm", "/ok")  # a success ended the start period: the next failure counts
    assert _wait_status(d, name, "unhealthy")["FailingStreak"] == 1


def test_a_hanging_probe_is_killed_at_its_timeout(berthd_with_busybox: Berthd, name: str) -> None:
    d = berthd_with_busybox
    d.docker("run", "-d", "--name", name, "--health-cmd", "sleep 1000; echo late", *FAST, "--health-timeout", "300ms",
             "--health-retries", "2", "busybox", "sleep", "60")
    health = _wait_status(d, name, "unhealthy")
    last = health["Log"][-1]
    assert last["ExitCode"] == -1 and last["Output"] == "Health check exceeded timeout (300ms)"
    top = d.docker("top", name).stdout
    assert top.count("sleep 1000") <= 1  # killed with its shell; at most the one under way is left


def test_paused_containers_are_not_probed(berthd_with_busybox: Berthd, name: str) -> None:
    d = berthd_with_busybox
    d.docker("run", "-d", "--name", name, "--health-cmd", "true", *FAST, "busybox", "sleep", "60")
    _wait_status(d, name, "healthy")
    d.docker("pause", name)
    time.sleep(0.5)  # a probe under way at pause time is dropped
    last = _health(d, name)["Log"][-1]["End"]
    time.sleep(1)
    health = _health(d, name)
    assert health["Log"][-1]["End"] == last
    assert health["Status"] == "unhealthy"  # as dockerd reports a paused container's health
    d.docker("unpause", name)
    _wait_status(d, name, "healthy")


def test_health_survives_a_berthd_restart(berthd_with_busybox: Berthd, name: str) -> None:
    d = berthd_with_busybox
    d.docker("run", "-d", "--name", name, "--health-cmd", "true", *FAST, "busybox", "sleep", "60")
    before = _wait_status(d, name, "healthy")
    d.stop()
    d.start()
    after = _health(d, name)
    assert after["Status"] == "healthy" and after["Log"][0] in before["Log"]
    _until(lambda: _health(d, name)["Log"][-1]["End"] > before["Log"][-1]["End"])  # probed again
    d.docker("restart", "-t", "0", name)
    assert _health(d, name)["Status"] in ("starting", "healthy")
    d.docker("stop", "-t", "0", name)
    stopped = _health(d, name)
    assert stopped["Status"] == "unhealthy"  # as dockerd reports a stopped container's health
    time.sleep(0.5)
    assert _health(d, name)["Log"] == stopped["Log"]


def test_image_healthcheck_merged_or_disabled(berthd_with_busybox: Berthd, name: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    d = berthd_with_busybox
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    image = f"health-img-{secrets.token_hex(4)}"
    dockerfile = 'FROM busybox\nHEALTHCHECK --interval=1h --retries=1 CMD ["sh", "-c", "echo from-image"]\n'
    d.docker("build", "-q", "-t", image, "-", input=dockerfile, timeout=120)
    try:
        d.docker("run", "-d", "--name", name, *FAST, image, "sleep", "60")  # the image's Test, our interval
        assert _wait_status(d, name, "healthy")["Log"][-1]["Output"] == "from-image\n"
        d.docker("rm", "-f", name)
        d.docker("run", "-d", "--name", name, "--no-healthcheck", image, "sleep", "60")
        assert _health(d, name) is None
        assert _ps_status(d, name).startswith("Up") and "health" not in _ps_status(d, name)
        assert name in d.docker("ps", "--filter", "health=none", "--format", "{{.Names}}").stdout.split()
    finally:
        d.docker("rm", "-f", name, check=False)
        d.docker("rmi", image, check=False)


@pytest.mark.parametrize(("healthcheck", "message"), [
    ({"Test": ["CMD", "true"], "Interval": 500_000}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Timeout": -5}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "StartPeriod": 1}, "StartPeriod in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "true"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ({"Test": ["PING", "x"]}, "Healthcheck.Test: expected"),
    ({"Test": ["NONE", "x"]}, "Healthcheck.Test: expected"),
    ({"Test": ["CMD", "true"], "Interval": "1s"}, "Healthcheck.Interval: expected int"),
])
def test_bad_healthcheck_in_the_body(berthd_with_busybox: Berthd, healthcheck: dict[str, Any],
                                     message: str) -> None:
    transport = httpx.HTTPTransport(uds=str(berthd_with_busybox.socket))
    with httpx.Client(transport=transport, base_url="http://berth") as client:
        answer = client.post("/v1.41/containers/create",
                             json={"Image": "busybox", "Cmd": ["true"], "Healthcheck": healthcheck})
    assert answer.status_code == 400
    assert answer.json()["message"].startswith(message)


def test_bad_values_on_the_command_lines(berthd_with_busybox: Berthd, name: str) -> None:
    d = berthd_with_busybox
    cases: list[tuple[list[str], str]] = [
        (["--health-interval", "500us"], "Interval in Healthcheck cannot be less than 1ms"),
        (["--health-cmd", "true", "--no-healthcheck"], "--no-healthcheck conflicts with --health-* options"),
        (["--health-retries", "-1"], "--health-retries cannot be negative"),
        (["--health-timeout=-1s"], "--health-timeout cannot be negative"),
    ]
    for flags, message in cases:
        for cli in (d.docker, d.berth):
            result = cli("run", "-d", "--name", name, *flags, "busybox", "true", check=False)
            assert result.returncode != 0 and message in result.stderr, (flags, result.stderr)
            assert "Traceback" not in result.stderr
    result = d.berth("run", "-d", "--health-interval", "soon", "busybox", "true", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().endswith('invalid argument "soon" for "--health-interval" flag: '
                                          'time: invalid duration "soon"')
    for cli in (d.docker, d.berth):
        result = cli("ps", "--filter", "health=sick", check=False)
        assert result.returncode != 0 and "Unrecognised filter value for health: sick" in result.stderr
    assert d.docker("version").returncode == 0
