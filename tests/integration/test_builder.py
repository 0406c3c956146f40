"""The builder through ``berth build`` and the API: the berth CLI's context (``.dockerignore``, ``-f`` outside the
context, ``-`` on stdin, ``-q``), ``berth builder prune``, the cache never matching images not built here
(CVE-2024-24557), ONBUILD triggers, heredocs, ``FROM scratch``, ADD of a URL with ``--checksum`` (a loopback
server), pulls during a build, and a cancelled build leaving no container or mount behind."""

from __future__ import annotations

import http.server
import io
import json
import secrets
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.fixture
def tag(berthd_with_busybox: Berthd) -> Iterator[str]:
    name = f"ib-{secrets.token_hex(4)}"
    yield name
    for suffix in ("latest", "base", "child"):
        berthd_with_busybox.docker("rmi", "-f", f"{name}:{suffix}", check=False)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_berth_build_context_quiet_and_history(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    ctx = write(tmp_path / "ctx", {"keep.txt": "k\n", "skip.log": "s\n", ".dockerignore": "*.log\n",
                                   "Dockerfile": "FROM busybox\nCOPY . /ctx/\nRUN ls /ctx > /listing\n"})
    image_id = d.berth("build", "-q", "-t", tag, str(ctx)).stdout.strip()
    assert image_id.startswith("sha256:")
    assert d.docker("run", "--rm", tag, "cat", "/listing").stdout.split() == ["Dockerfile", "keep.txt"]
    out = d.berth("build", "-t", tag, str(ctx)).stdout
    assert out.count(" ---> Using cache") == 2 and f"Successfully built {image_id[7:19]}" in out
    history = d.berth("history", "--no-trunc", tag).stdout
    assert "/bin/sh -c ls /ctx > /listing" in history

    outside = write(tmp_path / "elsewhere", {"Custom.dockerfile": "FROM busybox\nCOPY keep.txt /k\n"})
    d.berth("build", "-t", tag, "-f", str(outside / "Custom.dockerfile"), str(ctx))
    assert d.docker("run", "--rm", tag, "cat", "/k").stdout == "k\n"
    d.berth("build", "-t", tag, "-", input='FROM busybox\nCMD ["echo", "from stdin"]\n')
    assert d.docker("run", "--rm", tag).stdout == "from stdin\n"

    failed = d.berth("build", str(tmp_path / "missing"), check=False)
    assert failed.returncode != 0 and len(failed.stderr.strip().splitlines()) == 1
    bad = write(tmp_path / "bad", {"Dockerfile": "FROM busybox\nRUN exit 3\n"})
    failed = d.berth("build", str(bad), check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "The command '/bin/sh -c exit 3' returned a non-zero code: 3"


def test_builder_prune_and_no_cache_from_foreign_images(berthd_with_busybox: Berthd, tag: str,
                                                        tmp_path: Path) -> None:
    d = berthd_with_busybox
    ctx = write(tmp_path, {"f": "same content\n", "Dockerfile": "FROM scratch\nCOPY f /f\nLABEL step=two\n"})
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("f")
        info.size = 13
        tar.addfile(info, io.BytesIO(b"same content\n"))
    subprocess.run(["docker", "import", "-", f"{tag}:base"], input=layer.getvalue(), env=d.env, check=True,
                   capture_output=True)
    first = d.berth("build", "-t", tag, str(ctx)).stdout
    assert "Using cache" not in first  # an imported look-alike is never a cache hit
    assert "Using cache" in d.berth("build", "-t", tag, str(ctx)).stdout
    d.docker("rmi", tag)
    out = d.berth("builder", "prune", "-f").stdout
    assert out.startswith("Deleted build cache objects:") and "Total reclaimed space:" in out
    assert "Using cache" not in d.berth("build", "-t", tag, str(ctx)).stdout
    layers = json.loads(d.docker("image", "inspect", tag).stdout)[0]["RootFS"]["Layers"]
    assert len(layers) == 1


def test_onbuild_heredocs_and_labels(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    base = write(tmp_path / "base", {"Dockerfile": "FROM busybox\nONBUILD RUN echo triggered > /onbuild\n"})
    d.berth("build", "-t", f"{tag}:base", str(base))
    child = write(tmp_path / "child", {"Dockerfile": (
        f"FROM {tag}:base\n"
        "RUN <<EOF\necho one > /one\necho two > /two\nEOF\n"
        "RUN <<EOF\n#!/bin/sh\necho shebang > /shebang\nEOF\n"
        "RUN cat > /cat <<EOF\nvia cat\nEOF\n"
        "COPY <<EOF /inline.txt\nhello inline\nEOF\n")})
    out = d.docker("build", "--label", "team=core", "-t", f"{tag}:child", str(child)).stdout
    assert "# Executing 1 build trigger" in out
    shown = d.docker("run", "--rm", f"{tag}:child", "cat", "/onbuild", "/one", "/two", "/shebang", "/cat",
                     "/inline.txt").stdout
    assert shown == "triggered\none\ntwo\nshebang\nvia cat\nhello inline\n"
    config = json.loads(d.docker("image", "inspect", f"{tag}:child").stdout)[0]["Config"]
    assert not config.get("OnBuild") and config["Labels"]["team"] == "core"


class _Files(http.server.BaseHTTPRequestHandler):
    body = b"downloaded payload\n"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[str]:
    """An HTTP server on loopback serving one file at any path."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_add_url_with_checksum(berthd_with_busybox: Berthd, tag: str, tmp_path: Path, file_server: str) -> None:
    d = berthd_with_busybox
    import hashlib

    digest = hashlib.sha256(_Files.body).hexdigest()
    write(tmp_path, {"Dockerfile": f"FROM busybox\nADD --checksum=sha256:{digest} {file_server}/dir/data.txt /got/\n"})
    d.docker("build", "-t", tag, str(tmp_path))
    assert d.docker("run", "--rm", tag, "sh", "-c", "cat /got/data.txt; stat -c %a /got/data.txt").stdout == (
        "downloaded payload\n600\n")
    write(tmp_path, {"Dockerfile": f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {file_server}/x /x\n"})
    failed = d.docker("build", str(tmp_path), check=False)
    assert failed.returncode == 1 and "checksum of" in failed.stderr and "does not match" in failed.stderr


def test_from_pulls_with_progress(berthd_with_busybox: Berthd, registry: LocalRegistry, tag: str,
                                  tmp_path: Path) -> None:
    d = berthd_with_busybox
    write(tmp_path, {"Dockerfile": f"FROM {registry.domain}/fixture/busybox:latest\nRUN echo pulled-base\n"})
    out = d.docker("build", "--pull", "-t", tag, str(tmp_path)).stdout
    assert "pulled-base" in out and "Successfully tagged" in out
    missing = write(tmp_path / "missing", {"Dockerfile": f"FROM {registry.domain}/fixture/nothing:here\n"})
    failed = d.docker("build", str(missing), check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr


def test_cancelled_build_leaves_nothing(berthd_with_busybox: Berthd, tmp_path: Path) -> None:
    d = berthd_with_busybox
    before = d.docker("ps", "-aq").stdout.split()
    write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo started && sleep 60\n"})
    client = subprocess.Popen(["docker", "build", str(tmp_path)], env=d.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    assert client.stdout is not None
    for line in client.stdout:
        if "started" in line:
            break
    client.kill()
    client.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        leftovers = d.docker("ps", "-aq").stdout.split()
        tmp = list((d.data_root / "builder" / "tmp").iterdir())
        if leftovers == before and not tmp:
            break
        time.sleep(0.2)
    assert d.docker("ps", "-aq").stdout.split() == before
    assert not list((d.data_root / "builder" / "tmp").iterdir())
    with open("/proc/self/mountinfo") as f:
        assert str(d.data_root / "builder") not in f.read()
