"""The Debian services image (tests/fixtures/debian_images.py) in a real berthd, through the docker CLI:
a PostgreSQL server with a named volume and a Redis server on a user network, used from other containers
by their service names; the database outlives its container. A truncated archive is refused cleanly.
dockerd loads the same archive to the same image id and runs the same entry script."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd
from tests.fixtures.debian_images import (
    PGDATA,
    POSTGRES_CMD,
    POSTGRES_HEALTHCHECK,
    REDIS_CMD,
    REDIS_HEALTHCHECK,
    DebianServicesImage,
)
from tests.fixtures.dockerd import LocalDockerd

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(1800)]


@dataclass(frozen=True)
class Services:
    daemon: Berthd
    image: str
    network: str
    volume: str
    db: str
    cache: str
    archive: Path

    def client(self, *command: str) -> str:
        """``command`` in a throwaway container of the image on the services' network; its stdout."""
        return self.daemon.docker("run", "--rm", "--network", self.network, self.image, *command).stdout

    def start_db(self) -> None:
        self.daemon.docker("run", "-d", "--name", self.db, "--network", self.network, "--network-alias", "db",
                           "-v", f"{self.volume}:{PGDATA}", "--health-cmd", POSTGRES_HEALTHCHECK, self.image,
                           *POSTGRES_CMD)


def wait_healthy(daemon: Berthd, container: str, health_cmd: str, timeout: float = 60) -> None:
    """Run the health command in ``container`` until it succeeds; AssertionError with its logs if never."""
    deadline = time.monotonic() + timeout
    while daemon.docker("exec", container, *health_cmd.split(), check=False).returncode != 0:
        if time.monotonic() > deadline:
            logs = daemon.docker("logs", container, check=False)
            raise AssertionError(f"{container} not healthy after {timeout}s: {logs.stdout}{logs.stderr}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def services(berthd_with_busybox: Berthd, debian_services_image: DebianServicesImage) -> Iterator[Services]:
    daemon = berthd_with_busybox
    daemon.docker("load", "-i", str(debian_services_image.tar), timeout=600)
    token = secrets.token_hex(3)
    s = Services(daemon, debian_services_image.name, f"svc-{token}", f"pgdata-{token}", f"db-{token}",
                 f"cache-{token}", debian_services_image.tar)
    daemon.docker("network", "create", s.network)
    try:
        s.start_db()
        daemon.docker("run", "-d", "--name", s.cache, "--network", s.network, "--network-alias", "cache",
                      "--health-cmd", REDIS_HEALTHCHECK, s.image, *REDIS_CMD)
        wait_healthy(daemon, s.db, POSTGRES_HEALTHCHECK)
        wait_healthy(daemon, s.cache, REDIS_HEALTHCHECK)
        yield s
    finally:
        daemon.docker("rm", "-f", s.db, s.cache, check=False)
        daemon.docker("network", "rm", s.network, check=False)
        daemon.docker("volume", "rm", s.volume, check=False)


def test_postgres_answers_by_service_name(services: Services) -> None:
    assert "db:5432 - accepting connections" in services.client("pg_isready", "-h", "db")
    assert services.client("psql", "-h", "db", "-U", "postgres", "-tAc", "select 1").strip() == "1"


def test_redis_answers_by_service_name(services: Services) -> None:
    out = services.client("sh", "-c", "redis-cli -h cache set greeting hello && redis-cli -h cache get greeting")
    assert out.split() == ["OK", "hello"]


def test_database_outlives_its_container_in_the_named_volume(services: Services) -> None:
    psql = ("psql", "-h", "db", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc")
    services.client(*psql, "create table kept (v text); insert into kept values ('still here')")
    services.daemon.docker("rm", "-f", services.db)
    services.start_db()  # the volume holds a cluster now: no initdb this time
    wait_healthy(services.daemon, services.db, POSTGRES_HEALTHCHECK)
    assert services.client(*psql, "select v from kept").strip() == "still here"


def test_truncated_archive_is_refused_in_one_line(services: Services, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.tar"
    with open(services.archive, "rb") as f:
        truncated.write_bytes(f.read(1 << 20))
    result = services.daemon.docker("load", "-i", str(truncated), check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert services.daemon.docker("version", "--format", "{{.Server.Version}}").stdout.strip()


def test_dockerd_loads_the_same_image_and_runs_postgres(services: Services, dockerd: LocalDockerd) -> None:
    image = services.image
    dockerd.docker("load", "-i", str(services.archive), timeout=600, check=True)
    try:
        ids = {d.docker("image", "inspect", "--format", "{{.Id}}", image, check=True).stdout.strip()
               for d in (dockerd, services.daemon)}
        assert len(ids) == 1
        script = ("run-postgres >/dev/null 2>&1 & for i in $(seq 100); do pg_isready -qh 127.0.0.1 && break; sleep 0.2;"
                  " done; psql -h 127.0.0.1 -U postgres -tAc 'select 41 + 1'")
        out = dockerd.docker("run", "--rm", "--network", "none", image, "sh", "-c", script, check=True).stdout
        assert out.strip() == "42"
    finally:
        dockerd.docker("rmi", image)
