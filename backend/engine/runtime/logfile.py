"""The json-file log driver: Docker's on-disk container log format, written by the monitor and read by
the engine.

Format (as Docker's ``json-file`` driver writes it): one JSON object per line,
``{"log": "<text>", "stream": "stdout"|"stderr", "time": "<RFC 3339, nanoseconds, UTC>"}``. ``log`` holds
one line of output *with* its trailing ``"\\n"`` (``"\\r\\n"`` from a terminal); a line longer than
:data:`PARTIAL_LIMIT` bytes, or the unterminated rest of a stream when it ends, is written as a message
without the newline. Output that is not UTF-8 is decoded with U+FFFD replacements, as Go's encoder does.
``time`` is when the monitor read the bytes, formatted like Go's ``time.RFC3339Nano`` (trailing zeros of
the fraction dropped).

Rotation: with ``max_size`` > 0 the current file (``container-json.log``) never grows past ``max_size``
(unless one message alone is larger): before a message that would overflow it the file is renamed to
``.1`` (``.1`` to ``.2`` and so on) and a new file is started. ``max_files`` counts every file, the
current one included, as Docker's ``max-file`` does: the oldest beyond it is deleted. With
``max_files == 1`` the full file is unlinked and a new one started (never truncated in place, so a
reader holding the old file sees a new inode, not a shrinking file).

Readers (:func:`read_logs`) follow the current file by inode: after a rotation they finish the file they
hold, then read any newer rotated files they have not seen, then the new current file. So a follower
loses nothing unless it falls ``max_files - 1`` whole files behind.

This module is imported by the monitor process, so its import cost is kept to ``os``, ``json`` and
``time``; the reader imports asyncio when it runs (the engine has it already).
"""

from __future__ import annotations

import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator

__all__ = [
    "PARTIAL_LIMIT",
    "STREAMS",
    "JsonLogWriter",
    "LogEntry",
    "format_time",
    "parse_time",
    "read_logs",
    "rotated_path",
]

PARTIAL_LIMIT = 16 * 1024
"""A line longer than this many bytes is logged in pieces of this size (Docker's copier buffer)."""

STREAMS = ("stdout", "stderr")


# ---------------------------------------------------------------------------------------------------
# time


def format_time(ns: int, *, fixed: bool = False) -> str:
    """``ns`` (nanoseconds since the epoch) as RFC 3339 in UTC: Go's ``RFC3339Nano`` (fraction with
    trailing zeros dropped), or with ``fixed`` always nine digits (Docker's timestamps in ``logs -t``)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if fixed:
        return f"{base}.{fraction:09d}Z"
    if not fraction:
        return base + "Z"
    return f"{base}.{fraction:09d}".rstrip("0") + "Z"


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time(text: str) -> int:
    """An RFC 3339 timestamp (``2024-05-01T10:00:00.5Z``, any fraction length, ``Z`` or ``±hh:mm``) as
    nanoseconds since the epoch. Raises ValueError."""
    try:
        if len(text) < 20 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt " or text[13] != ":" \
                or text[16] != ":":
            raise ValueError
        year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
        hour, minute, second = int(text[11:13]), int(text[14:16]), int(text[17:19])
        rest = text[19:]
        fraction = 0
        if rest.startswith("."):
            end = 1
            while end < len(rest) and rest[end].isdigit():
                end += 1
            if end == 1:
                raise ValueError
            fraction = int(rest[1:end][:9].ljust(9, "0"))
            rest = rest[end:]
        if rest in ("Z", "z"):
            offset = 0
        elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
            offset = (int(rest[1:3]) * 60 + int(rest[4:6])) * 60 * (1 if rest[0] == "+" else -1)
        else:
            raise ValueError
        if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    return seconds * 1_000_000_000 + fraction


# ---------------------------------------------------------------------------------------------------
# writer


def rotated_path(path: str, index: int) -> str:
    """The name of the ``index``-th rotated file (0 is the current file, 1 the newest rotated one)."""
    return path if index == 0 else f"{path}.{index}"


class JsonLogWriter:
    """Appends a container's output to ``path`` in json-file format, rotating by size.

    ``write(stream, chunk)`` takes raw output as it arrives: complete lines are written at once, an
    unterminated rest waits for more (up to :data:`PARTIAL_LIMIT`), and ``flush(stream)`` writes it when
    the stream ends. ``max_size`` <= 0 means no rotation; ``max_files`` >= 1 counts the current file.
    Appending to an existing file continues it (a restarted container keeps its log, as in Docker).

    Raises ValueError for ``max_files`` < 1 and OSError for file system errors (the caller decides
    whether to stop logging); after an OSError the writer stays usable.
    """

    def __init__(self, path: str, max_size: int = 0, max_files: int = 1) -> None:
        if max_files < 1:
            raise ValueError(f"max_files must be at least 1, got {max_files}")
        self.path = path
        self.max_size = max(0, max_size)
        self.max_files = max_files
        self._partial: dict[str, bytearray] = {name: bytearray() for name in STREAMS}
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, stream: str, chunk: bytes, now_ns: int | None = None) -> None:
        """Log the complete lines of ``chunk`` (after what is pending for ``stream``); keep the rest."""
        if not chunk:
            return
        pending = self._partial[stream]
        pending += chunk
        if b"\n" not in chunk and len(pending) < PARTIAL_LIMIT:
            return
        now = time.time_ns() if now_ns is None else now_ns
        messages: list[bytes] = []
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end < 0 or end - start >= PARTIAL_LIMIT:
                if len(pending) - start >= PARTIAL_LIMIT:
                    messages.append(bytes(pending[start:start + PARTIAL_LIMIT]))
                    start += PARTIAL_LIMIT
                    continue
                break
            messages.append(bytes(pending[start:end + 1]))
            start = end + 1
        del pending[:start]
        self._write_messages(stream, messages, now)

    def flush(self, stream: str | None = None, now_ns: int | None = None) -> None:
        """Write the unterminated rest of ``stream`` (of both streams for None) as a message."""
        now = time.time_ns() if now_ns is None else now_ns
        for name in STREAMS if stream is None else (stream,):
            pending = self._partial[name]
            if pending:
                data = bytes(pending)
                pending.clear()
                self._write_messages(name, [data], now)

    def write_message(self, stream: str, data: bytes, now_ns: int | None = None) -> None:
        """Log ``data`` as one message as it is (no line splitting)."""
        self._write_messages(stream, [data], time.time_ns() if now_ns is None else now_ns)

    def _write_messages(self, stream: str, messages: list[bytes], now_ns: int) -> None:
        if self._fd < 0:
            raise ValueError("the log writer is closed")
        stamp = format_time(now_ns)
        tail = f',"stream":"{stream}","time":"{stamp}"}}\n'.encode()
        batch = bytearray()
        for data in messages:
            entry = b'{"log":' + json.dumps(data.decode("utf-8", "replace"), ensure_ascii=False).encode() + tail
            if self.max_size and self._size + len(batch) > 0 \
                    and self._size + len(batch) + len(entry) > self.max_size:
                self._append(batch)
                batch.clear()
                self._rotate()
            batch += entry
        self._append(batch)

    def _append(self, data: bytearray | bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            self._size += written
            view = view[written:]

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if self.max_files > 1:
            for index in range(self.max_files - 1, 1, -1):
                try:
                    os.rename(rotated_path(self.path, index - 1), rotated_path(self.path, index))
                except FileNotFoundError:
                    pass
            os.rename(self.path, rotated_path(self.path, 1))
        else:
            os.unlink(self.path)
        self._open()

    def close(self) -> None:
        """Flush both streams' pending rest and close the file. Idempotent."""
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# reader


class LogEntry(tuple[str, bytes]):
    """One message read back: ``(stream, data)``; also ``.stream``, ``.data``."""

    __slots__ = ()

    def __new__(cls, stream: str, data: bytes) -> LogEntry:
        return tuple.__new__(cls, (stream, data))

    @property
    def stream(self) -> str:
        return self[0]

    @property
    def data(self) -> bytes:
        return self[1]


class _Filter:
    """since/until/timestamps applied to raw lines; ``done`` once a line is past ``until``."""

    def __init__(self, since: float | None, until: float | None, timestamps: bool) -> None:
        self.since = None if since is None else round(since * 1e9)
        self.until = None if until is None else round(until * 1e9)
        self.timestamps = timestamps
        self.done = False

    def apply(self, raw: bytes) -> LogEntry | None:
        """The entry for one file line, or None to skip it (malformed lines are skipped)."""
        try:
            doc = json.loads(raw)
            text, stream = doc["log"], doc.get("stream", "stdout")
            stamp = doc.get("time", "")
            if not isinstance(text, str) or not isinstance(stream, str) or not isinstance(stamp, str):
                return None
        except (ValueError, KeyError, TypeError):
            return None
        data = text.encode("utf-8", "replace")
        if self.since is None and self.until is None and not self.timestamps:
            return LogEntry(stream, data)
        try:
            when = parse_time(stamp)
        except ValueError:
            return None
        if self.until is not None and when > self.until:
            self.done = True
            return None
        if self.since is not None and when < self.since:
            return None
        if self.timestamps:
            data = format_time(when, fixed=True).encode() + b" " + data
        return LogEntry(stream, data)


class _Source:
    """One open log file, read line by line from ``offset``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.ino = os.fstat(fd).st_ino
        self.offset = 0
        self.rest = b""

    def read_lines(self, budget: int = 1 << 20) -> list[bytes]:
        """Complete lines appended since the last call, reading at most about ``budget`` bytes; an
        unterminated last line waits for the next call. Empty when there is nothing new."""
        chunks = [self.rest]
        size = 0
        while size < budget:
            chunk = os.pread(self.fd, 1 << 16, self.offset)
            if not chunk:
                break
            self.offset += len(chunk)
            size += len(chunk)
            chunks.append(chunk)
        if not size:
            return []
        data = b"".join(chunks)
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        return data[:cut].splitlines()

    def close(self) -> None:
        os.close(self.fd)


def _open_files(path: str, max_index: int = 64) -> list[_Source]:
    """Open the current file, then the rotated ones; oldest first in the result, deduplicated by inode
    (a rotation while opening only moves names upwards, so the order holds)."""
    opened: list[_Source] = []
    seen: set[int] = set()
    for index in range(max_index + 1):
        try:
            fd = os.open(rotated_path(path, index), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if index == 0:
                continue
            break
        source = _Source(fd)
        if source.ino in seen:
            source.close()
            continue
        seen.add(source.ino)
        opened.append(source)
    opened.reverse()
    return opened


def _tail_lines(sources: list[_Source], count: int) -> list[bytes]:
    """The last ``count`` lines over ``sources`` (oldest first), read backwards from each end. Leaves
    every source's offset at its end, so following continues from there."""
    found: list[bytes] = []
    for source in reversed(sources):
        end = os.fstat(source.fd).st_size
        source.offset = end
        needed = count - len(found)
        if needed <= 0:
            continue
        position, chunks, newlines = end, [], 0
        # one newline more than lines needed: the first piece read may start inside a line
        while position > 0 and newlines <= needed:
            step = min(1 << 16, position)
            position -= step
            chunk = os.pread(source.fd, step, position)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
        buffer = b"".join(reversed(chunks))
        cut = buffer.rfind(b"\n") + 1
        source.rest = buffer[cut:]
        lines = buffer[:cut].splitlines()
        found = lines[-needed:] + found
    return found


async def read_logs(
    path: str,
    *,
    follow: bool = False,
    since: float | None = None,
    until: float | None = None,
    tail: int | None = None,
    timestamps: bool = False,
    exited: asyncio.Event | None = None,
    poll_interval: float = 0.05,
) -> AsyncIterator[LogEntry]:
    """The messages of the log at ``path`` (and its rotated files), oldest first, as ``(stream, data)``.

    ``since``/``until`` are seconds since the epoch (Docker's ``--since``/``--until``): messages before
    ``since`` are skipped; the first message after ``until`` ends the stream. ``tail`` keeps only the last
    ``tail`` lines of what exists now (None or negative: all), before ``since`` applies, as in Docker.
    ``timestamps`` prefixes each message with its time (nine fraction digits) and a space, as
    ``docker logs -t`` prints it. Malformed lines are skipped.

    With ``follow`` the iterator then waits for new messages, across rotations (polling, from 5 ms up to
    ``poll_interval`` while idle), until ``exited`` is set: it then reads what is left and ends. Set
    ``exited`` only once the writer has closed the log (the monitor closes it before it reports the
    exit). Without ``exited`` it follows until the caller stops iterating. A missing log yields nothing
    (or, following, is waited for). Raises OSError for read errors other than a missing file.
    """
    import asyncio

    flt = _Filter(since, until, timestamps)
    chain = _open_files(path)
    try:
        if tail is not None and tail >= 0:
            backlog = _tail_lines(chain, tail)
            for line in backlog:
                entry = flt.apply(line)
                if flt.done:
                    return
                if entry is not None:
                    yield entry
        else:
            for source in chain:
                while lines := source.read_lines():
                    for line in lines:
                        entry = flt.apply(line)
                        if flt.done:
                            return
                        if entry is not None:
                            yield entry
        if not follow:
            return
        while len(chain) > 1:
            chain.pop(0).close()
        # chain: the files still to read, oldest first; the last one is followed
        delay = 0.005
        while True:
            finished = exited is not None and exited.is_set()
            progressed = False
            while True:
                if not chain:
                    chain = _open_files(path, max_index=0)
                    if not chain:
                        break
                head = chain[0]
                lines = head.read_lines()
                if not lines and len(chain) > 1:
                    # an older file is complete (it is renamed only after its last write)
                    if head.rest:
                        lines = [head.rest]
                    chain.pop(0).close()
                    if not lines:
                        continue
                if lines:
                    progressed = True
                    for line in lines:
                        entry = flt.apply(line)
                        if flt.done:
                            return
                        if entry is not None:
                            yield entry
                    continue
                newer = _newer_files(path, head)
                if not newer:
                    break
                chain.extend(newer)
            if finished:
                return
            delay = 0.005 if progressed else min(delay * 2, poll_interval)
            await asyncio.sleep(delay)
    finally:
        for source in chain:
            source.close()


def _newer_files(path: str, current: _Source) -> list[_Source] | None:
    """None while ``path`` is still ``current``'s file; after a rotation, the files written after it,
    opened, oldest first (the last one is the new current file)."""
    try:
        if os.stat(path).st_ino == current.ino:
            return None
    except FileNotFoundError:
        return None  # between a rotation's rename and the new file's creation: look again later
    files = _open_files(path)
    for index, source in enumerate(files):
        if source.ino == current.ino:
            for other in files[:index + 1]:
                other.close()
            return files[index + 1:]
    return files  # ours was rotated away: everything there is newer
