"""Apply an OCI/Docker image layer (a tar, gzip- or zstd-compressed or not) into a directory.

The result is a directory fit to be an overlayfs lower layer: whiteouts become overlayfs whiteouts
(character devices 0/0) and opaque-directory markers become the ``trusted.overlay.opaque`` xattr, as
containerd and dockerd's overlay2 driver do.

Guarantees of ``apply_layer``:

- Nothing is ever written outside ``dest``. Every create, link, chown, chmod, utime and setxattr is done
  relative to a directory descriptor inside ``dest`` on a single path component, with ``O_NOFOLLOW``
  semantics (see ``tarsafe``). Symlinks met in an entry's parent path are resolved inside ``dest`` as
  in a chroot: ``var/run -> /run`` then ``var/run/x`` writes ``dest/run/x``.
- Entry names are normalised (leading ``/`` and ``./`` dropped, ``a/../b`` is ``b``); a name that climbs
  above the root is refused. Symlink targets are stored verbatim. A hardlink target is taken relative to
  the layer root, must already exist in this layer, must not be a directory, and must not be reached
  through ``..`` above the root or through a symlink that is absolute or climbs above the root.
- Last entry wins: an existing entry of the same path is replaced, except that a directory over a
  directory keeps its contents (only the metadata is applied again).
- Ownership (numeric uid/gid), modes (setuid/setgid/sticky included, applied after chown), times (atime
  is the later of the PAX atime and the mtime; directories are stamped last) and the ``security.capability``
  and ``user.*`` PAX xattrs (``SCHILY.xattr.*``) are applied to files and directories. Other xattr
  namespaces are ignored, as are xattrs on symlinks and device nodes; ``trusted.overlay.*`` and
  ``user.overlay.*`` are refused. A filesystem without xattr
  support (ENOTSUP) drops them, as dockerd does. When not run as root, ownership is not applied.
- Regular files, directories, symlinks, hardlinks, character and block devices (major below 2**12 and
  minor below 2**20, Linux's limits) and FIFOs are created; sparse files and any other entry type are
  refused. The layer root entry (``./``) is ignored: ``dest``'s own owner and mode are the caller's.
  aufs metadata (``.wh..wh.*`` other than the opaque marker) is skipped.
- Whiteouts: ``.wh.NAME`` becomes a character device 0/0 named NAME (owned as the header says);
  ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on its directory. ``.wh.``, ``.wh..``, ``.wh...`` and
  a whiteout used as a directory (``a/.wh.b/c``) are refused.
- tarfile is only the header parser (stream mode). Headers it would mishandle are refused before it
  parses them: PAX and GNU long-name headers over 1 MiB, sparse maps, and PAX records that Python
  before 3.11.10 parses in quadratic time (CVE-2024-6232); a corrupt header after the first member,
  which tarfile would take for the end of the archive, is reported as corruption.
- gzip is inflated in a helper thread (stopped and joined before ``apply_layer`` returns or raises).
- Limits (``LayerLimits``): total uncompressed bytes, the uncompressed/compressed ratio (checked as the
  stream is read, once more than 1 MiB came out) and the number of entries.
- The uncompressed stream is hashed while it is read, through to its end (bytes after the tar's end
  marker included), giving the diffID; the source is read to its end, giving the compressed digest.
- On any failure every entry written under ``dest`` is removed (and an opaque xattr set on ``dest``
  itself is removed): ``dest`` is left existing and empty. Nothing is fsynced: callers that need the
  layer to survive a crash apply it into a temporary directory, sync, then rename.

Errors: ``LayerError`` (an ``InvalidParameter``) for anything wrong with the layer, with a one-line message
naming the entry (``layer entry "../etc/passwd": path escapes the layer``); ``InvalidParameter`` for a bad
``dest`` or ``expected_diff_id``; ``Unavailable`` when the source cannot be read or the filesystem fails
for reasons that are not the layer's (no space, quota, I/O error, descriptor or memory exhaustion).
"""

from __future__ import annotations

import contextlib
import decimal
import errno
import hashlib
import io
import os
import queue
import re
import stat
import tarfile
import threading
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import zstandard

from backend.engine.errors import InvalidParameter, Unavailable
from backend.engine.images import tarsafe

_CHUNK = 1 << 20
"""Read size for the source, decompression output and file data."""
_TAR_BUFSIZE = 16 << 10
"""tarfile's own read size. Small on purpose: tarfile copies its leftover buffer on every header read."""
_ZSTD_FEED = 1 << 10
"""Compressed bytes fed to zstd per call: a zstd block expands at most ~32768x, so output stays <= 32 MiB."""
_PREFETCH_DEPTH = 4
_RATIO_GRACE = 1 << 20
_MAX_MINOR = 1 << 20
_MAX_MAJOR = 1 << 12
_MAX_ID = 0xFFFF_FFFE
_MAX_NAME_BYTES = 4095
"""PATH_MAX less the NUL: no process could use a longer name, and dockerd fails on them too."""
_NS_LIMIT = 1 << 62

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_BZIP2_MAGIC = b"BZh"

_WHITEOUT_PREFIX = b".wh."
_WHITEOUT_META_PREFIX = b".wh..wh."
_WHITEOUT_OPAQUE = b".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

_XATTR_PAX_PREFIX = "SCHILY.xattr."
_GLOBAL_PAX_REFUSED = frozenset({"path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime",
                                 "ctime"})
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EMFILE, errno.ENFILE,
                              errno.EROFS})

_REGULAR_TYPES = frozenset({tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE})

_O_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class LayerLimits:
    """Bounds on what one layer may cost. Exceeding any of them fails the layer with ``LayerError``."""

    max_uncompressed: int = 64 * 1024**3
    """Uncompressed bytes in total (the tar stream, end padding included)."""
    max_ratio: int = 1000
    """Uncompressed bytes per compressed byte consumed, checked as it streams after the first 1 MiB."""
    max_entries: int = 5_000_000
    """Tar entries (headers of files, directories, links, whiteouts...)."""


@dataclass(frozen=True)
class AppliedLayer:
    """What was applied: the digests a manifest and an image config refer to the layer by."""

    diff_id: str
    """``sha256:<hex>`` of the uncompressed tar stream."""
    size: int
    """Uncompressed tar bytes."""
    compressed_digest: str
    """``sha256:<hex>`` of the bytes read from the source (equal to ``diff_id`` for an uncompressed layer)."""


class LayerError(InvalidParameter):
    """The layer is malformed, hostile or over a limit. The message is one line and names the entry."""


class _EntryRefused(Exception):
    """Internal: the current entry is refused for the reason given (wrapped into LayerError)."""


def detect_compression(head: bytes) -> str:
    """The compression of a layer from its first bytes: ``"gzip"``, ``"zstd"`` or ``"none"``.

    zstd includes a stream starting with a skippable frame. Anything unrecognised is ``"none"`` (the tar
    parser then decides whether it is a tar). Needs at least 4 bytes to recognise zstd.
    """
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50:
        return "zstd"  # skippable frame, magic 0x184D2A5?
    return "none"


def apply_layer(source: BinaryIO, dest: str, *, limits: LayerLimits = LayerLimits(),
                expected_diff_id: str | None = None, whiteouts: bool = True) -> AppliedLayer:
    """Stream-decompress the layer read from ``source`` and apply its tar into the empty directory ``dest``.

    Compression (gzip, zstd or none) is detected from the first bytes. ``source`` is read to its end in
    1 MiB reads and not closed. The guarantees are those of the module docstring: nothing is written
    outside ``dest``; on any failure ``dest`` is left existing and empty. With ``whiteouts=False`` (a build
    context, which dockerd unpacks as a plain tar) ``.wh.*`` names are ordinary entries.

    Raises ``InvalidParameter`` if ``dest`` is not an existing empty directory or ``expected_diff_id`` is not
    ``sha256:<64 hex>`` (nothing is touched then); ``LayerError`` for a malformed, hostile or oversized layer
    or a diffID other than ``expected_diff_id`` ("layer diffID mismatch: expected ..., got ...");
    ``Unavailable`` for read errors of ``source`` and resource failures of the filesystem. Should removing
    the partial layer itself fail, the original error is raised with a note saying so.
    """
    if expected_diff_id is not None and not _DIGEST_RE.fullmatch(expected_diff_id):
        raise InvalidParameter(f"invalid expected layer diffID {expected_diff_id!r}: want sha256:<64 hex digits>")
    try:
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidParameter(f"layer destination {dest!r}: {exc.strerror}") from exc
    try:
        if os.listdir(root_fd):
            raise InvalidParameter(f"layer destination {dest!r} is not empty")
        applier = _Applier(root_fd, limits, whiteouts=whiteouts)
        try:
            result = applier.run(source)
            if expected_diff_id is not None and result.diff_id != expected_diff_id:
                raise LayerError(f"layer diffID mismatch: expected {expected_diff_id}, got {result.diff_id}")
            applier.finish()
        except BaseException as exc:
            applier.close()
            try:
                applier.clean()
            except OSError as clean_exc:
                exc.add_note(f"removing the partial layer from {dest!r} failed: {clean_exc}")
            raise
        applier.close()
        return result
    finally:
        os.close(root_fd)


# --- reading: source -> decompression -> uncompressed stream (hashed, counted, bounded) ----------------


class _Source:
    """The compressed source: counts and hashes what is read; can hand back the first bytes once."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash: hashlib._Hash | None = None  # off until enable_hash: an uncompressed layer is hashed once
        self._pushback = b""
        self.count = 0

    def head(self, n: int) -> bytes:
        """At least ``n`` bytes (fewer only at end of stream); they are read again by the next ``read``."""
        while len(self._pushback) < n:
            data = self._read_raw()
            if not data:
                break
            self._pushback += data
        return self._pushback

    def read(self) -> bytes:
        """The next chunk (up to 1 MiB, or the pushed-back head), ``b""`` at end of stream."""
        if self._pushback:
            data, self._pushback = self._pushback, b""
            return data
        return self._read_raw()

    def _read_raw(self) -> bytes:
        try:
            data = self._raw.read(_CHUNK)
        except OSError as exc:
            raise Unavailable(f"reading the layer failed: {exc}") from exc
        if not data:
            return b""
        data = bytes(data)
        self.count += len(data)
        if self._hash is not None:
            self._hash.update(data)
        return data

    def hexdigest(self) -> str | None:
        return None if self._hash is None else self._hash.hexdigest()

    def enable_hash(self) -> None:
        """Start hashing; only the pushed-back head may have been read so far (it is hashed now)."""
        assert self.count == len(self._pushback)
        self._hash = hashlib.sha256(self._pushback)


class _Decoder(Protocol):
    consumed: int
    """Compressed bytes consumed so far."""

    def next_chunk(self) -> bytes:
        """The next piece of uncompressed data (never empty), ``b""`` at the end. Raises LayerError."""


def _corrupt(detail: str) -> LayerError:
    return LayerError(f"layer is truncated or corrupt: {detail}")


class _Plain:
    def __init__(self, src: _Source) -> None:
        self._src = src
        self.consumed = 0

    def next_chunk(self) -> bytes:
        data = self._src.read()
        self.consumed += len(data)
        return data


class _Gzip:
    """gzip via zlib, multi-member streams included; output bounded to 1 MiB per call."""

    def __init__(self, src: _Source) -> None:
        self._src = src
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""
        self.consumed = 0

    def next_chunk(self) -> bytes:
        while True:
            if self._d.eof:
                rest = self._d.unused_data + self._input
                if len(rest) < len(_GZIP_MAGIC):
                    more = self._src.read()
                    if not more and not rest:
                        return b""
                    rest += more
                    if len(rest) < len(_GZIP_MAGIC):
                        raise _corrupt("trailing bytes after the gzip stream")
                if not rest.startswith(_GZIP_MAGIC):
                    raise _corrupt("trailing bytes after the gzip stream")
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._input = rest
            if not self._input:
                self._input = self._src.read()
                if not self._input:
                    raise _corrupt("the gzip stream ends early")
            fed = len(self._input)
            try:
                out = self._d.decompress(self._input, _CHUNK)
            except zlib.error as exc:
                raise _corrupt(f"gzip: {exc}") from exc
            self._input = self._d.unconsumed_tail
            self.consumed += fed - len(self._input) - len(self._d.unused_data)
            if out:
                return out


class _Zstd:
    """zstd via the ``zstandard`` package, multiple frames included; output bounded per call (_ZSTD_FEED)."""

    def __init__(self, src: _Source) -> None:
        self._src = src
        self._dctx = zstandard.ZstdDecompressor()
        self._d = self._dctx.decompressobj()
        self._input = memoryview(b"")
        self._in_frame = False
        self.consumed = 0

    def next_chunk(self) -> bytes:
        while True:
            if not self._input:
                data = self._src.read()
                if not data:
                    if self._in_frame:
                        raise _corrupt("the zstd stream ends inside a frame")
                    return b""
                self._input = memoryview(data)
            if self._d.eof:
                self._d = self._dctx.decompressobj()
            piece = self._input[:_ZSTD_FEED]
            self._in_frame = True
            try:
                out = self._d.decompress(piece)
            except zstandard.ZstdError as exc:
                raise _corrupt(f"zstd: {exc}") from exc
            used = len(piece)
            if self._d.eof:
                used -= len(self._d.unused_data)
                self._in_frame = False
            self._input = self._input[used:]
            self.consumed += used
            if out:
                return out


class _Prefetch:
    """Runs a decoder in a thread a few chunks ahead, so decompression and the source's hashing overlap
    with tar parsing, hashing and writing (zlib, zstd, hashlib and os.write release the GIL).

    ``next_chunk`` re-raises, in the caller's thread, whatever the decoder raised. ``close`` stops the
    thread and waits for it (it never reads the source again after ``close`` returns). Memory is bounded
    by ``_PREFETCH_DEPTH`` chunks.
    """

    def __init__(self, decoder: _Decoder) -> None:
        self._decoder = decoder
        self._queue: queue.Queue[tuple[bytes, int, BaseException | None]] = queue.Queue(_PREFETCH_DEPTH)
        self._stop = threading.Event()
        self._done = False
        self.consumed = 0
        self._thread = threading.Thread(target=self._run, name="berth-layer-decompress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._decoder.next_chunk()
                self._put((chunk, self._decoder.consumed, None))
                if not chunk:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((b"", 0, exc))

    def _put(self, item: tuple[bytes, int, BaseException | None]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_chunk(self) -> bytes:
        if self._done:
            return b""
        chunk, consumed, exc = self._queue.get()
        if exc is not None:
            self._done = True
            raise exc
        self.consumed = consumed
        if not chunk:
            self._done = True
        return chunk

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            self._thread.join(0.05)


class _LayerStream:
    """The uncompressed tar stream as tarfile reads it: hashed (diffID), counted and bounded as it comes."""

    def __init__(self, decoder: _Decoder, limits: LayerLimits) -> None:
        self._decoder = decoder
        self._limits = limits
        self._buf = b""
        self._pos = 0
        self.hash = hashlib.sha256()
        self.total = 0
        self.eof = False

    def read(self, size: int, /) -> bytes:
        if self._pos >= len(self._buf) and not self._fill():
            return b""
        start = self._pos
        if start == 0 and size >= len(self._buf):
            self._pos = len(self._buf)
            return self._buf
        self._pos = min(start + size, len(self._buf))
        return self._buf[start:self._pos]

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self._decoder.next_chunk()
        if not chunk:
            self.eof = True
            self._buf, self._pos = b"", 0
            return False
        self.total += len(chunk)
        limits = self._limits
        if self.total > limits.max_uncompressed:
            raise LayerError(f"layer is larger than the limit of {limits.max_uncompressed} bytes uncompressed")
        consumed = max(self._decoder.consumed, 1)
        if self.total > _RATIO_GRACE and self.total > limits.max_ratio * consumed:
            raise LayerError(f"layer compression ratio {self.total // consumed}:1 exceeds the limit of "
                             f"{limits.max_ratio}:1")
        self.hash.update(chunk)
        self._buf, self._pos = chunk, 0
        return True

    def drain(self) -> None:
        """Read (and hash) the rest of the stream: bytes after the tar's end marker count in the diffID."""
        self._buf, self._pos = b"", 0
        while self._fill():
            pass

    def write(self, b: bytes, /) -> object:
        raise io.UnsupportedOperation("write")

    def tell(self) -> int:
        return self.total - (len(self._buf) - self._pos)

    def seek(self, pos: int, /) -> object:
        raise io.UnsupportedOperation("seek")

    def close(self) -> object:
        return None


# --- tar parsing -----------------------------------------------------------------------------------


class _StreamTar(tarfile.TarFile):
    """tarfile in stream mode, used only to parse headers, keeping no list of past members."""

    members: list[tarfile.TarInfo]

    def next(self) -> tarfile.TarInfo | None:
        member = super().next()
        self.members.clear()  # a 5-million-entry layer would otherwise keep every header in memory
        return member


def _display(name: str) -> str:
    """``name`` for a one-line message: control characters escaped, long names shortened."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)
    return shown if len(shown) <= 300 else shown[:150] + "..." + shown[-150:]


def _encode(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def _split(name: str) -> list[bytes]:
    """Normalised components of an entry name or hardlink target, relative to the layer root.

    Raises _EntryRefused for a NUL byte, an over-long name or ``..`` above the root.
    """
    raw = _encode(name)
    if b"\x00" in raw:
        raise _EntryRefused("name contains a NUL byte")
    if len(raw) > _MAX_NAME_BYTES:
        raise _EntryRefused(f"name is longer than {_MAX_NAME_BYTES} bytes")
    parts: list[bytes] = []
    for comp in raw.split(b"/"):
        if comp in (b"", b"."):
            continue
        if comp == b"..":
            if not parts:
                raise _EntryRefused("path escapes the layer")
            parts.pop()
            continue
        parts.append(comp)
    return parts


def _pax_ns(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(decimal.Decimal(value).scaleb(9).to_integral_value(rounding=decimal.ROUND_FLOOR))
    except (decimal.InvalidOperation, ValueError, OverflowError):
        return None


def _bound_ns(ns: int) -> int:
    return ns if -_NS_LIMIT < ns < _NS_LIMIT else 0


def _entry_times(member: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in nanoseconds: PAX values at full precision, atime no earlier than mtime."""
    mtime = _pax_ns(member.pax_headers.get("mtime"))
    if mtime is None:
        mtime = int(member.mtime) * 1_000_000_000
    mtime = _bound_ns(mtime)
    atime = _pax_ns(member.pax_headers.get("atime"))
    atime = mtime if atime is None else max(_bound_ns(atime), mtime)
    return atime, mtime


def _entry_xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    """The xattrs to apply from ``SCHILY.xattr.*`` PAX records. Raises _EntryRefused for overlay ones."""
    out: list[tuple[str, bytes]] = []
    for key, value in member.pax_headers.items():
        if not key.startswith(_XATTR_PAX_PREFIX):
            continue
        name = key[len(_XATTR_PAX_PREFIX):]
        if name.startswith(("trusted.overlay.", "user.overlay.")):
            raise _EntryRefused(f'xattr "{_display(name)}" is reserved for overlayfs')
        if name == "security.capability" or (name.startswith("user.") and len(name) > len("user.")):
            out.append((name, _encode(value)))
    return out


# --- applying ---------------------------------------------------------------------------------------

_MAX_SPECIAL_HEADER = 1 << 20
"""Largest PAX or GNU long-name header accepted (Go's archive/tar has the same bound)."""
_SPECIAL_HEADER_TYPES = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                                   tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


_PAX_TYPES = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE})
_MAX_PAX_DIGITS = 64
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{%d}" % (_MAX_PAX_DIGITS + 1))


def _check_pax_records(data: bytes) -> None:
    """Refuse a PAX header that tarfile's regular expressions would parse in quadratic time.

    Python before 3.11.10 (CVE-2024-6232) backtracks over digit runs and over a keyword that runs past
    its record. Accepted: well-formed records (``"<length> <keyword>=<value>\n"``, the ``=`` inside the
    record), NUL padding after them, and no run of more than 64 ASCII digits. Linear time.
    """
    if _LONG_DIGIT_RUN.search(data):
        raise _corrupt(f"a PAX header has a run of more than {_MAX_PAX_DIGITS} digits")
    pos, size = 0, len(data)
    while pos < size and data[pos] != 0:
        space = data.find(b" ", pos, pos + 21)
        end = pos + int(data[pos:space]) if space > pos and data[pos:space].isdigit() else -1
        if end <= space + 1 or end > size or data[end - 1] != 0x0A or data.find(b"=", space + 1, end) < 0:
            raise _corrupt(f"malformed PAX record at byte {pos} of its header")
        pos = end


class _Replay:
    """A tar stream with bytes already read put back in front (``tarfile``'s ``_Fileobj`` protocol)."""

    def __init__(self, data: bytes, inner: tarfile._Fileobj) -> None:
        self._data = data
        self._pos = 0
        self._inner = inner

    @property
    def exhausted(self) -> bool:
        return self._pos >= len(self._data)

    def read(self, size: int, /) -> bytes:
        if self._pos >= len(self._data):
            return self._inner.read(size)
        out = self._data[self._pos:self._pos + size]
        self._pos += len(out)
        if len(out) < size:
            out += self._inner.read(size - len(out))
        return out

    def tell(self) -> int:
        return self._inner.tell() - (len(self._data) - self._pos)

    def seek(self, pos: int, /) -> object:
        if self._pos < len(self._data):
            raise io.UnsupportedOperation("seek while replaying")
        return self._inner.seek(pos)

    def write(self, b: bytes, /) -> object:
        raise io.UnsupportedOperation("write")

    def close(self) -> object:
        return None


def _header_class(last_error: list[tarfile.HeaderError]) -> type[tarfile.TarInfo]:
    """A TarInfo class for one layer: bounds what the header parser may read, records why it stopped.

    - tarfile, past the first member, ends the archive silently on a bad or truncated header; the class
      records the HeaderError so the caller can tell a proper end marker from corruption.
    - Extended headers over 1 MiB and sparse files are refused before tarfile reads them (sparse maps
      are unbounded); PAX headers are checked (``_check_pax_records``) before tarfile parses them.
    """

    class _Header(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _Header:
            obj = super().frombuf(buf, encoding, errors)
            if obj.type in _SPECIAL_HEADER_TYPES and obj.size > _MAX_SPECIAL_HEADER:
                raise _corrupt(f"an extended header of {obj.size} bytes (the limit is {_MAX_SPECIAL_HEADER})")
            if obj.type == tarfile.GNUTYPE_SPARSE:
                raise LayerError(f'layer entry "{_display(obj.name)}": sparse files are not supported')
            return obj

        @classmethod
        def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _Header:
            fileobj = tarfile_.fileobj
            try:
                block = fileobj.read(tarfile.BLOCKSIZE)
                if block[156:157] in _PAX_TYPES:  # peek at the records before tarfile's parser sees them
                    size = cls.frombuf(block, tarfile_.encoding, tarfile_.errors).size
                    data = fileobj.read(-(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
                    _check_pax_records(data[:size])
                    block += data
                replay = _Replay(block, fileobj)
                tarfile_.fileobj = replay
                try:
                    obj = super().fromtarfile(tarfile_)
                finally:
                    tarfile_.fileobj = fileobj
                if not replay.exhausted:
                    raise _corrupt("an extended header shorter than its records")
                return obj
            except tarfile.HeaderError as exc:
                last_error[:] = [exc]
                raise

        def _refuse_sparse(self, next_: tarfile.TarInfo, pax_headers: dict[str, str]) -> None:
            # tarfile would parse an attacker-sized sparse map (regular expressions, or reads from the
            # data area); refuse before.
            name = pax_headers.get("GNU.sparse.name", next_.name)
            raise LayerError(f'layer entry "{_display(name)}": sparse files are not supported')

        def _proc_gnusparse_00(self, next_: tarfile.TarInfo, pax_headers: dict[str, str], buf: bytes) -> None:
            self._refuse_sparse(next_, pax_headers)

        def _proc_gnusparse_01(self, next_: tarfile.TarInfo, pax_headers: dict[str, str]) -> None:
            self._refuse_sparse(next_, pax_headers)

        def _proc_gnusparse_10(self, next_: tarfile.TarInfo, pax_headers: dict[str, str],
                               tarfile_: tarfile.TarFile) -> None:
            self._refuse_sparse(next_, pax_headers)

    return _Header


# How tarfile reports the end marker (a zero block) and a stream ending on a block boundary (accepted, like
# Go's archive/tar); not in typeshed.
_CLEAN_END: tuple[type[tarfile.HeaderError], ...] = tuple(
    getattr(tarfile, name) for name in ("EOFHeaderError", "EmptyHeaderError"))
_TAR_PARSE_ERRORS = (tarfile.TarError, EOFError, ValueError, OverflowError, UnicodeError, RecursionError)


class _Applier:
    """One application of one layer into one root descriptor. Not reusable."""

    def __init__(self, root_fd: int, limits: LayerLimits, *, whiteouts: bool = True) -> None:
        self._root_fd = root_fd
        self._limits = limits
        self._whiteouts = whiteouts  # False: .wh.* names are plain entries
        self._tree = tarsafe.LayerTree(root_fd)
        self._chown = os.geteuid() == 0
        self._dir_times: dict[tuple[bytes, ...], tuple[int, int]] = {}
        root = os.fstat(root_fd)
        self._root_id = (root.st_dev, root.st_ino)
        self._root_opaque = False
        self._entries = 0
        self._prefetch: _Prefetch | None = None

    # lifecycle

    def run(self, raw: BinaryIO) -> AppliedLayer:
        """Read and apply the whole layer. Directory times are left to ``finish``."""
        src = _Source(raw)
        head = src.head(8)
        compression = detect_compression(head)
        decoder: _Decoder
        if compression == "gzip":
            src.enable_hash()
            # inflate is the slowest stage: run it (and the compressed digest) beside the writer. Not for
            # zstd: its small bounded feeds would hand the GIL back and forth thousands of times a second.
            decoder = self._prefetch = _Prefetch(_Gzip(src))
        elif compression == "zstd":
            src.enable_hash()
            decoder = _Zstd(src)
        else:
            for kind, magic in (("xz", _XZ_MAGIC), ("bzip2", _BZIP2_MAGIC)):
                if head.startswith(magic):
                    raise LayerError(f"layer compression {kind} is not supported (only gzip, zstd or none)")
            decoder = _Plain(src)
        stream = _LayerStream(decoder, self._limits)
        self._apply_tar(stream)
        stream.drain()
        if self._prefetch is not None:
            self._prefetch.close()  # finished already; after this the source digest is final
        diff_id = "sha256:" + stream.hash.hexdigest()
        compressed = src.hexdigest()
        # an uncompressed layer is its own compressed form: same bytes, same digest (hashed once)
        return AppliedLayer(diff_id=diff_id, size=stream.total,
                            compressed_digest=diff_id if compressed is None else "sha256:" + compressed)

    def finish(self) -> None:
        """Stamp directory times (creating their children changed them). Raises LayerError/Unavailable."""
        for parts, times in self._dir_times.items():
            try:
                parent = self._tree.lookup(parts[:-1], strict=False)
            except tarsafe.ResolveError:
                continue  # replaced later in the layer
            try:
                st = tarsafe.lstat_at(parent, parts[-1])
                if st is not None and stat.S_ISDIR(st.st_mode):
                    os.utime(parts[-1], ns=times, dir_fd=parent, follow_symlinks=False)
            except OSError as exc:
                raise _os_error(os.fsdecode(b"/".join(parts)), exc) from exc
            finally:
                os.close(parent)

    def close(self) -> None:
        """Stop the decompression thread and close cached descriptors; idempotent."""
        if self._prefetch is not None:
            self._prefetch.close()
        self._tree.close()

    def clean(self) -> None:
        """Remove everything written under the root (and an opaque xattr set on the root). Raises OSError."""
        tarsafe.clear_directory(self._root_fd)
        if self._root_opaque:
            try:
                os.removexattr(self._root_fd, OVERLAY_OPAQUE_XATTR)
            except OSError as exc:
                if exc.errno != errno.ENODATA:
                    raise

    # the tar

    def _apply_tar(self, stream: _LayerStream) -> None:
        last_error: list[tarfile.HeaderError] = []
        try:
            tar = _StreamTar.open(fileobj=stream, mode="r|", bufsize=_TAR_BUFSIZE, tarinfo=_header_class(last_error),
                                  encoding="utf-8", errors="surrogateescape")
        except _TAR_PARSE_ERRORS as exc:
            if stream.eof and stream.total == 0:
                return  # an empty stream is an empty layer, as for Go's archive/tar
            raise _corrupt(str(exc) or type(exc).__name__) from exc
        with tar:
            while (member := self._next(tar)) is not None:
                self._entries += 1
                if self._entries > self._limits.max_entries:
                    raise LayerError(f"layer has more than {self._limits.max_entries} entries")
                self._apply_member(tar, member)
        if last_error and not isinstance(last_error[0], _CLEAN_END):
            raise _corrupt(f"{last_error[0]} at offset {tar.offset}")

    @staticmethod
    def _next(tar: _StreamTar) -> tarfile.TarInfo | None:
        try:
            member = tar.next()
        except _TAR_PARSE_ERRORS as exc:
            raise _corrupt(str(exc) or type(exc).__name__) from exc
        for key in tar.pax_headers:
            if key in _GLOBAL_PAX_REFUSED or key.startswith(("SCHILY.", "GNU.sparse.", "LIBARCHIVE.")):
                raise LayerError(f'layer has a global PAX header setting "{_display(key)}" (not supported)')
        return member

    def _apply_member(self, tar: _StreamTar, member: tarfile.TarInfo) -> None:
        try:
            self._apply_entry(tar, member)
        except (_EntryRefused, tarsafe.ResolveError) as exc:
            raise LayerError(f'layer entry "{_display(member.name)}": {exc}') from None
        except OSError as exc:
            raise _os_error(member.name, exc) from exc

    def _apply_entry(self, tar: _StreamTar, member: tarfile.TarInfo) -> None:
        parts = _split(member.name)
        if not parts:
            return  # the layer root: dest's own metadata is the caller's
        dirparts, base = parts[:-1], parts[-1]
        if self._whiteouts and any(p.startswith(_WHITEOUT_META_PREFIX) for p in dirparts):
            return  # inside aufs metadata (.wh..wh.plnk/...)
        if self._whiteouts and any(p.startswith(_WHITEOUT_PREFIX) for p in dirparts):
            raise _EntryRefused("a whiteout cannot be a directory")
        if member.uid < 0 or member.uid > _MAX_ID or member.gid < 0 or member.gid > _MAX_ID:
            raise _EntryRefused(f"owner {member.uid}:{member.gid} is out of range")
        if self._whiteouts and base.startswith(_WHITEOUT_PREFIX):
            if base == _WHITEOUT_OPAQUE:
                self._opaque(dirparts)
            elif not base.startswith(_WHITEOUT_META_PREFIX):  # other .wh..wh.* names are aufs metadata
                self._whiteout(dirparts, base[len(_WHITEOUT_PREFIX):], member)
            return
        if member.issparse():
            raise _EntryRefused("sparse files are not supported")
        kind = member.type
        if kind in _REGULAR_TYPES:
            self._regular(tar, member, dirparts, base)
        elif kind == tarfile.DIRTYPE:
            self._directory(member, dirparts, base)
        elif kind == tarfile.SYMTYPE:
            self._symlink(member, dirparts, base)
        elif kind == tarfile.LNKTYPE:
            self._hardlink(member, dirparts, base)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
            self._node(member, dirparts, base)
        else:
            raise _EntryRefused(f"unsupported entry type {kind.decode('latin-1')!r}")

    # entry kinds

    def _regular(self, tar: _StreamTar, member: tarfile.TarInfo, dirparts: list[bytes], base: bytes) -> None:
        xattrs = _entry_xattrs(member)
        parent = self._tree.directory(dirparts)
        self._make_room(parent, base, is_dir=False)
        fd = os.open(base, _O_NEW_FILE, 0o600, dir_fd=parent)
        try:
            if member.size:
                self._copy_data(tar, member, fd)
            if self._chown:
                os.fchown(fd, member.uid, member.gid)
            for key, value in xattrs:
                _set_xattr(fd, key, value)
            os.fchmod(fd, member.mode & 0o7777)
            os.utime(fd, ns=_entry_times(member))
        finally:
            os.close(fd)

    def _copy_data(self, tar: _StreamTar, member: tarfile.TarInfo, fd: int) -> None:
        reader = tar.extractfile(member)
        if reader is None:  # not a regular member; cannot happen for the types routed here
            raise _EntryRefused("no data")
        remaining = member.size
        while remaining > 0:
            try:
                chunk = reader.read(min(_CHUNK, remaining))
            except _TAR_PARSE_ERRORS as exc:
                raise _corrupt(f'{str(exc) or type(exc).__name__} in the data of "{_display(member.name)}"') from exc
            if not chunk:
                raise _corrupt(f'the data of "{_display(member.name)}" ends early')
            remaining -= len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]

    def _directory(self, member: tarfile.TarInfo, dirparts: list[bytes], base: bytes) -> None:
        xattrs = _entry_xattrs(member)
        parent = self._tree.directory(dirparts)
        if not self._make_room(parent, base, is_dir=True):
            os.mkdir(base, 0o700, dir_fd=parent)
        fd = os.open(base, _O_DIR_READ, dir_fd=parent)
        try:
            if self._chown:
                os.fchown(fd, member.uid, member.gid)
            for key, value in xattrs:
                _set_xattr(fd, key, value)
            os.fchmod(fd, member.mode & 0o7777)
        finally:
            os.close(fd)
        self._dir_times[(*dirparts, base)] = _entry_times(member)

    def _symlink(self, member: tarfile.TarInfo, dirparts: list[bytes], base: bytes) -> None:
        target = _encode(member.linkname)
        if not target:
            raise _EntryRefused("symlink has an empty target")
        if b"\x00" in target:
            raise _EntryRefused("symlink target contains a NUL byte")
        _entry_xattrs(member)  # refuses overlay xattrs; the others are not applied to symlinks
        parent = self._tree.directory(dirparts)
        self._make_room(parent, base, is_dir=False)
        os.symlink(target, base, dir_fd=parent)
        if self._chown:
            os.chown(base, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        os.utime(base, ns=_entry_times(member), dir_fd=parent, follow_symlinks=False)

    def _hardlink(self, member: tarfile.TarInfo, dirparts: list[bytes], base: bytes) -> None:
        shown = _display(member.linkname)
        try:
            target = _split(member.linkname)
        except _EntryRefused as exc:
            raise _EntryRefused(f'hardlink target "{shown}": {exc}') from None
        if not target:
            raise _EntryRefused("hardlink to the layer root")
        xattrs = _entry_xattrs(member)
        try:
            tparent = self._tree.lookup(target[:-1], strict=True)
        except tarsafe.PathEscapes as exc:
            raise _EntryRefused(f'hardlink target "{shown}" escapes the layer ({exc})') from None
        except (tarsafe.PathMissing, tarsafe.NotADirectoryInTree):
            raise _EntryRefused(f'hardlink target "{shown}" is not in this layer') from None
        try:
            tst = tarsafe.lstat_at(tparent, target[-1])
            if tst is None:
                raise _EntryRefused(f'hardlink target "{shown}" is not in this layer')
            if stat.S_ISDIR(tst.st_mode):
                raise _EntryRefused(f'hardlink target "{shown}" is a directory')
            parent = self._tree.directory(dirparts)
            existing = tarsafe.lstat_at(parent, base)
            if existing is None or (existing.st_dev, existing.st_ino) != (tst.st_dev, tst.st_ino):
                self._make_room(parent, base, is_dir=False)
                os.link(target[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(tparent)
        # like dockerd and containerd, the link's header metadata is applied to the shared inode
        if self._chown:
            os.chown(base, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISLNK(tst.st_mode):
            return
        if stat.S_ISREG(tst.st_mode):
            path = tarsafe.proc_path(parent, base)
            for key, value in xattrs:
                _set_xattr(path, key, value)
        os.chmod(base, member.mode & 0o7777, dir_fd=parent, follow_symlinks=False)
        os.utime(base, ns=_entry_times(member), dir_fd=parent, follow_symlinks=False)

    def _node(self, member: tarfile.TarInfo, dirparts: list[bytes], base: bytes) -> None:
        if member.type == tarfile.FIFOTYPE:
            kind, device = stat.S_IFIFO, 0
        else:
            major, minor = member.devmajor, member.devminor
            if not (0 <= major < _MAX_MAJOR and 0 <= minor < _MAX_MINOR):  # Linux: 12-bit major, 20-bit minor
                raise _EntryRefused(f"out-of-range device number {major}:{minor}")
            kind = stat.S_IFCHR if member.type == tarfile.CHRTYPE else stat.S_IFBLK
            device = os.makedev(major, minor)
        _entry_xattrs(member)  # refuses overlay xattrs; the others are not applied to device nodes
        parent = self._tree.directory(dirparts)
        self._make_room(parent, base, is_dir=False)
        os.mknod(base, kind | 0o600, device, dir_fd=parent)
        if self._chown:
            os.chown(base, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        os.chmod(base, member.mode & 0o7777, dir_fd=parent, follow_symlinks=False)
        os.utime(base, ns=_entry_times(member), dir_fd=parent, follow_symlinks=False)

    def _whiteout(self, dirparts: list[bytes], name: bytes, member: tarfile.TarInfo) -> None:
        if name in (b"", b".", b".."):
            raise _EntryRefused("invalid whiteout")
        parent = self._tree.directory(dirparts)
        self._make_room(parent, name, is_dir=False)
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        if self._chown:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)

    def _opaque(self, dirparts: list[bytes]) -> None:
        directory = self._tree.directory(dirparts)
        fd = os.open(b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == self._root_id:
                self._root_opaque = True
            os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)

    def _make_room(self, parent: int, name: bytes, *, is_dir: bool) -> bool:
        """Clear the way for a new entry ``name``: True if an existing directory stays (dir over dir)."""
        st = tarsafe.lstat_at(parent, name)
        if st is None:
            return False
        if is_dir and stat.S_ISDIR(st.st_mode):
            return True
        self._tree.invalidate()
        tarsafe.remove_entry(parent, name)
        return False


def _set_xattr(target: int | bytes, key: str, value: bytes) -> None:
    """Set one xattr on an open descriptor or (not following a final symlink) a path.

    A filesystem without xattr support drops it (as dockerd does). Raises OSError.
    """
    try:
        if isinstance(target, int):
            os.setxattr(target, key, value)
        else:
            os.setxattr(target, key, value, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.ENOTSUP:
            raise


def _os_error(name: str, exc: OSError) -> LayerError | Unavailable:
    message = f'layer entry "{_display(name)}": {exc.strerror or exc}'
    if exc.errno in _RESOURCE_ERRNOS:
        return Unavailable(message)
    return LayerError(message)
