"""``POST /auth``: `docker login` and `berth login` check credentials through berthd against a real
registry with basic auth (127.0.0.1 only); the clients store them, the engine keeps nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.mark.parametrize("client", ["docker", "berth"])
def test_login_checks_credentials_and_the_client_keeps_them(berthd_with_busybox: Berthd,
                                                            auth_registry: LocalRegistry, client: str) -> None:
    d = berthd_with_busybox
    run = d.docker if client == "docker" else d.berth
    config = Path(d.env["DOCKER_CONFIG"]) / "config.json"
    bad = run("login", "-u", "berth", "--password-stdin", auth_registry.domain, input="wrong\n", check=False)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    good = run("login", "-u", "berth", "--password-stdin", auth_registry.domain, input="s3cret\n")
    assert "Login Succeeded" in good.stdout
    assert auth_registry.domain in json.loads(config.read_text())["auths"]
    target = f"{auth_registry.domain}/login/{client}:v1"
    d.docker("tag", "busybox", target)
    run("push", target)  # the stored credentials reach the registry
    run("logout", auth_registry.domain)
    d.docker("rmi", target)
    assert d.docker("version").returncode == 0
