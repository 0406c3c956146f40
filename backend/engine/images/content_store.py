"""Content-addressed blob store: ``<root>/blobs/sha256/<hex>``.

Guarantees:
- a blob appears under its digest only complete and verified: it is written to ``<root>/ingest/`` (same
  filesystem), hashed while it streams, fsynced and renamed into place; a digest mismatch or a size
  overrun aborts the write and removes the partial file;
- concurrent ``ensure`` calls for the same digest share one fetch (in this process);
- deletion renames the blob into ``<root>/trash/`` and then unlinks it; ``recover()`` (run at start-up)
  finishes interrupted deletions and drops stale ingest files, so a crash never leaves a half blob
  visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import BinaryIO

from backend.engine.errors import InvalidParameter, NotFound

_DIGEST = re.compile(r"^sha256:([a-f0-9]{64})$")


def parse_digest(digest: str) -> str:
    """The hex part of a ``sha256:<64 hex>`` digest. Raises InvalidParameter for anything else."""
    match = _DIGEST.match(digest)
    if match is None:
        raise InvalidParameter(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return match.group(1)


def digest_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BlobWriter:
    """One in-progress blob. ``write`` hashes and counts; ``commit`` verifies and publishes."""

    def __init__(self, store: ContentStore, expected_digest: str | None, expected_size: int | None) -> None:
        self._store = store
        self._expected_digest = expected_digest
        self._expected_size = expected_size
        self._hash = hashlib.sha256()
        self.written = 0
        self.path = os.path.join(store.ingest_dir, secrets.token_hex(16))
        self._file: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 - closed by commit/abort

    def write(self, data: bytes) -> None:
        """Append ``data``. Raises InvalidParameter (and aborts) once more than the expected size arrives."""
        assert self._file is not None, "write after commit/abort"
        self.written += len(data)
        if self._expected_size is not None and self.written > self._expected_size:
            self.abort()
            raise InvalidParameter(f"blob {self._expected_digest}: more data than its size {self._expected_size}")
        self._hash.update(data)
        self._file.write(data)

    def commit(self) -> str:
        """Verify digest and size, fsync and rename into the store. Returns the digest.

        Raises InvalidParameter (after removing the partial file) on a mismatch.
        """
        assert self._file is not None, "commit after commit/abort"
        digest = "sha256:" + self._hash.hexdigest()
        if self._expected_size is not None and self.written != self._expected_size:
            self.abort()
            raise InvalidParameter(
                f"blob {self._expected_digest}: size {self.written} does not match the expected {self._expected_size}")
        if self._expected_digest is not None and digest != self._expected_digest:
            self.abort()
            raise InvalidParameter(f"blob digest mismatch: expected {self._expected_digest}, got {digest}")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.rename(self.path, self._store.blob_path(digest))
        return digest

    def abort(self) -> None:
        """Drop the partial file. Idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class ContentStore:
    """Blobs by digest under ``root``; see the module docstring for the guarantees."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.ingest_dir = os.path.join(root, "ingest")
        self.trash_dir = os.path.join(root, "trash")
        for d in (self.blob_dir, self.ingest_dir, self.trash_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self._inflight: dict[str, asyncio.Future[str]] = {}

    def recover(self) -> None:
        """Finish interrupted deletions and remove stale partial writes (call before serving)."""
        for d in (self.trash_dir, self.ingest_dir):
            for name in os.listdir(d):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(d, name))

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, parse_digest(digest))

    def has(self, digest: str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def size(self, digest: str) -> int:
        """Raises NotFound."""
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError as exc:
            raise NotFound(f"blob {digest} not found") from exc

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading. Raises NotFound."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {digest} not found") from exc

    def read(self, digest: str, max_size: int = 4 * 1024 * 1024) -> bytes:
        """A small blob (config, manifest) read whole and re-verified. Raises NotFound / InvalidParameter."""
        with self.open(digest) as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise InvalidParameter(f"blob {digest} is larger than {max_size} bytes")
        if digest_bytes(data) != digest:
            raise InvalidParameter(f"blob {digest} is corrupt: its content does not match its digest")
        return data

    def writer(self, expected_digest: str | None = None, expected_size: int | None = None) -> BlobWriter:
        """Start writing a blob. Raises InvalidParameter for a malformed expected digest."""
        if expected_digest is not None:
            parse_digest(expected_digest)
        return BlobWriter(self, expected_digest, expected_size)

    def put(self, data: bytes, expected_digest: str | None = None) -> str:
        """Store ``data`` whole; returns its digest."""
        w = self.writer(expected_digest, None if expected_digest is None else len(data))
        try:
            w.write(data)
            return w.commit()
        except BaseException:
            w.abort()
            raise

    async def ensure(self, digest: str, size: int | None,
                     fetch: Callable[[BlobWriter], Awaitable[None]]) -> str:
        """Make sure the blob is present, calling ``fetch`` to write it if not. Concurrent callers for the
        same digest wait for the one fetch in flight; if it fails, they all see its error."""
        if self.has(digest):
            return digest
        running = self._inflight.get(digest)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            writer = self.writer(digest, size)
            try:
                await fetch(writer)
                result = await asyncio.to_thread(writer.commit)
            except BaseException:
                writer.abort()
                raise
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters may be none
            raise
        finally:
            del self._inflight[digest]

    def delete(self, digest: str) -> None:
        """Remove a blob (rename into trash, then unlink). Missing is fine."""
        path = self.blob_path(digest)
        trash = os.path.join(self.trash_dir, f"{parse_digest(digest)}.{secrets.token_hex(4)}")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        os.unlink(trash)

    def digests(self) -> Iterator[str]:
        """Every stored digest (names that are not digests are ignored)."""
        for name in os.listdir(self.blob_dir):
            if len(name) == 64 and _DIGEST.match("sha256:" + name):
                yield "sha256:" + name
