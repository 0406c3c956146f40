"""The image service: pull, push, tag, remove, list and inspect images, and give containers a root.

It composes the content store (blobs), the layer store (unpacked layers), the image store (records
and tags) and a registry client. Everything it reports goes through ``progress`` callbacks as
``Progress`` events, which the API layer turns into Docker's JSON progress messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime
import fnmatch
import itertools
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from backend.engine.errors import Conflict, InvalidParameter, NotFound
from backend.engine.images.archive import LoadedImage, SavedImage, decompressed, read_archive, write_archive
from backend.engine.images.changes import apply_changes
from backend.engine.images.commit import EMPTY_LAYER_DIFF_ID, child_config, write_diff
from backend.engine.images.content_store import BlobWriter, ContentStore
from backend.engine.images.image_store import ImageRecord, ImageStore
from backend.engine.images.layer_store import LayerStore, chain_ids
from backend.engine.images.layers import apply_layer, detect_compression
from backend.engine.images.reference import Reference, is_full_image_id, parse_reference
from backend.engine.registry.manifest import Descriptor, Manifest, Platform

if TYPE_CHECKING:
    from backend.engine.registry.client import RegistryClient, SearchResult

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
LAYER_TYPES = (
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
)
MAX_CONFIG = 8 * 1024 * 1024
PROGRESS_INTERVAL = 0.1
"""Seconds between two "Downloading" messages of one layer."""


@dataclass(frozen=True)
class Progress:
    """One progress event: a status line, optionally for a layer (``id``) with byte counts."""

    status: str
    id: str | None = None
    current: int | None = None
    total: int | None = None


ProgressFn = Callable[[Progress], None]


def _ignore(_: Progress) -> None:
    return None


def host_platform() -> Platform:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    return Platform("linux", arch, "v8" if arch == "arm64" else None)


def parse_config(data: bytes) -> dict[str, Any]:
    """Decode and sanity-check an image config. Raises InvalidParameter."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidParameter(f"image config is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidParameter("image config is not a JSON object")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise InvalidParameter("image config has no rootfs.diff_ids")
    for d in rootfs["diff_ids"]:
        if not isinstance(d, str) or not d.startswith("sha256:") or len(d) != 71:
            raise InvalidParameter(f"image config has an invalid diff ID {d!r}")
    return doc


@dataclass(frozen=True)
class ImageSummary:
    """One row of ``docker images``."""

    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    created: int
    size: int
    labels: dict[str, str]


@dataclass(frozen=True)
class HistoryEntry:
    """One row of ``docker history``."""

    id: str
    created: int
    created_by: str
    size: int
    comment: str
    tags: list[str]


def _unix_time(text: str) -> int:
    if not text:
        return 0
    try:
        cleaned = text.replace("Z", "+00:00")
        if "." in cleaned:  # Go writes nanoseconds; Python parses at most microseconds
            head, _, tail = cleaned.partition(".")
            digits = "".join(itertools.takewhile(str.isdigit, tail))
            cleaned = f"{head}.{digits[:6]}{tail[len(digits):]}"
        return int(datetime.datetime.fromisoformat(cleaned).timestamp())
    except ValueError:
        return 0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _familiar_digest(repo_digest: str) -> str:
    name, _, digest = repo_digest.partition("@")
    try:
        return f"{parse_reference(name).familiar_name}@{digest}"
    except InvalidParameter:
        return repo_digest


def _label_matches(labels: Mapping[str, str], expr: str) -> bool:
    key, sep, value = expr.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _last_comment(config: Mapping[str, Any]) -> str:
    history = config.get("history") or []
    if history and isinstance(history[-1], dict):
        return str(history[-1].get("comment", ""))
    return ""


def _config_type(layers: list[Descriptor]) -> str:
    if all(d.media_type.startswith("application/vnd.docker.") for d in layers):
        return "application/vnd.docker.container.image.v1+json"
    return "application/vnd.oci.image.config.v1+json"


class ImageService:
    """Images under ``root`` (``<data-root>/image``)."""

    def __init__(self, root: str, registry: RegistryClient | Callable[[], RegistryClient]) -> None:
        """``registry``: the client for pulls, pushes and searches, or a function making it on first use
        (berthd passes one, so an engine that never talks to a registry never loads the HTTP client)."""
        self.root = root
        self.content = ContentStore(os.path.join(root, "content"))
        self.layers = LayerStore(os.path.join(root, "overlay"))
        self.images = ImageStore(os.path.join(root, "meta"))
        self._registry = registry
        self._lock = asyncio.Lock()

    @property
    def registry(self) -> RegistryClient:
        if callable(self._registry):
            self._registry = self._registry()
        return self._registry

    def with_registry(self, registry: RegistryClient) -> ImageService:
        """A view of this service sharing every store and lock, talking to registries through ``registry``
        (a client with one request's credentials)."""
        scoped = copy.copy(self)
        scoped._registry = registry
        return scoped

    def recover(self) -> None:
        """Finish what a crash interrupted (call once at start-up)."""
        self.content.recover()
        self.layers.recover()

    # -- lookup ------------------------------------------------------------------------------------

    def resolve(self, name: str) -> ImageRecord:
        """An image by reference, full or short ID. Raises NotFound ("No such image: x"), InvalidParameter
        (Docker's "invalid reference format..." for a name that is neither an ID nor a reference, as dockerd)."""
        if is_full_image_id(name):
            image_id = name if name.startswith("sha256:") else "sha256:" + name
            return self.images.get(image_id)
        ref = parse_reference(name).with_default_tag()
        if str(ref) in self.images.tags:
            return self.images.get(self.images.tags[str(ref)])
        prefix = name.removeprefix("sha256:")
        if len(prefix) >= 4 and all(c in "0123456789abcdef" for c in prefix):
            matches = [i for i in self.images.ids() if i[7:].startswith(prefix)]
            if len(matches) == 1:
                return self.images.get(matches[0])
            if len(matches) > 1:
                raise InvalidParameter(f"image ID prefix {name} is ambiguous")
        raise NotFound(f"No such image: {name}")

    def config(self, record: ImageRecord) -> dict[str, Any]:
        """The image's config document. Raises InvalidParameter if the blob is corrupt."""
        return parse_config(self.content.read(record.id, MAX_CONFIG))

    # -- pull --------------------------------------------------------------------------------------

    async def _fetch_small(self, ref: Reference, desc: Descriptor) -> bytes:
        """A config blob, fetched (and kept) only when its descriptor is within MAX_CONFIG. Raises InvalidParameter."""
        if desc.size > MAX_CONFIG:
            raise InvalidParameter(f"image config {desc.digest} is larger than {MAX_CONFIG} bytes ({desc.size})")

        async def fetch(writer: BlobWriter) -> None:
            await self.registry.fetch_blob(ref.domain, ref.path, desc, writer.write)
        await self.content.ensure(desc.digest, desc.size, fetch)
        return self.content.read(desc.digest, MAX_CONFIG)

    async def _resolve_manifest(self, ref: Reference, platform: Platform) -> Manifest:
        manifest = await self.registry.get_manifest(ref.domain, ref.path, ref.digest or ref.tag or "latest")
        if manifest.manifests:
            chosen = self.registry.select_platform(manifest, platform)
            manifest = await self.registry.get_manifest(ref.domain, ref.path, chosen.digest)
        if manifest.media_type not in MANIFEST_TYPES:
            raise InvalidParameter(f"unsupported manifest type {manifest.media_type}")
        if manifest.config is None or not manifest.layers:
            raise InvalidParameter("manifest has no config or no layers")
        for layer in manifest.layers:
            if layer.media_type not in LAYER_TYPES:
                raise InvalidParameter(f"unsupported layer type {layer.media_type}")
        return manifest

    async def pull(self, name: str, *, platform: Platform | None = None,
                   progress: ProgressFn = _ignore) -> ImageRecord:
        """Pull ``name`` (a reference; tag ``latest`` when none) and tag it. Returns the image.

        Raises InvalidParameter (bad reference, manifest, config or layer), NotFound (unknown image),
        Forbidden (auth), Unavailable (registry down). A failed pull leaves the stores as they were,
        apart from complete, verified blobs and layers that a retry will reuse.
        """
        ref = parse_reference(name, for_pull=True).with_default_tag()
        progress(Progress(f"Pulling from {ref.path}", ref.tag or ref.digest))
        manifest = await self._resolve_manifest(ref, platform or host_platform())
        assert manifest.config is not None
        config = parse_config(await self._fetch_small(ref, manifest.config))
        diff_ids: list[str] = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest.layers):
            raise InvalidParameter(
                f"image config has {len(diff_ids)} diff IDs but the manifest has {len(manifest.layers)} layers")
        chains = chain_ids(diff_ids)
        fresh = False
        await asyncio.gather(*(
            self._pull_layer(ref, desc, diff_ids[i], chains[i], chains[i - 1] if i else None, progress)
            for i, desc in enumerate(manifest.layers)
        ))
        if not self.content.has(manifest.digest):
            self.content.put(manifest.raw, manifest.digest)
        async with self._lock:
            try:
                record = self.images.get(manifest.config.digest)
            except NotFound:
                fresh = True
                record = ImageRecord(
                    id=manifest.config.digest, diff_ids=diff_ids,
                    size=sum(self.layers.get(c).size for c in chains),
                    created=str(config.get("created", "")), manifest_digest=manifest.digest,
                    layer_blobs=[d.digest for d in manifest.layers],
                    layer_media_types=[d.media_type for d in manifest.layers])
            repo_digest = f"{ref.repository}@{manifest.digest}"
            if repo_digest not in record.repo_digests:
                record.repo_digests.append(repo_digest)
            self.images.save(record)
            previous = self.images.tag(str(ref), record.id) if ref.tag else None
        progress(Progress(f"Digest: {manifest.digest}"))
        state = "Downloaded newer image" if fresh or previous else "Image is up to date"
        progress(Progress(f"Status: {state} for {ref.familiar()}"))
        return record

    async def _pull_layer(self, ref: Reference, desc: Descriptor, diff_id: str, chain: str,
                          parent: str | None, progress: ProgressFn) -> None:
        short = desc.digest[7:19]
        if self.layers.has(chain):
            progress(Progress("Already exists", short))
            return
        progress(Progress("Pulling fs layer", short))

        last = 0.0

        def downloaded(current: int, total: int) -> None:
            # At most one message per PROGRESS_INTERVAL and layer, and the last one (as dockerd's progress reader):
            # one per received chunk made the stream and the client's rendering cost more than the download.
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL or current == total:
                last = now
                progress(Progress("Downloading", short, current, total))

        async def fetch(writer: BlobWriter) -> None:
            await self.registry.fetch_blob(ref.domain, ref.path, desc, writer.write, progress=downloaded)

        await self.content.ensure(desc.digest, desc.size, fetch)
        progress(Progress("Download complete", short))

        def unpack(target: str) -> int:
            with self.content.open(desc.digest) as blob:
                return apply_layer(blob, target, expected_diff_id=diff_id).size

        progress(Progress("Extracting", short))
        await asyncio.to_thread(self.layers.create, chain, diff_id, parent, unpack)
        progress(Progress("Pull complete", short))

    # -- push --------------------------------------------------------------------------------------

    async def push(self, name: str, *, progress: ProgressFn = _ignore) -> str:
        """Push the local image named ``name`` (tag ``latest`` when none); returns the manifest digest.

        Layers the registry has are not sent again. An image pulled from a registry is pushed with its
        original manifest, so its digest is unchanged. Raises NotFound when no local image has that
        name, plus the registry's error kinds.
        """
        ref = parse_reference(name).with_default_tag()
        if ref.tag is None:
            raise InvalidParameter("push needs a tag, not a digest")
        image_id = self.images.tags.get(str(ref))
        if image_id is None:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        record = self.images.get(image_id)
        if record.corrupt:
            raise InvalidParameter(f"image {record.id} is corrupt: {record.corrupt}")
        progress(Progress(f"The push refers to repository [{ref.repository}]"))
        layers = [Descriptor(media_type=mt, digest=d, size=self.content.size(d))
                  for d, mt in zip(record.layer_blobs, record.layer_media_types, strict=True)]
        config = Descriptor(media_type=_config_type(layers), digest=record.id, size=self.content.size(record.id))

        async def push_one(desc: Descriptor) -> None:
            short = desc.digest[7:19]
            if await self.registry.blob_exists(ref.domain, ref.path, desc.digest) is not None:
                progress(Progress("Layer already exists", short))
                return
            progress(Progress("Preparing", short))

            def pushed(current: int, total: int) -> None:
                progress(Progress("Pushing", short, current, total))

            await self.registry.push_blob(ref.domain, ref.path, desc, self.content.blob_path(desc.digest),
                                          progress=pushed)
            progress(Progress("Pushed", short))

        await asyncio.gather(*(push_one(d) for d in reversed(layers)))
        await push_one(config)
        raw, media_type = self._manifest_for(record, config, layers)
        digest = await self.registry.put_manifest(ref.domain, ref.path, ref.tag, media_type, raw)
        async with self._lock:
            repo_digest = f"{ref.repository}@{digest}"
            if repo_digest not in record.repo_digests:
                record.repo_digests.append(repo_digest)
                self.images.save(record)
        progress(Progress(f"{ref.tag}: digest: {digest} size: {len(raw)}"))
        return digest

    def _manifest_for(self, record: ImageRecord, config: Descriptor, layers: list[Descriptor]) -> tuple[bytes, str]:
        """The image's original manifest when it still describes these blobs, else a new one."""
        if record.manifest_digest and self.content.has(record.manifest_digest):
            raw = self.content.read(record.manifest_digest)
            doc = json.loads(raw)
            if [layer.get("digest") for layer in doc.get("layers", [])] == record.layer_blobs:
                return raw, str(doc.get("mediaType") or "application/vnd.oci.image.manifest.v1+json")
        docker = all(mt.startswith("application/vnd.docker.") for mt in record.layer_media_types)
        media_type = ("application/vnd.docker.distribution.manifest.v2+json" if docker
                      else "application/vnd.oci.image.manifest.v1+json")
        doc = {
            "schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size} for d in layers],
        }
        raw = json.dumps(doc, indent=3).encode()
        self.content.put(raw)
        return raw, media_type

    # -- tags and removal --------------------------------------------------------------------------

    def tag(self, source: str, target: str) -> None:
        """Give the image ``source`` the name ``target``. Raises NotFound / InvalidParameter."""
        record = self.resolve(source)
        ref = parse_reference(target).with_default_tag()
        if ref.digest is not None:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        self.images.tag(str(ref), record.id)

    def remove(self, name: str, *, force: bool = False, prune_parents: bool = True,
               in_use: Callable[[str], bool] = lambda _: False) -> list[dict[str, str]]:
        """``docker rmi`` with dockerd's rules. By name: untag it, and when that was the image's last name
        delete the image too, unless images were built on it (it stays, unnamed, as their parent). By ID:
        untag every name and delete the image. After a deletion, with ``prune_parents`` (dockerd's default,
        ``--no-prune`` turns it off), each parent in turn is deleted while it has no name, no other child and
        no container (``in_use``). Returns Docker's report: ``{"Untagged": name}`` items, then one
        ``{"Deleted": id}`` per deleted image.

        Raises NotFound, or Conflict when the image is used by a container or, addressed by ID, has several
        names (both unless ``force``), or is addressed by ID and has child images (even with ``force``).
        """
        record = self.resolve(name)
        refs = self.images.refs_of(record.id)
        try:
            named: str | None = str(parse_reference(name).with_default_tag())
        except InvalidParameter:
            named = None
        if named is not None and named in refs and len(refs) > 1:
            self.images.untag(named)
            return [{"Untagged": parse_reference(named).familiar()}]
        has_children = bool(self.images.children(record.id))
        if named is None or named not in refs:
            if len(refs) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {record.id[7:19]} (must be forced) - "
                               "image is referenced in multiple repositories")
            if has_children:
                raise Conflict(f"conflict: unable to delete {record.id[7:19]} (cannot be forced) - "
                               "image has dependent child images")
        if in_use(record.id) and not force:
            raise Conflict(f"conflict: unable to delete {record.id[7:19]} (cannot be forced) - "
                           "image is being used by a container")
        report: list[dict[str, str]] = []
        for ref in refs:
            self.images.untag(ref)
            report.append({"Untagged": parse_reference(ref).familiar()})
        if has_children:
            return report  # its last name is gone; it stays as the parent of its children
        self._delete_image(record)
        report.append({"Deleted": record.id})
        parent = record.parent
        while prune_parents and parent:
            try:
                record = self.images.get(parent)
            except NotFound:
                break
            if self.images.refs_of(record.id) or self.images.children(record.id) or in_use(record.id):
                break
            self._delete_image(record)
            report.append({"Deleted": record.id})
            parent = record.parent
        return report

    def _delete_image(self, record: ImageRecord) -> None:
        self.images.delete(record.id)
        keep: set[str] = set()
        for other in self.images.records():
            keep.update(chain_ids(other.diff_ids))
        for chain in chain_ids(record.diff_ids):
            if chain not in keep:
                self.layers.remove(chain)
        self.content.delete(record.id)

    def list_images(self, filters: Mapping[str, Sequence[str]] | None = None,
                    include_all: bool = True) -> list[ImageSummary]:
        """``docker images``: summaries newest first, filtered as Docker filters them (``dangling``,
        ``reference``, ``label``, ``before``, ``since``). Raises InvalidParameter for an unknown filter."""
        filters = dict(filters or {})
        unknown = set(filters) - {"dangling", "reference", "label", "before", "since"}
        if unknown:
            raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
        dangling = {v.lower() for v in filters.get("dangling", [])}
        if dangling - {"true", "false", "1", "0"}:
            raise InvalidParameter(f"invalid filter 'dangling={sorted(dangling)[0]}'")
        before = [self._created(self.resolve(n)) for n in filters.get("before", [])]
        since = [self._created(self.resolve(n)) for n in filters.get("since", [])]
        out = []
        records = self.images.records()
        parents = {r.parent for r in records}
        for record in records:
            summary = self._summary(record)
            tags = summary.repo_tags
            if not include_all and not tags and record.id in parents:
                continue  # an intermediate image (a build step's), shown with --all as dockerd does
            if dangling and ((tags and dangling & {"true", "1"}) or (not tags and dangling & {"false", "0"})):
                continue
            if "reference" in filters:
                tags = [t for t in tags if any(
                    fnmatch.fnmatchcase(t, pattern) or fnmatch.fnmatchcase(t.rsplit(":", 1)[0], pattern)
                    for pattern in filters["reference"])]
                if not tags:
                    continue
                summary = dataclasses.replace(summary, repo_tags=tags)
            if "label" in filters and not all(_label_matches(summary.labels, f) for f in filters["label"]):
                continue
            if any(summary.created >= b for b in before) or any(summary.created <= s for s in since):
                continue
            out.append(summary)
        return sorted(out, key=lambda s: s.created, reverse=True)

    def _created(self, record: ImageRecord) -> int:
        return _unix_time(record.created)

    def _summary(self, record: ImageRecord) -> ImageSummary:
        labels: dict[str, str] = {}
        if not record.corrupt:
            try:
                labels = dict((self.config(record).get("config") or {}).get("Labels") or {})
            except (InvalidParameter, NotFound):
                pass
        return ImageSummary(
            id=record.id, repo_tags=[parse_reference(r).familiar() for r in self.images.refs_of(record.id)],
            repo_digests=[_familiar_digest(d) for d in record.repo_digests],
            created=_unix_time(record.created), size=record.size, labels=labels,
        )

    def inspect(self, name: str) -> dict[str, Any]:
        """``docker image inspect``: Docker's document for the image. Raises NotFound / InvalidParameter."""
        record = self.resolve(name)
        if record.corrupt:
            raise InvalidParameter(f"image {record.id} is corrupt: {record.corrupt}")
        config = self.config(record)
        summary = self._summary(record)
        chains = chain_ids(record.diff_ids)
        return {
            "Id": record.id, "RepoTags": summary.repo_tags, "RepoDigests": summary.repo_digests,
            "Parent": record.parent, "Comment": _last_comment(config), "Created": record.created,
            "Container": config.get("container", ""), "ContainerConfig": config.get("container_config") or {},
            "DockerVersion": config.get("docker_version", ""), "Author": config.get("author", ""),
            "Config": config.get("config") or {}, "Architecture": config.get("architecture", ""),
            "Variant": config.get("variant"), "Os": config.get("os", ""),
            "Size": record.size, "VirtualSize": record.size,
            "GraphDriver": {"Name": "overlay2", "Data": {
                "LowerDir": ":".join(self.layers.diff_path(c) for c in reversed(chains[:-1])) or None,
                "UpperDir": self.layers.diff_path(chains[-1]) if chains else None}},
            "RootFS": {"Type": "layers", "Layers": list(record.diff_ids)},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }

    def history(self, name: str) -> list[HistoryEntry]:
        """``docker history``: newest first; the top entry carries the image ID and tags."""
        record = self.resolve(name)
        config = self.config(record)
        sizes = [self.layers.get(c).size for c in chain_ids(record.diff_ids)]
        entries: list[HistoryEntry] = []
        layer = 0
        for item in config.get("history") or []:
            if not isinstance(item, dict):
                continue
            size = 0
            if not item.get("empty_layer") and layer < len(sizes):
                size = sizes[layer]
                layer += 1
            entries.append(HistoryEntry("<missing>", _unix_time(str(item.get("created", ""))),
                                        str(item.get("created_by", "")), size, str(item.get("comment", "")), []))
        if not entries:
            entries = [HistoryEntry("<missing>", _unix_time(record.created), "", s, "", []) for s in sizes]
        entries.reverse()
        entries[0] = dataclasses.replace(entries[0], id=record.id,
                                         tags=[parse_reference(r).familiar() for r in self.images.refs_of(record.id)])
        return entries

    # -- search ------------------------------------------------------------------------------------

    async def search(self, term: str, *, limit: int = 25,
                     filters: Mapping[str, Sequence[str]] | None = None) -> list[SearchResult]:
        """``docker search``: results of the registry's search, filtered by ``is-official``,
        ``is-automated`` and ``stars`` (minimum) as Docker filters them. Raises InvalidParameter for an
        unknown filter or value."""
        filters = dict(filters or {})
        unknown = set(filters) - {"is-official", "is-automated", "stars"}
        if unknown:
            raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")

        def flag(name: str) -> bool | None:
            values = {v.lower() for v in filters.get(name, [])}
            if not values:
                return None
            if values - {"true", "false", "1", "0"} or len(values) > 1:
                raise InvalidParameter(f"invalid filter '{name}={sorted(values)[0]}'")
            return values <= {"true", "1"}

        official, automated = flag("is-official"), flag("is-automated")
        try:
            min_stars = max((int(v) for v in filters.get("stars", [])), default=0)
        except ValueError as exc:
            raise InvalidParameter(f"invalid filter 'stars={filters['stars'][0]}'") from exc
        results = await self.registry.search(term, limit)
        return [r for r in results
                if (official is None or r.is_official == official)
                and (automated is None or r.is_automated == automated)
                and r.star_count >= min_stars]

    # -- commit ------------------------------------------------------------------------------------

    async def commit(self, parent: ImageRecord | None, upper: str | None, *, config: Mapping[str, Any],
                     created_by: str = "", comment: str = "", author: str = "", container_id: str = "",
                     container: Mapping[str, Any] | None = None, reference: Reference | None = None) -> ImageRecord:
        """A child image of ``parent`` (None: from scratch) whose new layer holds the changes in the overlay
        upper directory ``upper`` (see ``images.commit``), with ``config`` as its container config and one
        history entry; tagged ``reference`` when given. An empty diff, or ``upper`` None, adds no layer (the
        history entry says ``empty_layer``), as dockerd does. The layer tar is kept uncompressed as a blob
        (its digest is the diff ID) for push and save, and unpacked into the layer store.

        Raises InvalidParameter for a corrupt parent, Unavailable when the upper directory cannot be read.
        """
        if parent is not None and parent.corrupt:
            raise InvalidParameter(f"image {parent.id} is corrupt: {parent.corrupt}")
        if parent is None:
            platform = host_platform()
            parent_config: dict[str, Any] = {"architecture": platform.architecture, "os": platform.os}
        else:
            parent_config = self.config(parent)
        diff_ids = list(parent.diff_ids) if parent else []
        diff_id = await asyncio.to_thread(self._commit_layer, diff_ids, upper) if upper is not None else None
        created = _now()
        doc = child_config(parent_config, config=config, diff_id=diff_id, created=created, created_by=created_by,
                           comment=comment, author=author, container_id=container_id, container=container)
        image_id = self.content.put(json.dumps(doc).encode())
        blobs, media_types = (list(parent.layer_blobs), list(parent.layer_media_types)) if parent else ([], [])
        if diff_id is not None:
            diff_ids.append(diff_id)
            docker = bool(media_types) and all(m.startswith("application/vnd.docker.") for m in media_types)
            blobs.append(diff_id)
            media_types.append("application/vnd.docker.image.rootfs.diff.tar" if docker
                               else "application/vnd.oci.image.layer.v1.tar")
        record = ImageRecord(id=image_id, diff_ids=diff_ids, created=created, layer_blobs=blobs,
                             layer_media_types=media_types,
                             size=sum(self.layers.get(c).size for c in chain_ids(diff_ids)),
                             parent=parent.id if parent else "")
        async with self._lock:
            self.images.save(record)
            if reference is not None:
                self.images.tag(str(reference), record.id)
        return record

    def _commit_layer(self, parent_diff_ids: list[str], upper: str) -> str | None:
        """Write the diff of ``upper`` as a blob and unpack it into the layer store on top of the chain of
        ``parent_diff_ids``. Returns its diff ID, or None for an empty diff (nothing is stored then)."""
        writer = self.content.writer()
        try:
            diff = write_diff(upper, writer.write)
            if diff.diff_id == EMPTY_LAYER_DIFF_ID:
                writer.abort()
                return None
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        chains = chain_ids([*parent_diff_ids, diff.diff_id])

        def unpack(target: str) -> int:
            with self.content.open(diff.diff_id) as blob:
                return apply_layer(blob, target, expected_diff_id=diff.diff_id).size

        self.layers.create(chains[-1], diff.diff_id, chains[-2] if len(chains) > 1 else None, unpack)
        return diff.diff_id

    # -- import and prune --------------------------------------------------------------------------

    async def import_rootfs(self, source: BinaryIO, *, reference: str | None = None, changes: Sequence[str] = (),
                            message: str = "", platform: Platform | None = None) -> ImageRecord:
        """``docker import``: one layer from a root filesystem tar (plain, gzip or zstd), with ``changes``
        applied to the config; an empty stream is an empty tar (dockerd's empty layer). Raises
        InvalidParameter for a bad tar, change or reference."""
        target = parse_reference(reference).with_default_tag() if reference else None
        container_config = apply_changes({}, list(changes))
        platform = platform or host_platform()
        spool_dir = os.path.join(self.root, "tmp")
        os.makedirs(spool_dir, mode=0o700, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=spool_dir) as work:
            # Keep the bytes as they came (they become the layer blob, for push and save), then unpack.
            spooled = os.path.join(work, "layer")
            with open(spooled, "wb") as out:
                await asyncio.to_thread(shutil.copyfileobj, source, out, 1 << 20)
                if not out.tell():  # nothing at all: an empty tar, as dockerd makes of it (EMPTY_LAYER_DIFF_ID)
                    out.write(b"\0" * 1024)
            probe = os.path.join(work, "probe")
            os.mkdir(probe)
            with open(spooled, "rb") as layer:
                applied = await asyncio.to_thread(apply_layer, layer, probe)
                layer.seek(0)
                compression = detect_compression(layer.read(512))
            diff_id = applied.diff_id
            created = _now()
            config = {
                "architecture": platform.architecture, "os": platform.os, "created": created,
                "config": container_config,
                "history": [{"created": created, "created_by": "", "comment": message or "Imported from -"}],
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
            image_id = self.content.put(json.dumps(config).encode())
            if not self.content.has(applied.compressed_digest):
                with open(spooled, "rb") as layer:
                    writer = self.content.writer(applied.compressed_digest)
                    try:
                        while chunk := layer.read(1 << 20):
                            writer.write(chunk)
                        writer.commit()
                    except BaseException:
                        writer.abort()
                        raise

            def unpack(target_dir: str) -> int:
                os.rmdir(target_dir)
                os.rename(probe, target_dir)
                return applied.size

            await asyncio.to_thread(self.layers.create, diff_id, diff_id, None, unpack)
        media_type = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}.get(
                          compression, "application/vnd.oci.image.layer.v1.tar")
        record = ImageRecord(id=image_id, diff_ids=[diff_id], size=applied.size, created=created,
                             layer_blobs=[applied.compressed_digest], layer_media_types=[media_type])
        async with self._lock:
            self.images.save(record)
            if target is not None:
                self.images.tag(str(target), record.id)
        return record

    def prune(self, *, dangling_only: bool = True, in_use: Callable[[str], bool] = lambda _: False
              ) -> tuple[list[dict[str, str]], int]:
        """``docker image prune`` as dockerd prunes: the dangling images (no name and no child, so the
        intermediate images of builds, which have children, are kept as build cache) or, with
        ``dangling_only=False``, every image without a container except intermediate ones. Each goes as
        ``docker rmi`` removes it (name by name), so its unused unnamed parents go too and the parents of
        kept images stay. Then blobs no image needs are deleted. Returns Docker's report and the bytes
        reclaimed (layers and blobs)."""
        records = self.images.records()
        parents = {record.parent for record in records}
        layer_sizes: dict[str, int] = {}
        for record in records:
            for chain in chain_ids(record.diff_ids):
                with contextlib.suppress(NotFound, InvalidParameter):
                    layer_sizes[chain] = self.layers.get(chain).size
        blob_sizes = {digest: self.content.size(digest) for digest in self.content.digests()}
        report: list[dict[str, str]] = []
        for record in records:
            refs = self.images.refs_of(record.id)
            if in_use(record.id) or (dangling_only and refs) or (not refs and record.id in parents):
                continue
            for name in refs or [record.id]:
                report.extend(self.remove(name, in_use=in_use))
        remaining = self.images.records()
        kept_chains = {chain for record in remaining for chain in chain_ids(record.diff_ids)}
        reclaimed = sum(size for chain, size in layer_sizes.items() if chain not in kept_chains)
        needed: set[str] = set()
        for record in remaining:
            needed.add(record.id)
            needed.update(record.layer_blobs)
            if record.manifest_digest:
                needed.add(record.manifest_digest)
        for digest in list(self.content.digests()):
            if digest not in needed:
                self.content.delete(digest)
        remaining_blobs = set(self.content.digests())
        reclaimed += sum(size for digest, size in blob_sizes.items() if digest not in remaining_blobs)
        return report, reclaimed

    # -- save and load -----------------------------------------------------------------------------

    def _layer_opener(self, record: ImageRecord, index: int) -> Callable[[], BinaryIO]:
        blob = record.layer_blobs[index]
        media_type = record.layer_media_types[index]
        return lambda: decompressed(self.content.open(blob), media_type)

    def save(self, names: list[str], out: IO[bytes]) -> None:
        """``docker save``: write the named images (references or IDs) to ``out``. Raises NotFound."""
        saved: dict[str, SavedImage] = {}
        for name in names:
            record = self.resolve(name)
            if record.corrupt:
                raise InvalidParameter(f"image {record.id} is corrupt: {record.corrupt}")
            try:
                named = parse_reference(name)
            except InvalidParameter:
                named = None
            tags = []
            if named is not None and not is_full_image_id(name):
                full = named.with_default_tag()
                if str(full) in self.images.tags:
                    tags = [full.familiar()]
            chains = chain_ids(record.diff_ids)
            previous = saved.get(record.id)
            saved[record.id] = SavedImage(
                config=self.content.read(record.id, MAX_CONFIG),
                layers=[(d, self.layers.get(chains[i]).size, self._layer_opener(record, i))
                        for i, d in enumerate(record.diff_ids)],
                repo_tags=(previous.repo_tags if previous else []) + tags,
            )
        write_archive(out, list(saved.values()))

    async def load(self, source: BinaryIO, progress: ProgressFn = _ignore) -> list[ImageRecord]:
        """``docker load``: read a save archive (Docker or OCI layout) from ``source``.

        Raises InvalidParameter for a malformed archive, config or layer; images loaded before the
        bad one stay loaded, nothing of the bad one is left but verified blobs.
        """
        spool_dir = os.path.join(self.root, "tmp")
        os.makedirs(spool_dir, mode=0o700, exist_ok=True)
        with tempfile.TemporaryFile(dir=spool_dir) as spool:
            await asyncio.to_thread(shutil.copyfileobj, source, spool, 1 << 20)
            spool.seek(0)
            try:
                tar = tarfile.open(fileobj=spool, mode="r:")  # noqa: SIM115 - closed by the with below
            except tarfile.TarError as exc:
                raise InvalidParameter(f"not a tar archive: {exc}") from exc
            with tar:
                try:
                    return await self._load_all(tar, progress)
                except (tarfile.TarError, EOFError) as exc:
                    raise InvalidParameter(f"the image archive is truncated or corrupt: {exc}") from exc

    async def _load_all(self, tar: tarfile.TarFile, progress: ProgressFn) -> list[ImageRecord]:
        loaded = []
        for image in read_archive(tar):
            loaded.append(await asyncio.to_thread(self._load_one, image))
            record = loaded[-1]
            for name in image.repo_tags:
                progress(Progress(f"Loaded image: {name}"))
            if not image.repo_tags:
                progress(Progress(f"Loaded image ID: {record.id}"))
        return loaded

    def _load_one(self, image: LoadedImage) -> ImageRecord:
        config = parse_config(image.config)
        diff_ids: list[str] = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(image.layers):
            raise InvalidParameter(
                f"image config has {len(diff_ids)} diff IDs but the archive has {len(image.layers)} layers")
        tags = [parse_reference(t).with_default_tag() for t in image.repo_tags]
        image_id = self.content.put(image.config)
        chains = chain_ids(diff_ids)
        blobs: list[str] = []
        media_types: list[str] = []
        for i, opener in enumerate(image.layers):
            def unpack(target: str, opener: Callable[[], BinaryIO] = opener, diff_id: str = diff_ids[i]) -> int:
                with opener() as stream:
                    return apply_layer(stream, target, expected_diff_id=diff_id).size
            self.layers.create(chains[i], diff_ids[i], chains[i - 1] if i else None, unpack)
            blob, media_type = self._store_plain_layer(opener, diff_ids[i])
            blobs.append(blob)
            media_types.append(media_type)
        try:
            record = self.images.get(image_id)
        except NotFound:
            record = ImageRecord(id=image_id, diff_ids=diff_ids,
                                 size=sum(self.layers.get(c).size for c in chains),
                                 created=str(config.get("created", "")),
                                 layer_blobs=blobs, layer_media_types=media_types)
        self.images.save(record)
        for ref in tags:
            self.images.tag(str(ref), image_id)
        return record

    def _store_plain_layer(self, opener: Callable[[], BinaryIO], diff_id: str) -> tuple[str, str]:
        """Keep the uncompressed layer tar as a blob (its digest is the diff ID), for push and save."""
        if not self.content.has(diff_id):
            writer = self.content.writer(diff_id)
            try:
                with opener() as stream:
                    while chunk := stream.read(1 << 20):
                        writer.write(chunk)
                writer.commit()
            except BaseException:
                writer.abort()
                raise
        return diff_id, "application/vnd.oci.image.layer.v1.tar"
