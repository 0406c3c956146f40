"""Builders of hostile input for the security corpus: tars, image archives, registry uploads, paths.

Everything is generated here in Python (``tarfile.TarInfo``, raw header bytes, zstd/gzip streams);
nothing opaque is committed. Escape attempts aim at ``SENTINEL`` (a directory tree) and ``MARKER``
(a host file) that the shared checks of ``conftest.py`` hash before and after every case, so a write
that leaves its target is caught whatever path it took.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import zstandard

SENTINEL = f"/tmp/berth-sentinel-{os.getpid()}"
"""A host directory tree no case may change (created and hashed by conftest.py)."""
MARKER = f"/tmp/berth-host-marker-{os.getpid()}"
"""A host file no case may change or read (created and hashed by conftest.py)."""
MARKER_TEXT = b"host secret: never inside a container\n"
CLIMB = "../" * 24
"""Enough ``..`` to reach the host's ``/`` from any data root, however deep."""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Tar:
    """A tar written entry by entry (PAX format), with raw escape hatches for malformed headers."""

    def __init__(self, fmt: int = tarfile.PAX_FORMAT) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=fmt)  # noqa: SIM115 - closed in bytes()

    def add(self, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", *, mode: int = 0o644,
            linkname: str = "", pax: dict[str, str] | None = None, devmajor: int = 0,
            devminor: int = 0, uid: int = 0) -> Tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.mtime = 1_700_000_000
        info.linkname = linkname
        info.devmajor, info.devminor = devmajor, devminor
        info.uid = uid
        info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
        if pax:
            info.pax_headers = dict(pax)
        self.tar.addfile(info, io.BytesIO(data) if info.size else None)
        return self

    def file(self, name: str, data: bytes = b"pwned\n", **kw: object) -> Tar:
        return self.add(name, tarfile.REGTYPE, data, **kw)  # type: ignore[arg-type]

    def dir(self, name: str, mode: int = 0o755) -> Tar:
        return self.add(name, tarfile.DIRTYPE, mode=mode)

    def symlink(self, name: str, target: str) -> Tar:
        return self.add(name, tarfile.SYMTYPE, mode=0o777, linkname=target)

    def hardlink(self, name: str, target: str) -> Tar:
        return self.add(name, tarfile.LNKTYPE, linkname=target)

    def raw(self, data: bytes) -> Tar:
        """Append bytes as they are (a hand-made header); the caller keeps the 512-byte framing."""
        self.tar.fileobj.write(data)
        self.tar.offset += len(data)
        return self

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def header(name: bytes, *, kind: bytes = b"0", size: int = 0, linkname: bytes = b"") -> bytes:
    """One ustar header block with a correct checksum (``size`` is written as given, even if a lie)."""
    block = bytearray(512)
    block[0:len(name[:100])] = name[:100]
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = b"%011o\0" % size
    block[136:148] = b"%011o\0" % 1_700_000_000
    block[156:157] = kind
    block[157:157 + len(linkname[:100])] = linkname[:100]
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def pax_record(key: str, value: bytes) -> bytes:
    """One PAX ``"%d %s=%s\\n"`` record with a correct length prefix."""
    body = key.encode() + b"=" + value + b"\n"
    n = len(body) + 2
    while len(str(n)) + 1 + len(body) != n:
        n += 1
    return str(n).encode() + b" " + body


def pax_entry(records: bytes, kind: bytes = b"x") -> bytes:
    """A PAX extended header (``x`` local, ``g`` global) carrying ``records``, padded to 512."""
    pad = (-len(records)) % 512
    return header(b"././@PaxHeader", kind=kind, size=len(records)) + records + b"\0" * pad


def end_of_archive() -> bytes:
    return b"\0" * 1024


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def zstd_zeros_tar(size: int) -> bytes:
    """A zstd-compressed tar holding one file of ``size`` zero bytes (a decompression bomb)."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as w:
        w.write(header(b"zeros", size=size))
        chunk = b"\0" * (1 << 20)
        for _ in range(size // len(chunk)):
            w.write(chunk)
        w.write(end_of_archive())
    return out.getvalue()


def gzip_zeros_tar(size: int) -> bytes:
    """A gzip-compressed tar holding one file of ``size`` zero bytes (ratio ~1000:1)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(header(b"zeros", size=size))]
    chunk = b"\0" * (1 << 20)
    parts.extend(comp.compress(chunk) for _ in range(size // len(chunk)))
    parts.append(comp.compress(end_of_archive()) + comp.flush())
    return b"".join(parts)


def uncompressed_digest(layer: bytes) -> str:
    """The diff ID of ``layer``: sha256 of its decompressed stream (as far as it decompresses)."""
    h = hashlib.sha256()
    try:
        if layer.startswith(b"\x1f\x8b"):
            with gzip.GzipFile(fileobj=io.BytesIO(layer)) as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        elif layer.startswith(b"\x28\xb5\x2f\xfd"):
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(layer)) as r:
                while chunk := r.read(1 << 20):
                    h.update(chunk)
        else:
            return sha256(layer)
    except (OSError, EOFError, zstandard.ZstdError):
        return sha256(layer)
    return "sha256:" + h.hexdigest()


def image_config(diff_ids: list[str], **config: object) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], **config},
                       "rootfs": {"type": "layers", "diff_ids": diff_ids},
                       "history": [{"created_by": "hostile"} for _ in diff_ids]}).encode()


def save_archive(layers: list[bytes], tag: str, *, extra: Callable[[Tar], None] | None = None,
                 manifest: object = None) -> bytes:
    """A ``docker save`` archive (legacy layout) of one image with ``layers``, tagged ``tag``.

    ``manifest`` replaces manifest.json; ``extra`` adds further members before it."""
    tar = Tar()
    paths = []
    for i, layer in enumerate(layers):
        path = f"layer{i}/layer.tar"
        tar.file(path, layer)
        paths.append(path)
    config = image_config([uncompressed_digest(layer) for layer in layers])
    tar.file("config.json", config)
    if extra is not None:
        extra(tar)
    doc = manifest if manifest is not None else [{"Config": "config.json", "RepoTags": [tag], "Layers": paths}]
    tar.file("manifest.json", json.dumps(doc).encode())
    return tar.bytes()


# --- a registry of our own choosing: uploads to the local docker-registry --------------------------------


@dataclass
class Upload:
    """Push blobs and a manifest straight to a registry's HTTP API (the registry only checks digests)."""

    url: str
    repo: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=60, trust_env=False))

    def blob(self, data: bytes) -> str:
        digest = sha256(data)
        start = self.client.post(f"{self.url}/v2/{self.repo}/blobs/uploads/")
        assert start.status_code == 202, start.text
        location = start.headers["location"]
        if location.startswith("/"):
            location = self.url + location
        separator = "&" if "?" in location else "?"
        done = self.client.put(f"{location}{separator}digest={digest}", content=data,
                               headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
        return digest

    def manifest(self, tag: str, doc: dict[str, object], media_type: str) -> str:
        raw = json.dumps(doc).encode()
        put = self.client.put(f"{self.url}/v2/{self.repo}/manifests/{tag}", content=raw,
                              headers={"Content-Type": media_type})
        assert put.status_code == 201, put.text
        return sha256(raw)

    def image(self, tag: str, layers: list[bytes], layer_type: str = "application/vnd.oci.image.layer.v1.tar"
              ) -> str:
        """Upload an OCI image of ``layers`` (bytes as they are, under ``layer_type``) as ``repo:tag``."""
        config = image_config([uncompressed_digest(layer) for layer in layers])
        descs = [{"mediaType": layer_type, "digest": self.blob(layer), "size": len(layer)} for layer in layers]
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.blob(config),
                          "size": len(config)},
               "layers": descs}
        return self.manifest(tag, doc, "application/vnd.oci.image.manifest.v1+json")


def clear_error(result: object, substring: str) -> None:
    """Assert a CLI result failed with a clear error holding ``substring`` (no traceback)."""
    returncode, stderr = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert returncode != 0, f"expected a failure with {substring!r}, it succeeded"
    assert "Traceback" not in stderr, stderr
    assert substring.lower() in stderr.lower(), f"{substring!r} not in: {stderr}"
