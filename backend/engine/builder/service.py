"""BuildService: builds images from a context tar (``POST /build``) and prunes the build cache.

Each build works in its own directory under ``<root>/tmp`` (the unpacked context, private overlays,
downloads), removed when the build ends however it ends; what a crashed daemon left there is removed
when the service starts (and by ``prune``). Build-cache images are the images the cache index points at;
pruning removes those that have no name and no container, and forgets the rest of the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from backend.engine.builder.cache import BuildCache
from backend.engine.builder.context import open_context, unpack_context
from backend.engine.builder.executor import BuildOptions, BuildResult, Emit, Executor, remove_tree
from backend.engine.containers.service import ContainerService
from backend.engine.errors import Conflict, NotFound
from backend.engine.images.layer_store import chain_ids
from backend.engine.images.overlay import unmount_rootfs
from backend.engine.images.service import ImageService
from backend.engine.registry.auth import Credentials, CredentialSource, StaticCredentials

if TYPE_CHECKING:
    from backend.engine.registry.client import RegistryClient


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` removed: image IDs and bytes reclaimed."""

    deleted: tuple[str, ...]
    reclaimed: int


class BuildService:
    """Builds under ``root`` (``<data-root>/builder``)."""

    def __init__(self, root: str, images: ImageService, containers: ContainerService, *,
                 registry_for: Callable[[CredentialSource], RegistryClient] | None = None) -> None:
        self.root = root
        self.tmp = os.path.join(root, "tmp")
        os.makedirs(self.tmp, mode=0o700, exist_ok=True)
        self.images = images
        self.containers = containers
        self.cache = BuildCache(os.path.join(root, "cache.json"), images.images)
        self._registry_for = registry_for
        self._active: set[str] = set()
        for name in os.listdir(self.tmp):  # what a daemon that stopped mid-build left (no build runs yet)
            _remove_leftover(os.path.join(self.tmp, name))

    async def build(self, source: BinaryIO, options: BuildOptions, emit: Emit, *,
                    credentials: Mapping[str, Credentials] | None = None) -> BuildResult:
        """Unpack the context read from ``source`` (a blocking file: read in a worker thread), build it
        with ``options``, tag the result. Pulls use ``credentials`` (registry -> credentials) when given.

        Raises ContextError/InvalidParameter (context, Dockerfile, options, a step), BuildFailed (a RUN),
        NotFound (a base image), Unavailable. Nothing of the build is left in ``tmp`` afterwards.
        """
        work = tempfile.mkdtemp(dir=self.tmp, prefix="build-")
        self._active.add(work)
        try:
            context_dir = os.path.join(work, "context")
            os.mkdir(context_dir, 0o700)
            await asyncio.to_thread(unpack_context, source, context_dir)
            context = await asyncio.to_thread(open_context, context_dir, options.dockerfile)
            async with self._images_for(credentials) as images:
                executor = Executor(images=images, containers=self.containers, cache=self.cache, tmp=work,
                                    options=options, emit=emit)
                return await executor.run(context)
        finally:
            await asyncio.shield(asyncio.to_thread(remove_tree, work))
            self._active.discard(work)

    @contextlib.asynccontextmanager
    async def _images_for(self, credentials: Mapping[str, Credentials] | None) -> AsyncIterator[ImageService]:
        if not credentials or self._registry_for is None:
            yield self.images
            return
        client = self._registry_for(StaticCredentials(credentials))
        try:
            yield self.images.with_registry(client)
        finally:
            await client.aclose()

    async def prune(self) -> PruneReport:
        """``docker builder prune``: remove the build-cache images without names or containers, forget the
        cache, remove leftovers of interrupted builds. Returns what was removed."""
        in_use = self.containers.in_use()
        sizes = {c: self.images.layers.get(c).size for c in self._chains()}
        deleted: list[str] = []
        for image_id in sorted(self.cache.image_ids()):
            with contextlib.suppress(NotFound, Conflict):  # gone with a child removed before, or has children
                if self.images.images.refs_of(image_id) or in_use(image_id):
                    continue
                report = self.images.remove(image_id, force=True, in_use=in_use)
                deleted.extend(item["Deleted"] for item in report if "Deleted" in item)
        self.cache.forget(self.cache.image_ids())
        reclaimed = sum(size for chain, size in sizes.items() if chain not in self._chains())
        for name in os.listdir(self.tmp):
            path = os.path.join(self.tmp, name)
            if path in self._active:
                continue
            await asyncio.to_thread(_remove_leftover, path)
        return PruneReport(tuple(deleted), reclaimed)


    def _chains(self) -> set[str]:
        return {c for record in self.images.images.records() for c in chain_ids(record.diff_ids)}


def _remove_leftover(path: str) -> None:
    """Unmount the private overlays below a build directory of a crashed daemon, then remove it."""
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            if name.startswith("rootfs-"):
                unmount_rootfs(os.path.join(path, name))
    remove_tree(path)
