"""Content descriptors, manifests and platform matching: the data the registry client returns.

Nothing here touches the network. :func:`parse_manifest` turns the bytes of an OCI manifest, OCI
index, Docker v2 schema 2 manifest or Docker manifest list into a :class:`Manifest` and raises
:class:`~backend.engine.registry.errors.RegistryInvalid` for anything else (schema 1 included).
:func:`select_platform` picks an index entry the way containerd's ``platforms.Only`` does.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from backend.engine.registry.errors import RegistryInvalid, RegistryNotFound

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MANIFEST_MEDIA_TYPES

MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
"""The Accept header for manifest requests, most capable type first."""

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
"""Manifests (and indexes) larger than this are refused, as containerd and Docker do."""

MAX_SIZE = 2**63 - 1
"""The largest size a descriptor may state (Go's int64, as Docker and containerd read it)."""
_SCHEMA1_FIELDS = ("fsLayers", "signatures")

_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


def is_digest(value: str) -> bool:
    """True when ``value`` is a well-formed ``sha256:<64 hex>`` or ``sha512:<128 hex>`` digest."""
    return _DIGEST_RE.match(value) is not None


def check_digest(value: str) -> str:
    """Return ``value`` if it is a supported, well-formed digest; raise RegistryInvalid otherwise."""
    if not is_digest(value):
        raise RegistryInvalid(f"invalid digest {value!r}: only sha256 and sha512 in lower-case hex are supported")
    return value


def new_hasher(digest: str) -> Any:
    """A fresh hashlib object of the algorithm ``digest`` names (checked with :func:`check_digest`)."""
    return _HASHES[check_digest(digest).partition(":")[0]]()


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """``"<algorithm>:<hex>"`` of ``data``."""
    return f"{algorithm}:{_HASHES[algorithm](data).hexdigest()}"


@dataclass(frozen=True)
class Platform:
    """An OS/architecture pair as in an index entry; ``variant`` is the CPU variant (``v8``, ``v7``)."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)


@dataclass(frozen=True)
class Descriptor:
    """A reference to content: its media type, digest and size, as in OCI's content descriptor.

    ``urls`` are where a foreign layer could be fetched from; the client never fetches them.
    ``annotations`` is read-only and does not take part in hashing.
    """

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def to_json(self) -> dict[str, Any]:
        """The descriptor as the JSON object of an OCI manifest (``mediaType``, ``digest``, ``size``...)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            platform = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                platform["variant"] = self.platform.variant
            out["platform"] = platform
        return out


@dataclass(frozen=True)
class Manifest:
    """A fetched manifest or index, with the exact bytes it was parsed from.

    Invariants: ``digest`` is the digest of ``raw`` (sha256, or the algorithm of the digest it was
    requested by); an image manifest has ``config`` and ``layers`` and no ``manifests``; an index
    (OCI index or Docker manifest list) has ``manifests`` and neither ``config`` nor ``layers``.
    """

    media_type: str
    digest: str
    raw: bytes
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]

    @property
    def is_index(self) -> bool:
        """True for an OCI index or Docker manifest list."""
        return self.media_type in INDEX_MEDIA_TYPES


def _descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise RegistryInvalid(f"invalid manifest: {where} is not an object")
    media_type = obj.get("mediaType", "")
    digest = obj.get("digest")
    size = obj.get("size")
    if not isinstance(media_type, str):
        raise RegistryInvalid(f"invalid manifest: {where}.mediaType is not a string")
    if not isinstance(digest, str) or not is_digest(digest):
        raise RegistryInvalid(f"invalid manifest: {where}.digest {digest!r} is not a valid digest")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
        raise RegistryInvalid(f"invalid manifest: {where}.size {size!r} is not an integer in 0..{MAX_SIZE}")
    urls = obj.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise RegistryInvalid(f"invalid manifest: {where}.urls is not a list of strings")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise RegistryInvalid(f"invalid manifest: {where}.annotations is not a map of strings")
    platform = None
    raw_platform = obj.get("platform")
    if raw_platform is not None:
        if not isinstance(raw_platform, dict):
            raise RegistryInvalid(f"invalid manifest: {where}.platform is not an object")
        os_name = raw_platform.get("os")
        arch = raw_platform.get("architecture")
        variant = raw_platform.get("variant") or None
        if not isinstance(os_name, str) or not isinstance(arch, str) or not isinstance(variant, str | None):
            raise RegistryInvalid(f"invalid manifest: {where}.platform needs string os and architecture")
        platform = Platform(os=os_name, architecture=arch, variant=variant)
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=platform,
        urls=tuple(urls),
        annotations=MappingProxyType(dict(annotations)),
    )


def parse_manifest(raw: bytes, digest: str, content_type: str | None = None) -> Manifest:
    """Parse manifest bytes already known to have ``digest``.

    The media type is the document's ``mediaType`` if it has one, else ``content_type`` (the response's
    Content-Type), else inferred from the shape (``manifests`` means an OCI index). Raises
    RegistryInvalid for schema 1, unknown media types, malformed or too deeply nested JSON, malformed
    descriptors, a ``mediaType`` field that contradicts a manifest Content-Type, and ambiguous documents
    (as containerd since CVE-2021-41190): an index with ``config`` or ``layers``, an image manifest with
    ``manifests``, a schema 2 document with schema 1's ``fsLayers`` or ``signatures``.
    """
    if len(raw) > MAX_MANIFEST_SIZE:
        raise RegistryInvalid(f"manifest {digest} is larger than {MAX_MANIFEST_SIZE} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RegistryInvalid(f"invalid manifest {digest}: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise RegistryInvalid(f"invalid manifest {digest}: not a JSON object")
    header_type = (content_type or "").split(";")[0].strip().lower()
    if doc.get("schemaVersion") == 1 or header_type in (DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED):
        raise RegistryInvalid(
            f"manifest {digest} is Docker image manifest schema 1, which is not supported; push it again with a "
            "current client"
        )
    if doc.get("schemaVersion") != 2:
        raise RegistryInvalid(f"invalid manifest {digest}: schemaVersion {doc.get('schemaVersion')!r} is not 2")
    doc_type = doc.get("mediaType")
    if doc_type is not None and not isinstance(doc_type, str):
        raise RegistryInvalid(f"invalid manifest {digest}: mediaType is not a string")
    if doc_type and header_type in MANIFEST_MEDIA_TYPES and doc_type != header_type:
        raise RegistryInvalid(
            f"invalid manifest {digest}: mediaType {doc_type!r} does not match Content-Type {header_type!r}"
        )
    media_type = doc_type or (header_type if header_type in MANIFEST_MEDIA_TYPES else "")
    if not media_type:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise RegistryInvalid(f"unsupported manifest media type {media_type!r} ({digest})")
    alien = [k for k in (("config", "layers") if media_type in INDEX_MEDIA_TYPES else ("manifests",)) if k in doc]
    alien += [k for k in _SCHEMA1_FIELDS if k in doc]
    if alien:
        raise RegistryInvalid(f"ambiguous manifest {digest}: a {media_type} with {' and '.join(alien)}")
    if media_type in INDEX_MEDIA_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise RegistryInvalid(f"invalid manifest {digest}: index without a manifests list")
        manifests = tuple(_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries))
        return Manifest(media_type, digest, raw, config=None, layers=(), manifests=manifests)
    layers_json = doc.get("layers")
    if not isinstance(layers_json, list):
        raise RegistryInvalid(f"invalid manifest {digest}: no layers list")
    config = _descriptor(doc.get("config"), "config")
    layers = tuple(_descriptor(e, f"layers[{i}]") for i, e in enumerate(layers_json))
    return Manifest(media_type, digest, raw, config=config, layers=layers, manifests=())


# --- platform matching, after containerd's platforms package -------------------------------------------

_OS_ALIASES = {"macos": "darwin"}


def normalize_platform(platform: Platform) -> Platform:
    """containerd's ``platforms.Normalize``: canonical OS and architecture names and variants.

    ``x86_64``/``x86-64`` become ``amd64`` (variant ``v1`` dropped), ``aarch64`` becomes ``arm64``
    (variant ``v8`` dropped), ``armhf``/``armel`` become ``arm`` ``v7``/``v6``, a bare ``arm`` is ``v7``,
    ``i386`` is ``386``.
    """
    os_name = platform.os.lower()
    os_name = _OS_ALIASES.get(os_name, os_name)
    arch = platform.architecture.lower()
    variant = (platform.variant or "").lower()
    if arch in ("i386",):
        arch, variant = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        if variant == "v1":
            variant = ""
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        elif variant.startswith("8.") or variant.startswith("9."):
            variant = "v" + variant
    elif arch == "armhf":
        arch, variant = "arm", "v7"
    elif arch == "armel":
        arch, variant = "arm", "v6"
    elif arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return Platform(os=os_name, architecture=arch, variant=variant or None)


def _platform_vector(platform: Platform) -> list[Platform]:
    """The platforms a host of ``platform`` runs, best first (containerd's ``platformVector``)."""
    vector = [platform]
    variant_number = (platform.variant or "").removeprefix("v")
    if platform.architecture == "amd64":
        if variant_number.isdigit() and int(variant_number) > 1:
            for n in range(int(variant_number) - 1, 0, -1):
                vector.append(Platform(platform.os, "amd64", None if n == 1 else f"v{n}"))
        vector.append(Platform(platform.os, "386"))
    elif platform.architecture == "arm":
        if variant_number.isdigit() and int(variant_number) > 5:
            for n in range(int(variant_number) - 1, 4, -1):
                vector.append(Platform(platform.os, "arm", f"v{n}"))
    elif platform.architecture == "arm64":
        variant = platform.variant or "v8"
        vector.extend(_platform_vector(Platform(platform.os, "arm", variant)))
    return vector


def platform_rank(host: Platform, candidate: Platform) -> int | None:
    """Position of ``candidate`` in what ``host`` runs (0 is a native match), or None if it cannot run."""
    wanted = normalize_platform(candidate)
    for rank, ok in enumerate(_platform_vector(normalize_platform(host))):
        if ok == wanted:
            return rank
    return None


def select_platform(index: Manifest, platform: Platform) -> Descriptor:
    """The index entry a host of ``platform`` should run, like containerd's ``platforms.Only``.

    Entries whose platform matches natively win over compatible ones (arm64 runs arm v8..v5, amd64 v3
    runs v2, v1 and 386); ties go to the earlier entry. Entries without a platform are taken only when
    nothing matches. Entries that are not manifests or indexes are skipped. Raises RegistryInvalid if
    ``index`` is not an index and RegistryNotFound (``"no matching manifest for linux/arm64 in the
    manifest list entries"``) when nothing fits.
    """
    if not index.is_index:
        raise RegistryInvalid(f"{index.digest} is a {index.media_type}, not an index or manifest list")
    best: tuple[int, Descriptor] | None = None
    fallback: Descriptor | None = None
    for entry in index.manifests:
        if entry.media_type and entry.media_type not in MANIFEST_MEDIA_TYPES:
            continue
        if entry.platform is None:
            fallback = fallback or entry
            continue
        rank = platform_rank(platform, entry.platform)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, entry)
    if best is not None:
        return best[1]
    if fallback is not None:
        return fallback
    raise RegistryNotFound(f"no matching manifest for {platform} in the manifest list entries")


def platforms_of(index: Manifest) -> Sequence[Platform]:
    """The platforms an index offers, in its order (entries without one are left out)."""
    return [m.platform for m in index.manifests if m.platform is not None]
