"""``DOCKER_BUILDKIT=0 docker build`` against berthd: an app-shaped Dockerfile builds, a second build hits the
cache on every step, a changed source file rebuilds from its COPY on; multi-stage builds, ``.dockerignore``,
``docker history``, build args, ``--target``, ``COPY --chown/--chmod``, ``--from``, ADD of a local tar; and
hostile builds that fail with one clear line and leave the host untouched while the daemon stays up."""

from __future__ import annotations

import gzip
import io
import json
import re
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]

APP_DOCKERFILE = """\
FROM busybox
WORKDIR /app
COPY requirements.txt .
RUN while read pkg; do echo "installed $pkg" >> /app/installed; done < requirements.txt
COPY src/ ./src/
ENV MODE=production PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=5s CMD test -f /app/installed
CMD ["sh", "-c", "cat /app/installed /app/src/main.txt"]
"""


@pytest.fixture
def tag(berthd_with_busybox: Berthd) -> Iterator[str]:
    """A unique image name; images with it are removed afterwards."""
    name = f"built-{secrets.token_hex(4)}"
    yield name
    for suffix in ("latest", "v2", "target"):
        berthd_with_busybox.docker("rmi", "-f", f"{name}:{suffix}", check=False)


def build(d: Berthd, context: Path, *args: str, check: bool = True) -> tuple[int, str]:
    """``docker build`` with the classic builder: (exit code, stdout + stderr)."""
    env_args = ["build", *args, str(context)]
    result = d.docker(*env_args, check=False, timeout=120)
    output = result.stdout + result.stderr
    assert not check or result.returncode == 0, output
    return result.returncode, output


@pytest.fixture(autouse=True)
def classic_builder(berthd_with_busybox: Berthd, monkeypatch: pytest.MonkeyPatch) -> None:
    berthd_with_busybox.env["DOCKER_BUILDKIT"] = "0"


def app_context(path: Path) -> Path:
    (path / "src").mkdir(parents=True)
    (path / "Dockerfile").write_text(APP_DOCKERFILE)
    (path / "requirements.txt").write_text("flask\nrequests\n")
    (path / "src" / "main.txt").write_text("main v1\n")
    (path / "src" / "util.txt").write_text("util\n")
    return path


def test_app_builds_caches_and_rebuilds_from_changed_copy(berthd_with_busybox: Berthd, tag: str,
                                                         tmp_path: Path) -> None:
    d = berthd_with_busybox
    context = app_context(tmp_path)
    _, first = build(d, context, "-t", tag)
    assert "Step 1/9 : FROM busybox" in first and "Successfully tagged " + tag + ":latest" in first
    assert "Using cache" not in first
    run = d.docker("run", "--rm", tag).stdout
    assert run == "installed flask\ninstalled requests\nmain v1\n"

    doc = json.loads(d.docker("image", "inspect", tag).stdout)[0]
    config = doc["Config"]
    assert "MODE=production" in config["Env"] and "PORT=8080" in config["Env"]
    assert config["ExposedPorts"] == {"8080/tcp": {}} and config["WorkingDir"] == "/app"
    assert config["Healthcheck"]["Test"] == ["CMD-SHELL", "test -f /app/installed"]
    assert config["Healthcheck"]["Interval"] == 5_000_000_000
    assert config["Cmd"] == ["sh", "-c", "cat /app/installed /app/src/main.txt"]

    _, second = build(d, context, "-t", tag)
    assert second.count(" ---> Using cache") == 8, second
    assert json.loads(d.docker("image", "inspect", tag).stdout)[0]["Id"] == doc["Id"]

    (context / "src" / "main.txt").write_text("main v2\n")
    _, third = build(d, context, "-t", tag)
    assert third.count(" ---> Using cache") == 3, third  # WORKDIR, COPY manifest, RUN install stay cached
    steps = third.split("Step ")
    assert "Using cache" in steps[4] and "Using cache" not in steps[5]  # RUN cached, COPY src/ rebuilt
    assert d.docker("run", "--rm", tag).stdout.endswith("main v2\n")

    history = d.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
    assert "COPY file:" in history and "COPY dir:" in history and "#(nop)  EXPOSE 8080" in history
    assert "WORKDIR /app" in history and "while read pkg" in history
