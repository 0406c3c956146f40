"""Issue 7's acceptance: a three-service project as every Docker course shows it — ``web`` built from a local
Dockerfile, ``db`` a real PostgreSQL and ``cache`` a real Redis (both from Debian's packages, the cached
``debian_services_image`` fixture) — through ``berth compose``, against berthd and against the real dockerd."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd
from tests.fixtures.debian_images import POSTGRES_HEALTHCHECK, DebianServicesImage
from tests.fixtures.dockerd import LocalDockerd, entered_netns

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.slow]

APP = """\
import http.server, subprocess

def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        db = run("psql", "-h", "db", "-U", "postgres", "-tAc", "select v from t")
        cache = run("redis-cli", "-h", "cache", "get", "k")
        body = f"db={db} cache={cache}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
"""

COMPOSE = """\
services:
  web:
    build: ./web
    ports: ["8000"]
    depends_on:
      db: {{condition: service_healthy}}
      cache: {{condition: service_started}}
  db:
    image: {image}
    command: ["run-postgres"]
    volumes: ["pgdata:/var/lib/postgresql/data"]
    healthcheck:
      test: ["CMD-SHELL", "{health}"]
      interval: 1s
      timeout: 5s
      retries: 60
  cache:
    image: {image}
    command: ["run-redis"]
volumes:
  pgdata: {{}}
"""


def _project(tmp: Path, image: str) -> Path:
    (tmp / "web").mkdir(parents=True)
    (tmp / "web" / "app.py").write_text(APP)
    (tmp / "web" / "Dockerfile").write_text(f'FROM {image}\nCOPY app.py /app.py\nCMD ["python3", "/app.py"]\n')
    (tmp / "compose.yaml").write_text(COMPOSE.format(image=image, health=POSTGRES_HEALTHCHECK))
    return tmp / "compose.yaml"


def _get(url: str, deadline: float = 30) -> str:
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _walk(berth: Callable[..., str], get: Callable[[str], str]) -> None:
    """The scenario, for any engine: ``berth`` runs ``berth compose ...`` (returns stdout), ``get`` fetches
    a URL from where the engine publishes its ports."""
    berth("up", "-d", "--build")
    berth("exec", "-T", "db", "psql", "-U", "postgres", "-c", "create table t (v text); "
          "insert into t values ('from-postgres')")
    berth("exec", "-T", "cache", "redis-cli", "set", "k", "from-redis")
    port = berth("port", "web", "8000").strip().rpartition(":")[2]
    assert get(f"http://127.0.0.1:{port}/") == "db=from-postgres cache=from-redis\n"
    berth("up", "-d", "--scale", "web=3")
    assert len(berth("ps", "-q", "web").split()) == 3
    berth("down")
    berth("up", "-d")  # the database's volume kept its data
    berth("exec", "-T", "cache", "redis-cli", "set", "k", "again")
    port = berth("port", "web", "8000").strip().rpartition(":")[2]
    assert get(f"http://127.0.0.1:{port}/") == "db=from-postgres cache=again\n"
    berth("down", "-v")


def test_three_services_on_berthd(berthd_with_busybox: Berthd, debian_services_image: DebianServicesImage,
                                  tmp_path: Path) -> None:
    d = berthd_with_busybox
    d.docker("load", "-i", str(debian_services_image.tar))
    compose = _project(tmp_path, debian_services_image.name)

    def berth(*args: str) -> str:
        return d.berth("compose", "-f", str(compose), "-p", "shop", *args, timeout=300).stdout

    _walk(berth, _get)
    assert d.docker("ps", "-aq", "--filter", "label=com.docker.compose.project=shop").stdout == ""
    assert not [n for n in d.docker("network", "ls", "--format", "{{.Name}}").stdout.split() if n.startswith("shop")]
    assert "shop_pgdata" not in d.docker("volume", "ls", "-q").stdout


def test_three_services_on_dockerd(debian_services_image: DebianServicesImage, berthd_with_busybox: Berthd,
                                   tmp_path: Path) -> None:
    """The same file through berth compose against the real dockerd: Compose is a pure API client."""
    with LocalDockerd(bridged=True) as dockerd:
        dockerd.docker("load", "-i", str(debian_services_image.tar))
        compose = _project(tmp_path, debian_services_image.name)

        def berth(*args: str) -> str:
            return berthd_with_busybox.berth("-H", dockerd.host, "compose", "-f", str(compose), "-p", "shop",
                                             *args, timeout=300).stdout

        def get(url: str) -> str:
            with entered_netns(dockerd.netns):  # dockerd publishes inside its own network namespace
                return _get(url)

        _walk(berth, get)
