"""``docker save`` / ``docker load`` archives, both directions.

Berth writes the layout Docker 25+ writes, which older Docker loads too: an OCI image layout
(``oci-layout``, ``index.json``, ``blobs/sha256/...``) plus Docker's ``manifest.json`` and
``repositories``, with uncompressed layer tars whose digests are the image's diff IDs. It reads that
layout, Docker's legacy layout (``<id>/layer.tar`` + ``manifest.json``) and plain OCI layouts
(``index.json`` only, names from the ``org.opencontainers.image.ref.name`` /
``io.containerd.image.name`` annotations).

Every member path is looked up by exact name inside the archive: nothing is ever extracted to a
path taken from the archive. Layers are applied with the safe extractor and checked against the
config's diff IDs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import zstandard

from backend.engine.errors import InvalidParameter
from backend.engine.images.content_store import digest_bytes

MAX_JSON = 8 * 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass(frozen=True)
class SavedImage:
    """One image to write: its config bytes, its layers' uncompressed streams, and its names."""

    config: bytes
    layers: list[tuple[str, int, Callable[[], BinaryIO]]]  # (diff_id, size, opener of the plain tar)
    repo_tags: list[str]  # familiar names, e.g. "busybox:latest"


@dataclass(frozen=True)
class LoadedImage:
    """One image found in an archive: config bytes, opener per layer (bottom first), names."""

    config: bytes
    layers: list[Callable[[], BinaryIO]]
    repo_tags: list[str]


def decompressed(blob: BinaryIO, media_type: str) -> BinaryIO:
    """A reader of the plain tar inside a stored layer blob."""
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        return zstandard.ZstdDecompressor().stream_reader(blob, closefd=True)
    if media_type.endswith("gzip"):
        reader = gzip.GzipFile(fileobj=blob, mode="rb")
        reader.myfileobj = blob  # type: ignore[assignment]  # closing the reader closes the blob (as gzip.open)
        return reader  # type: ignore[return-value]
    return blob


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_archive(out: IO[bytes], images: list[SavedImage]) -> None:
    """Write ``images`` as one archive (see the module docstring) to the stream ``out``."""
    now = time.time()
    seen: set[str] = set()
    manifest_json: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_dir_info("blobs/", now))
        tar.addfile(_dir_info("blobs/sha256/", now))
        for image in images:
            config_digest = digest_bytes(image.config)
            layer_paths = []
            for diff_id, size, opener in image.layers:
                path = f"blobs/sha256/{diff_id[7:]}"
                layer_paths.append(path)
                if path in seen:
                    continue
                seen.add(path)
                info = tarfile.TarInfo(path)
                info.size = size
                info.mtime = int(now)
                info.mode = 0o644
                with opener() as stream:
                    tar.addfile(info, _Verified(stream, diff_id, size))
            config_path = f"blobs/sha256/{config_digest[7:]}"
            if config_path not in seen:
                seen.add(config_path)
                _add_bytes(tar, config_path, image.config, now)
            manifest = {
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(image.config)},
                "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s, _ in image.layers],
            }
            raw = json.dumps(manifest, separators=(",", ":")).encode()
            manifest_digest = digest_bytes(raw)
            if f"blobs/sha256/{manifest_digest[7:]}" not in seen:
                seen.add(f"blobs/sha256/{manifest_digest[7:]}")
                _add_bytes(tar, f"blobs/sha256/{manifest_digest[7:]}", raw, now)
            names: list[str | None] = list(image.repo_tags) or [None]
            for name in names:
                entry: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(raw)}
                if name:
                    entry["annotations"] = {"io.containerd.image.name": name,
                                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]}
                index.append(entry)
            manifest_json.append({"Config": config_path, "RepoTags": image.repo_tags or None,
                                  "Layers": layer_paths})
            for name in image.repo_tags:
                repo, _, tag = name.rpartition(":")
                repositories.setdefault(repo, {})[tag] = image.layers[-1][0][7:] if image.layers else ""
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', now)
        _add_bytes(tar, "index.json", json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}).encode(), now)
        _add_bytes(tar, "manifest.json", json.dumps(manifest_json).encode(), now)
        if repositories:
            _add_bytes(tar, "repositories", json.dumps(repositories).encode(), now)


def _dir_info(name: str, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(mtime)
    return info


class _Verified(io.RawIOBase):
    """Pass a layer stream through, checking its length and digest at the end."""

    def __init__(self, stream: BinaryIO, digest: str, size: int) -> None:
        self._stream = stream
        self._digest = digest
        self._left = size
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n if n >= 0 else self._left)
        self._left -= len(data)
        self._hash.update(data)
        if self._left < 0 or (not data and self._left > 0):
            raise InvalidParameter(f"layer {self._digest} does not have its recorded size")
        if self._left == 0 and "sha256:" + self._hash.hexdigest() != self._digest:
            raise InvalidParameter(f"layer {self._digest} is corrupt: its content does not match its diff ID")
        return data


def _json_member(tar: tarfile.TarFile, name: str) -> Any:
    member = _member(tar, name)
    if member.size > MAX_JSON:
        raise InvalidParameter(f"archive member {name} is larger than {MAX_JSON} bytes")
    f = tar.extractfile(member)
    if f is None:
        raise InvalidParameter(f"archive member {name} is not a file")
    try:
        return json.loads(f.read())
    except ValueError as exc:
        raise InvalidParameter(f"archive member {name} is not valid JSON: {exc}") from exc


def _member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    name = name.lstrip("/").removeprefix("./")
    try:
        member = tar.getmember(name)
    except KeyError as exc:
        raise InvalidParameter(f"archive has no member {name!r}") from exc
    if not member.isfile():
        raise InvalidParameter(f"archive member {name} is not a regular file")
    return member


def _opener(tar: tarfile.TarFile, name: str) -> Callable[[], BinaryIO]:
    member = _member(tar, name)

    def open_member() -> BinaryIO:
        f = tar.extractfile(member)
        if f is None:
            raise InvalidParameter(f"archive member {name} is not a file")
        return f  # type: ignore[return-value]

    return open_member


def read_archive(tar: tarfile.TarFile) -> Iterator[LoadedImage]:
    """The images in a seekable ``docker save`` / OCI layout archive. Raises InvalidParameter."""
    names = set(tar.getnames())
    if "manifest.json" in names:
        entries = _json_member(tar, "manifest.json")
        if not isinstance(entries, list):
            raise InvalidParameter("manifest.json must be a list")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or not isinstance(
                    entry.get("Layers"), list):
                raise InvalidParameter("manifest.json entry needs Config and Layers")
            config = _read_member(tar, entry["Config"])
            tags = entry.get("RepoTags") or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise InvalidParameter("manifest.json RepoTags must be a list of names")
            yield LoadedImage(config, [_opener(tar, str(p)) for p in entry["Layers"]], tags)
        return
    if "index.json" in names:
        yield from _read_oci_layout(tar)
        return
    raise InvalidParameter("not an image archive: it has neither manifest.json nor index.json")


def _read_member(tar: tarfile.TarFile, name: str) -> bytes:
    member = _member(tar, name)
    if member.size > MAX_JSON:
        raise InvalidParameter(f"archive member {name} is larger than {MAX_JSON} bytes")
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


def _blob_name(digest: object) -> str:
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise InvalidParameter(f"invalid digest in the OCI layout: {digest!r}")
    return f"blobs/sha256/{digest[7:]}"


def _read_oci_layout(tar: tarfile.TarFile) -> Iterator[LoadedImage]:
    index = _json_member(tar, "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidParameter("index.json has no manifests")
    for desc in index["manifests"]:
        if not isinstance(desc, dict):
            raise InvalidParameter("index.json manifests must be objects")
        raw = _read_member(tar, _blob_name(desc.get("digest")))
        if digest_bytes(raw) != desc["digest"]:
            raise InvalidParameter(f"manifest {desc['digest']} does not match its digest")
        manifest = json.loads(raw)
        if manifest.get("manifests"):
            raise InvalidParameter("nested indexes in an OCI layout are not supported yet; save one platform")
        annotations = desc.get("annotations") or {}
        name = annotations.get("io.containerd.image.name")
        tags = [name] if isinstance(name, str) else []
        config = _read_member(tar, _blob_name(manifest.get("config", {}).get("digest")))
        layers = []
        for layer in manifest.get("layers", []):
            opener = _opener(tar, _blob_name(layer.get("digest")))
            media_type = str(layer.get("mediaType", ""))
            layers.append(_decompressing(opener, media_type))
        yield LoadedImage(config, layers, tags)


def _decompressing(opener: Callable[[], BinaryIO], media_type: str) -> Callable[[], BinaryIO]:
    return lambda: decompressed(opener(), media_type)
