"""Pulling a ~200 MB, 5-layer image from a local registry: Berth vs dockerd vs skopeo.

Usage (as root): ``.venv/bin/python bench/pull.py [-n 3]``

The image is built once and cached as an OCI layout in ``~/.cache/berth-tests/bench-pull-<hash>/``:
five gzip layers (level 1, to build fast) of ~40 MiB uncompressed each, 40 files of 1 MiB per layer made of
64 KiB blocks, three in four of them text of random words from a small vocabulary and one in four random
bytes, so the layers compress to about half and gzip costs what it costs on real images.

A test dockerd (tests/fixtures/dockerd.py) runs in a network namespace of its own; this process enters
that namespace (setns) and starts the registry (docker-registry on 127.0.0.1) there, so 127.0.0.1 is the
same loopback for Berth, dockerd and skopeo, and dockerd treats the registry as insecure by itself. The
image is pushed with skopeo. Each iteration, in turn:

- ``berth``: ``ImageService.pull`` into a fresh temp store (download, verify, gunzip, extract, diff IDs);
- ``dockerd``: ``docker pull`` (download, verify, extract into overlay2), then, untimed, ``docker image rm``
  and ``docker image prune -af`` so that the next pull downloads everything again;
- ``skopeo``: ``skopeo copy docker://... dir:<tmp>`` (download and verify only: nothing is extracted).

Berth and dockerd both download at most 3 layers at a time (their defaults). Prints medians and the ratios
berth/dockerd and berth/skopeo. It never fails on timing; a variant that cannot run is reported as such.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import string
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from backend.engine.images.service import ImageService  # noqa: E402
from backend.engine.registry.client import RegistryClient  # noqa: E402
from tests.fixtures.dockerd import DockerdError, LocalDockerd, entered_netns  # noqa: E402
from tests.fixtures.images import _skopeo, push_with_skopeo  # noqa: E402
from tests.fixtures.registry import LocalRegistry  # noqa: E402
from tests.fixtures.rootfs import default_cache_dir  # noqa: E402

RECIPE = "berth-bench-pull/1"
LAYERS = 5
FILES_PER_LAYER = 40
BLOCK = 64 * 1024
BLOCKS_PER_FILE = 16  # 1 MiB files
POOL_BLOCKS = 128
GZIP_LEVEL = 1
MTIME = 1_700_000_000
REPO_NAME = "bench/pull:latest"
VARIANTS = (("berth", "Berth ImageService.pull"), ("dockerd", "docker pull (dockerd 20.10)"),
            ("skopeo", "skopeo copy to dir:"))

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


# --- the image ------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _layer_tar(rng: random.Random, pool: list[bytes], index: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.TarFile(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode, entry.mtime, entry.size = kind, mode, MTIME, size
            return entry

        top = f"data/layer{index}"
        tar.addfile(info("data", tarfile.DIRTYPE, 0o755))
        tar.addfile(info(top, tarfile.DIRTYPE, 0o755))
        for f in range(FILES_PER_LAYER):
            blocks = [rng.randbytes(BLOCK) if rng.random() < 0.25 else rng.choice(pool)
                      for _ in range(BLOCKS_PER_FILE)]
            data = b"".join(blocks)
            tar.addfile(info(f"{top}/file{f:03}.txt", tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    return buffer.getvalue()


def _word_pool(rng: random.Random) -> list[bytes]:
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 11))) for _ in range(4096)]
    pool = []
    for _ in range(POOL_BLOCKS):
        text = " ".join(rng.choices(vocabulary, k=BLOCK // 5)).encode()
        pool.append(text[:BLOCK].ljust(BLOCK, b"\n"))
    return pool


def _write_layout(root: Path) -> None:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(data: bytes, media_type: str) -> dict[str, Any]:
        digest = _sha256(data)
        (blobs / digest[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    rng = random.Random(RECIPE)
    pool = _word_pool(rng)
    layers, diff_ids = [], []
    for i in range(LAYERS):
        tar = _layer_tar(rng, pool, i)
        diff_ids.append(_sha256(tar))
        layers.append(blob(gzip.compress(tar, compresslevel=GZIP_LEVEL, mtime=0), OCI_LAYER_GZIP))
    config = {
        "architecture": _arch(), "os": "linux", "created": "2023-11-14T22:13:20Z",
        "config": {"Cmd": ["sh"], "Labels": {"org.berth.bench": RECIPE}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"bench layer {i}"} for i in range(LAYERS)],
    }
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": blob(_json(config), OCI_CONFIG),
                "layers": layers}
    entry = blob(_json(manifest), OCI_MANIFEST)
    entry["annotations"] = {REF_NAME: "latest"}
    (root / "index.json").write_bytes(_json({"schemaVersion": 2, "manifests": [entry]}))


def build_bench_image(cache_dir: Path) -> tuple[Path, int, int]:
    """The cached OCI layout (built if missing); its total compressed and uncompressed layer bytes."""
    key = hashlib.sha256(f"{RECIPE}\0{LAYERS}\0{FILES_PER_LAYER}\0{BLOCKS_PER_FILE}\0{GZIP_LEVEL}".encode())
    final = cache_dir / f"bench-pull-{key.hexdigest()[:16]}"
    if not (final / "index.json").exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        print(f"building the bench image into {final} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=".bench-pull-tmp-", dir=cache_dir))
        try:
            _write_layout(tmp / "layout")
            try:
                os.rename(tmp / "layout", final)
            except OSError:
                if not (final / "index.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"built in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    index = json.loads((final / "index.json").read_bytes())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((final / "blobs" / "sha256" / digest[7:]).read_bytes())
    compressed = uncompressed = 0
    for layer in manifest["layers"]:
        compressed += layer["size"]
        with open(final / "blobs" / "sha256" / layer["digest"][7:], "rb") as f:
            f.seek(-4, os.SEEK_END)
            uncompressed += int.from_bytes(f.read(4), "little")  # gzip ISIZE (layers are < 4 GiB)
    return final, compressed, uncompressed


# --- the variants -----------------------------------------------------------------------------------------


def pull_berth(ref: str, work: Path) -> None:
    store = Path(tempfile.mkdtemp(prefix="berth-store-", dir=work))
    try:
        async def pull() -> None:
            async with RegistryClient() as client:
                await ImageService(str(store), client).pull(ref)

        asyncio.run(pull())
    finally:
        shutil.rmtree(store, ignore_errors=True)


def docker_forget(dockerd: LocalDockerd, ref: str) -> None:
    dockerd.docker("image", "rm", "-f", ref, timeout=120)
    dockerd.docker("image", "prune", "-af", timeout=120)
    left = dockerd.docker("image", "ls", "-aq", timeout=60).stdout.split()
    if left:
        raise RuntimeError(f"dockerd still has images after rm and prune: {left}")


def pull_skopeo(ref: str, work: Path) -> None:
    dest = Path(tempfile.mkdtemp(prefix="skopeo-dir-", dir=work))
    scratch = Path(tempfile.mkdtemp(prefix="skopeo-work-", dir=work))
    try:
        _skopeo(["copy", "--quiet", "--src-tls-verify=false", "--src-no-creds", f"docker://{ref}", f"dir:{dest}"],
                scratch)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run_all(n: int, layout: Path, work: Path) -> dict[str, list[float] | str]:
    results: dict[str, list[float] | str] = {}
    try:
        dockerd = LocalDockerd().start()
    except DockerdError as exc:
        dockerd = None
        results["dockerd"] = f"unavailable: {str(exc).splitlines()[0]}"
    try:
        # The registry, skopeo and Berth all live in dockerd's network namespace (or in this one if none).
        netns = entered_netns(dockerd.netns) if dockerd is not None else contextlib.nullcontext()
        with netns, LocalRegistry(base_dir=work) as registry:
            ref = f"{registry.domain}/{REPO_NAME}"
            print(f"pushing to {ref} with skopeo ...", file=sys.stderr, flush=True)
            push_with_skopeo(layout, REPO_NAME, registry)

            def pull_docker() -> None:
                assert dockerd is not None
                dockerd.docker("pull", "-q", ref, timeout=600, check=True)

            variants: dict[str, Callable[[], None]] = {
                "berth": lambda: pull_berth(ref, work),
                "dockerd": pull_docker,
                "skopeo": lambda: pull_skopeo(ref, work),
            }
            if dockerd is not None:
                docker_forget(dockerd, ref)
            for i in range(n):
                for key, fn in variants.items():
                    if isinstance(results.get(key), str):
                        continue
                    try:
                        seconds = timed(fn)
                        if key == "dockerd" and dockerd is not None:
                            docker_forget(dockerd, ref)
                    except Exception as exc:  # a broken variant must not stop the others
                        results[key] = f"unavailable: {type(exc).__name__}: {str(exc).strip()[:300]}"
                        continue
                    samples = results.setdefault(key, [])
                    assert isinstance(samples, list)
                    samples.append(seconds)
                    print(f"  [{i + 1}/{n}] {key:<8} {seconds:7.2f} s", file=sys.stderr, flush=True)
    finally:
        if dockerd is not None:
            dockerd.stop()
    return results


def print_table(results: dict[str, list[float] | str], n: int, compressed: int, uncompressed: int) -> None:
    mib = 1024 * 1024
    berth = results.get("berth")
    berth_med = statistics.median(berth) if isinstance(berth, list) and berth else None
    print(f"\npull of a {LAYERS}-layer image, {compressed / mib:.0f} MiB gzip / {uncompressed / mib:.0f} MiB "
          f"uncompressed, from docker-registry on loopback; {n} pulls per variant (seconds)\n")
    header = f"{'variant':<30}{'median':>8}{'min':>8}{'max':>8}{'MiB/s':>8}{'berth/x':>9}"
    print(header)
    print("-" * len(header))
    for key, label in VARIANTS:
        res = results.get(key)
        if not isinstance(res, list) or not res:
            print(f"{label:<30}{res or 'not run'}")
            continue
        med = statistics.median(res)
        ratio = f"{berth_med / med:9.2f}" if berth_med else f"{'-':>9}"
        print(f"{label:<30}{med:8.2f}{min(res):8.2f}{max(res):8.2f}{compressed / mib / med:8.1f}{ratio}")
    print("\n(MiB/s is compressed bytes over the median; berth/x < 1 means Berth is faster than x."
          "\n skopeo only downloads and verifies; Berth and dockerd also gunzip and extract.)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3, help="pulls per variant (default 3)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/pull.py needs root (network namespace, dockerd)", file=sys.stderr)
        return 2
    for name in [k for k in os.environ if "proxy" in k.lower()]:
        del os.environ[name]  # every pull goes to the registry on loopback, never through a proxy
    layout, compressed, uncompressed = build_bench_image(default_cache_dir())
    work = Path(tempfile.mkdtemp(prefix="berth-bench-pull-"))
    try:
        results = run_all(args.n, layout, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results, args.n, compressed, uncompressed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
