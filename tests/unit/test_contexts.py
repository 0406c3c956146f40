"""Contexts (backend.api.contexts): Docker's store format both ways, the resolution order, TLS material, ssh://
addresses, and the ``berth context`` verbs' one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend.api.contexts import ContextError, ContextStore, resolve
from backend.api.host import DEFAULT_HOST, HostError, find_host, parse_host


def _docker_context(config: Path, name: str, host: str) -> None:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": {
        "Host": host, "SkipTLSVerify": False}}}))


def test_store_roundtrip_and_docker_format(tmp_path: Path) -> None:
    store = ContextStore(tmp_path / "berth")
    created = store.create("remote", "ssh://me@example.test:2222", description="over ssh")
    meta = tmp_path / "berth" / "contexts" / "meta" / hashlib.sha256(b"remote").hexdigest() / "meta.json"
    doc = json.loads(meta.read_text())
    assert doc["Endpoints"]["docker"]["Host"] == "ssh://me@example.test:2222"
    assert doc["Metadata"] == {"Description": "over ssh"}
    assert created.host == "ssh://me@example.test:2222" and created.tls is None
    assert [c.name for c in store.contexts()] == ["default", "remote"]
    assert store.current() == "default"
    store.use("remote")
    assert json.loads((tmp_path / "berth" / "config.json").read_text())["currentContext"] == "remote"
    with pytest.raises(ContextError, match="in use"):
        store.remove("remote")
    store.remove("remote", force=True)
    assert store.current() == "default" and [c.name for c in store.contexts()] == ["default"]


def test_docker_contexts_are_read_and_berths_win(tmp_path: Path) -> None:
    docker_dir, berth_dir = tmp_path / "docker", tmp_path / "berth"
    _docker_context(docker_dir, "theirs", "tcp://127.0.0.1:2375")
    _docker_context(docker_dir, "both", "unix:///docker.sock")
    store = ContextStore(berth_dir, docker_dir)
    store.create("both", "unix:///berth.sock")
    assert {c.name: c.host for c in store.contexts()} == {
        "default": DEFAULT_HOST, "both": "unix:///berth.sock", "theirs": "tcp://127.0.0.1:2375"}
    with pytest.raises(ContextError, match="belongs to"):
        store.remove("theirs")
    (docker_dir / "contexts" / "meta" / "garbage").mkdir()
    (docker_dir / "contexts" / "meta" / "garbage" / "meta.json").write_text("{broken")
    assert len(store.contexts()) == 3


def test_create_refuses_bad_input(tmp_path: Path) -> None:
    store = ContextStore(tmp_path)
    for name in ("default", "bad name", "-x", ""):
        with pytest.raises(ContextError, match="invalid"):
            store.create(name, "unix:///x.sock")
    with pytest.raises(HostError):
        store.create("x", "ftp://nowhere")
    store.create("x", "unix:///x.sock")
    with pytest.raises(ContextError, match="already exists"):
        store.create("x", "unix:///y.sock")
    with pytest.raises(ContextError, match="go together"):
        store.create("y", "tcp://127.0.0.1:2376", cert=tmp_path / "cert.pem")
    with pytest.raises(ContextError, match="does not exist"):
        store.get("nope")


def test_tls_material_is_copied_and_loaded(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=berth-test", "-days", "1"],
                   check=True, capture_output=True)
    store = ContextStore(tmp_path / "cfg")
    context = store.create("tls", "tcp://127.0.0.1:2376", ca=cert, cert=cert, key=key)
    assert context.tls is not None and context.tls.verify
    assert context.tls.key is not None and oct(context.tls.key.stat().st_mode & 0o777) == "0o600"
    assert context.inspect()["TLSMaterial"] == {"docker": ["ca.pem", "cert.pem", "key.pem"]}
    endpoint = resolve(None, "tls", {}, tmp_path, tmp_path / "cfg")
    assert endpoint.ssl_context() is not None
    insecure = store.create("insecure", "tcp://127.0.0.1:2376", cert=cert, key=key, skip_verify=True)
    assert insecure.tls is not None and not insecure.tls.verify
    key.write_text("not a key")
    store.create("broken", "tcp://127.0.0.1:2376", cert=cert, key=key)
    with pytest.raises(ContextError, match="TLS files"):
        resolve(None, "broken", {}, tmp_path, tmp_path / "cfg").ssl_context()


def test_resolution_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = home / ".docker"
    _docker_context(config, "desk", "unix:///desk.sock")
    _docker_context(config, "other", "unix:///other.sock")
    (config / "config.json").write_text(json.dumps({"currentContext": "desk"}))
    assert resolve(None, None, {}, home).host == "unix:///desk.sock"
    assert resolve(None, None, {"DOCKER_CONTEXT": "other"}, home).context == "other"
    assert resolve(None, None, {"DOCKER_CONTEXT": "desk", "BERTH_CONTEXT": "other"}, home).context == "other"
    assert resolve(None, None, {"DOCKER_HOST": "unix:///env.sock", "DOCKER_CONTEXT": "other"}, home
                   ).host == "unix:///env.sock"
    assert resolve(None, "other", {"BERTH_HOST": "unix:///b.sock"}, home).host == "unix:///other.sock"
    assert resolve("unix:///flag.sock", None, {"BERTH_CONTEXT": "other"}, home).host == "unix:///flag.sock"
    with pytest.raises(ContextError, match="conflicting"):
        resolve("unix:///flag.sock", "other", {}, home)
    with pytest.raises(ContextError, match="does not exist"):
        resolve(None, None, {"DOCKER_CONTEXT": "gone"}, home)
    (config / "config.json").write_text(json.dumps({"currentContext": "gone"}))
    assert find_host(None, {}, home) == DEFAULT_HOST  # a stale current context falls back, as before
    berth_dir = tmp_path / "berth"
    ContextStore(berth_dir).create("mine", "unix:///mine.sock")
    ContextStore(berth_dir).use("mine")
    assert resolve(None, None, {"BERTH_CONFIG": str(berth_dir)}, home).host == "unix:///mine.sock"


def test_ssh_addresses() -> None:
    address = parse_host("ssh://deploy@10.231.0.2:2222")
    assert (address.scheme, address.user, address.host, address.port, address.path) == (
        "ssh", "deploy", "10.231.0.2", 2222, "")
    assert parse_host("ssh://h/run/berth/berth.sock").path == "/run/berth/berth.sock"
    assert parse_host("ssh://[::1]").port == 22
    assert parse_host("ssh://h").user  # the local user's name
    for bad in ("ssh://", "ssh://@h", "ssh://h:0", "ssh://h:x", "ssh://u@"):
        with pytest.raises(HostError):
            parse_host(bad)


def _berth(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "BERTH_"))}
    env["HOME"] = str(tmp_path)
    return subprocess.run([str(Path(sys.executable).parent / "berth"), *args], capture_output=True, text=True,
                          env=env, timeout=60, cwd=Path(__file__).resolve().parents[2])


def test_cli_verbs_and_errors(tmp_path: Path) -> None:
    ok = _berth(tmp_path, "context", "create", "far", "--host", "ssh://u@127.0.0.1:1", "--description", "far")
    assert ok.returncode == 0 and ok.stdout == "far\n", ok.stderr
    assert _berth(tmp_path, "context", "use", "far").returncode == 0
    listed = _berth(tmp_path, "context", "ls").stdout.splitlines()
    assert listed[0].split() == ["NAME", "DESCRIPTION", "DOCKER", "ENDPOINT"]
    assert listed[2].split()[:2] == ["far", "*"]
    assert _berth(tmp_path, "context", "show").stdout == "far\n"
    assert _berth(tmp_path, "--context", "default", "context", "show").stdout == "default\n"
    docs = json.loads(_berth(tmp_path, "context", "inspect", "far").stdout)
    assert docs[0]["Endpoints"]["docker"]["Host"] == "ssh://u@127.0.0.1:1"
    assert _berth(tmp_path, "context", "create", "tcpd", "--docker", "host=tcp://127.0.0.1:9").returncode == 0
    for args, message in [
        (("context", "create", "x"), "--host (or --docker host=...) is required"),
        (("context", "create", "x", "--host", "unix:///a", "--tlscert", "c"), "TLS files go with a tcp://"),
        (("context", "create", "x", "--docker", "hots=tcp://h"), "invalid --docker field"),
        (("context", "use", "nope"), 'context "nope" does not exist'),
        (("context", "rm", "far"), "in use"),
        (("--context", "nope", "ps"), 'context "nope" does not exist'),
        (("-H", "unix:///x.sock", "--context", "far", "ps"), "conflicting options"),
        (("--context", "far", "ps"), "cannot reach the engine at ssh://u@127.0.0.1:1"),
    ]:
        result = _berth(tmp_path, *args)
        assert result.returncode != 0, args
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert _berth(tmp_path, "context", "rm", "-f", "far").returncode == 0
    assert _berth(tmp_path, "context", "show").stdout == "default\n"
