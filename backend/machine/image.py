"""Base images: downloaded once, verified by SHA-256 before anything uses them, cached by digest.

An image (docs/machine.md) is an uncompressed tar of ``disk.qcow2``, ``vmlinuz`` and ``initrd.img``. The cache
is ``<cache>/<sha256>/`` holding those three files; a download goes to ``<cache>/<sha256>.partial`` (resumed
with an HTTP Range request when a partial file exists), is hashed while it streams, and is only unpacked when
the digest matches; on a mismatch the partial file is removed and ImageVerificationError raised.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from backend.machine.errors import ImageVerificationError, MachineError

IMAGE_FILES = ("disk.qcow2", "vmlinuz", "initrd.img")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, int | None], None]
"""(bytes done, total or None)"""


@dataclass(frozen=True)
class BaseImage:
    """A verified, unpacked base image (read-only)."""

    sha256: str
    disk: Path
    kernel: Path
    initrd: Path


def _cached(directory: Path, sha256: str) -> BaseImage:
    return BaseImage(sha256, directory / "disk.qcow2", directory / "vmlinuz", directory / "initrd.img")


def _download(url: str, dest: Path, progress: Progress | None) -> None:
    """Stream ``url`` into ``dest``, appending when ``dest`` exists and the server honours Range."""
    done = dest.stat().st_size if dest.exists() else 0
    headers = {"Range": f"bytes={done}-"} if done else {}
    try:
        with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=60.0) as resp:
            if resp.status_code == 416:  # the partial file is already whole
                return
            if resp.status_code not in (200, 206):
                raise MachineError(f"downloading {url}: HTTP {resp.status_code}")
            if resp.status_code == 200:
                done = 0
            length = resp.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            with open(dest, "ab" if done else "wb") as f:
                for chunk in resp.iter_bytes(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    except httpx.HTTPError as exc:
        raise MachineError(f"downloading {url}: {exc}") from exc


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_image(url: str, sha256: str, cache: Path, progress: Progress | None = None) -> BaseImage:
    """The verified base image ``sha256`` from the cache, downloading ``url`` (http, https or a local path)
    first if needed.

    Raises ImageVerificationError when the content's digest differs (nothing of it is kept), MachineError for
    a bad digest string, a failed download or an archive that is not a machine image.
    """
    sha256 = sha256.lower().removeprefix("sha256:")
    if not _SHA256.match(sha256):
        raise MachineError(f"invalid --image-sha256 {sha256!r}: expected 64 hex digits")
    final = cache / sha256
    if all((final / name).is_file() for name in IMAGE_FILES):
        return _cached(final, sha256)
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{sha256}.partial"
    if url.startswith(("http://", "https://")):
        _download(url, partial, progress)
    else:
        try:
            shutil.copyfile(url.removeprefix("file://"), partial)
        except OSError as exc:
            raise MachineError(f"reading image {url}: {exc.strerror}") from exc
    actual = _file_sha256(partial)
    if actual != sha256:
        partial.unlink()
        raise ImageVerificationError(f"image {url} has SHA-256 {actual}, expected {sha256}: refused")
    unpacking = cache / f"{sha256}.unpacking"
    shutil.rmtree(unpacking, ignore_errors=True)
    unpacking.mkdir()
    try:
        with tarfile.open(partial) as tar:
            for name in IMAGE_FILES:
                member = tar.getmember(name)
                if not member.isreg():
                    raise MachineError(f"image {url}: {name} is not a regular file")
                tar.extract(member, unpacking, filter="data")
    except (KeyError, tarfile.TarError) as exc:
        shutil.rmtree(unpacking, ignore_errors=True)
        raise MachineError(f"image {url} is not a machine image (a tar of {', '.join(IMAGE_FILES)}): {exc}") from exc
    unpacking.rename(final)
    partial.unlink()
    return _cached(final, sha256)


def create_overlay(base: BaseImage, overlay: Path, size_gib: int) -> None:
    """A qcow2 ``overlay`` backed by the base disk, grown to ``size_gib`` (never shrunk below the base).
    Raises MachineError if qemu-img fails."""
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base.disk.resolve()),
                        str(overlay)], check=True, capture_output=True, text=True)
        info = subprocess.run(["qemu-img", "info", "--output=json", str(overlay)], check=True,
                              capture_output=True, text=True).stdout
        if _virtual_size(info) < size_gib << 30:
            subprocess.run(["qemu-img", "resize", "-q", str(overlay), f"{size_gib}G"], check=True,
                           capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise MachineError("qemu-img is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise MachineError(f"qemu-img: {exc.stderr.strip()}") from exc


def _virtual_size(info: str) -> int:
    match = re.search(r'"virtual-size": (\d+)', info)
    return int(match.group(1)) if match else 0
