"""``berth compose convert --kubernetes``: the manifests of a three-service Compose project validate against
the Kubernetes OpenAPI schemas (strict: no unknown fields) that kubernetes-validate ships, and say what the
Compose file says. --apply is not run (no cluster here); its error without a kubeconfig is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from backend.compose.kubernetes import convert, k8s_name
from backend.compose.model import ComposeError, load_project

kubernetes_validate = pytest.importorskip("kubernetes_validate")

COMPOSE = """\
name: shop
services:
  web:
    image: nginx:1.25
    ports: ["8080:80"]
    environment: {BACKEND: "http://api:5000", EMPTY: ""}
    depends_on: [api]
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "0.5", memory: 128M}
        reservations: {memory: 64M}
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"]
      interval: 10s
      timeout: 2s
      retries: 4
  api:
    image: example/api:2
    command: ["serve", "--port", "5000"]
    entrypoint: ["/app/bin"]
    expose: ["5000"]
    environment:
      DB_HOST: db
    volumes:
      - cache:/cache
      - type: tmpfs
        target: /tmp
  db_main:
    image: postgres:16
    environment: {POSTGRES_PASSWORD: example}
    volumes: ["pgdata:/var/lib/postgresql/data"]
    ports: ["5432"]
volumes:
  pgdata: {}
  cache: {}
"""


@pytest.fixture()
def project(tmp_path: Path):
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    return load_project([tmp_path / "compose.yaml"], environment={})


def _by(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_manifests_validate_against_the_schemas(project) -> None:
    objects = convert(project)
    version = kubernetes_validate.latest_version()
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == sorted([
        "PersistentVolumeClaim/shop-pgdata", "PersistentVolumeClaim/shop-cache",
        "ConfigMap/web-env", "Deployment/web", "Service/web",
        "ConfigMap/api-env", "Deployment/api", "Service/api",
        "ConfigMap/db-main-env", "Deployment/db-main", "Service/db-main"])


def test_manifests_carry_the_compose_settings(project) -> None:
    objects = convert(project)
    web = _by(objects, "Deployment", "web")
    assert web["spec"]["replicas"] == 3
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.25"
    assert container["resources"] == {"limits": {"cpu": "500m", "memory": str(128 * 1024 * 1024)},
                                      "requests": {"memory": str(64 * 1024 * 1024)}}
    assert container["livenessProbe"]["exec"]["command"][:2] == ["sh", "-c"]
    assert container["livenessProbe"]["periodSeconds"] == 10 and container["livenessProbe"]["failureThreshold"] == 4
    assert container["envFrom"] == [{"configMapRef": {"name": "web-env"}}]
    assert _by(objects, "ConfigMap", "web-env")["data"] == {"BACKEND": "http://api:5000", "EMPTY": ""}
    assert _by(objects, "Service", "web")["spec"]["ports"] == [
        {"name": "8080-tcp", "port": 8080, "targetPort": 80, "protocol": "TCP"}]
    api = _by(objects, "Deployment", "api")["spec"]["template"]["spec"]
    assert api["containers"][0]["command"] == ["/app/bin"] and api["containers"][0]["args"][0] == "serve"
    assert {v["name"]: v for v in api["volumes"]}["shop-cache"] == {
        "name": "shop-cache", "persistentVolumeClaim": {"claimName": "shop-cache"}}
    assert any(v.get("emptyDir") == {"medium": "Memory"} for v in api["volumes"])
    assert _by(objects, "Service", "api")["spec"]["ports"][0]["port"] == 5000
    db = _by(objects, "Deployment", "db-main")
    assert db["spec"]["selector"]["matchLabels"] == {"io.kompose.service": "db-main"}
    assert db["spec"]["template"]["metadata"]["labels"]["io.kompose.service"] == "db-main"
    assert db["spec"]["strategy"]["type"] == "Recreate"  # a ReadWriteOnce claim cannot be shared by two pods
    assert _by(objects, "PersistentVolumeClaim", "shop-pgdata")["spec"]["resources"]["requests"]["storage"] == "100Mi"


def test_what_kubernetes_cannot_take(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    for text, message in [
        ("services:\n  a:\n    build: .\n", "needs an image"),
        ("services:\n  a:\n    image: x\n    volumes: ['./data:/data']\n", "no Kubernetes equivalent"),
        ("services:\n  a_b:\n    image: x\n  a-b:\n    image: y\n", "same Kubernetes name"),
    ]:
        compose.write_text(text)
        with pytest.raises(ComposeError, match=message):
            convert(load_project([compose], environment={}))
    assert k8s_name("My_Service.1") == "my-service-1"
    with pytest.raises(ComposeError):
        k8s_name("___")


def _berth(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env["HOME"] = str(cwd)
    return subprocess.run([str(Path(sys.executable).parent / "berth"), "compose", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_writes_files_and_stdout(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    out = _berth(tmp_path, "convert", "--kubernetes", "-o", str(tmp_path / "k8s"))
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in (tmp_path / "k8s").iterdir())
    assert "web-deployment.yaml" in files and "shop-pgdata-persistentvolumeclaim.yaml" in files and len(files) == 11
    stream = _berth(tmp_path, "convert", "--kubernetes")
    assert [d["kind"] for d in yaml.safe_load_all(stream.stdout)].count("Deployment") == 3
    applied = _berth(tmp_path, "convert", "--kubernetes", "--apply")
    assert applied.returncode == 1 and "kubeconfig" in applied.stderr and applied.stderr.count("\n") == 1
    plain = _berth(tmp_path, "convert", "--services")
    assert sorted(plain.stdout.split()) == ["api", "db_main", "web"]
    bad = _berth(tmp_path, "convert", "--apply")
    assert bad.returncode == 125 and "go with --kubernetes" in bad.stderr
