"""The json-file log driver (backend/engine/runtime/logfile.py): format, rotation, and the reader's
since/until/tail/timestamps/follow, including following across rotations."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from backend.engine.runtime.logfile import (
    PARTIAL_LIMIT,
    JsonLogWriter,
    LogEntry,
    format_time,
    parse_time,
    read_logs,
    rotated_path,
)

T = TypeVar("T")
SECOND = 1_000_000_000
BASE = 1_700_000_000 * SECOND  # 2023-11-14T22:13:20Z


def run(coro: Awaitable[T], timeout: float = 30) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def collect(path: Path, **kwargs: Any) -> list[LogEntry]:
    return [entry async for entry in read_logs(str(path), **kwargs)]


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- time -------------------------------------------------------------------------------------------


def test_format_time_is_rfc3339nano_like_go() -> None:
    assert format_time(BASE) == "2023-11-14T22:13:20Z"
    assert format_time(BASE + 500_000_000) == "2023-11-14T22:13:20.5Z"
    assert format_time(BASE + 123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert format_time(BASE + 120_000) == "2023-11-14T22:13:20.00012Z"
    assert format_time(BASE + 500_000_000, fixed=True) == "2023-11-14T22:13:20.500000000Z"


@pytest.mark.parametrize("ns", [0, BASE, BASE + 1, BASE + 999_999_999, 4102444800 * SECOND + 7])
def test_parse_time_inverts_format_time(ns: int) -> None:
    assert parse_time(format_time(ns)) == ns
    assert parse_time(format_time(ns, fixed=True)) == ns


def test_parse_time_offsets_and_long_fractions() -> None:
    assert parse_time("2023-11-14T23:13:20+01:00") == BASE
    assert parse_time("2023-11-14T21:13:20.25-01:00") == BASE + 250_000_000
    assert parse_time("2023-11-14T22:13:20.1234567891234Z") == BASE + 123_456_789
    assert parse_time("2000-02-29T00:00:00Z") == 951782400 * SECOND


@pytest.mark.parametrize("text", ["", "2023-11-14", "2023-11-14T22:13:20", "2023-11-14T22:13:20.Z",
                                  "2023-13-14T22:13:20Z", "2023-11-14T22:13:20+0100", "yesterday at noon!!"])
def test_parse_time_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


# -- writer -----------------------------------------------------------------------------------------


def test_writer_writes_one_docker_entry_per_line(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with JsonLogWriter(str(log)) as w:
        w.write("stdout", b"hello\nwor", now_ns=BASE)
        w.write("stderr", b"oops\r\n", now_ns=BASE + 1)
        w.write("stdout", b"ld\n<&>\n", now_ns=BASE + 2)
    assert log.read_text().splitlines()[0] == \
        '{"log":"hello\\n","stream":"stdout","time":"2023-11-14T22:13:20Z"}'
    assert entries(log) == [
        {"log": "hello\n", "stream": "stdout", "time": "2023-11-14T22:13:20Z"},
        {"log": "oops\r\n", "stream": "stderr", "time": "2023-11-14T22:13:20.000000001Z"},
        {"log": "world\n", "stream": "stdout", "time": "2023-11-14T22:13:20.000000002Z"},
        {"log": "<&>\n", "stream": "stdout", "time": "2023-11-14T22:13:20.000000002Z"},
    ]


def test_writer_keeps_partial_lines_until_flush_or_close(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    w = JsonLogWriter(str(log))
    w.write("stdout", b"no newline yet")
    w.write("stderr", b"err part")
    assert log.read_text() == ""
    w.flush("stderr")
    assert [e["log"] for e in entries(log)] == ["err part"]
    w.close()
    assert [e["log"] for e in entries(log)] == ["err part", "no newline yet"]
    w.close()  # idempotent
    assert w.closed


def test_writer_splits_overlong_lines_and_replaces_invalid_utf8(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with JsonLogWriter(str(log)) as w:
        w.write("stdout", b"x" * (PARTIAL_LIMIT * 2 + 10) + b"\n")
        w.write("stdout", b"caf\xc3\xa9 \xff\xfe\n")
    logs = [e["log"] for e in entries(log)]
    assert logs[:3] == ["x" * PARTIAL_LIMIT, "x" * PARTIAL_LIMIT, "x" * 10 + "\n"]
    assert logs[3] == "café \ufffd\ufffd\n"


def test_writer_rotates_by_size_keeping_max_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    max_size = 1000
    with JsonLogWriter(str(log), max_size=max_size, max_files=3) as w:
        for i in range(300):
            w.write("stdout" if i % 2 else "stderr", f"message number {i}\n".encode())
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["c.log", "c.log.1", "c.log.2"]
    for name in files:
        assert 0 < (tmp_path / name).stat().st_size <= max_size
    kept = [e["log"] for name in ("c.log.2", "c.log.1", "c.log") for e in entries(tmp_path / name)]
    everything = [f"message number {i}\n" for i in range(300)]
    assert kept == everything[-len(kept):]


def test_writer_with_one_file_starts_over(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with JsonLogWriter(str(log), max_size=500, max_files=1) as w:
        for i in range(100):
            w.write("stdout", f"line {i}\n".encode())
    assert [p.name for p in tmp_path.iterdir()] == ["c.log"]
    assert log.stat().st_size <= 500
    assert entries(log)[-1]["log"] == "line 99\n"


def test_writer_appends_to_an_existing_log_and_counts_its_size(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with JsonLogWriter(str(log), max_size=400, max_files=2) as w:
        for i in range(4):
            w.write("stdout", f"first run {i}\n".encode())
    assert 300 < log.stat().st_size <= 400
    with JsonLogWriter(str(log), max_size=400, max_files=2) as w:
        w.write("stdout", b"second run, enough to overflow the first file\n")
    assert rotated_path(str(log), 1) == f"{log}.1"
    assert [e["log"] for e in entries(Path(f"{log}.1"))] == [f"first run {i}\n" for i in range(4)]
    assert [e["log"] for e in entries(log)] == ["second run, enough to overflow the first file\n"]


def test_writer_rejects_zero_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        JsonLogWriter(str(tmp_path / "c.log"), max_files=0)


# -- reader -----------------------------------------------------------------------------------------


def _write_lines(log: Path, count: int, *, max_size: int = 0, max_files: int = 1, start_ns: int = BASE) -> None:
    with JsonLogWriter(str(log), max_size=max_size, max_files=max_files) as w:
        for i in range(count):
            w.write("stderr" if i % 3 == 0 else "stdout", f"line {i}\n".encode(), now_ns=start_ns + i * SECOND)


def test_read_everything_across_rotated_files_in_order(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _write_lines(log, 200, max_size=2000, max_files=50)
    assert len(list(tmp_path.iterdir())) > 5
    got = run(collect(log))
    assert [e.data for e in got] == [f"line {i}\n".encode() for i in range(200)]
    assert [e.stream for e in got] == ["stderr" if i % 3 == 0 else "stdout" for i in range(200)]
    stream, data = got[0]
    assert (stream, data) == ("stderr", b"line 0\n")


def test_tail_spans_rotated_files(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _write_lines(log, 200, max_size=2000, max_files=50)
    for count in (0, 1, 5, 37, 199, 200, 1000):
        got = run(collect(log, tail=count))
        assert [e.data for e in got] == [f"line {i}\n".encode() for i in range(max(0, 200 - count), 200)], count
    assert len(run(collect(log, tail=-1))) == 200


def test_since_until_and_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _write_lines(log, 20)
    since = (BASE + 5 * SECOND) / SECOND
    until = (BASE + 9 * SECOND) / SECOND
    got = run(collect(log, since=since, until=until))
    assert [e.data for e in got] == [f"line {i}\n".encode() for i in range(5, 10)]
    stamped = run(collect(log, tail=1, timestamps=True))
    assert stamped == [("stdout", b"2023-11-14T22:13:39.000000000Z line 19\n")]
    # tail first, then since (as Docker does)
    got = run(collect(log, tail=3, since=(BASE + 18 * SECOND) / SECOND))
    assert [e.data for e in got] == [b"line 18\n", b"line 19\n"]


def test_malformed_lines_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _write_lines(log, 2)
    with open(log, "a") as f:
        f.write("not json\n[1, 2]\n{\"stream\": \"stdout\"}\n")
        f.write('{"log": "ok\\n", "stream": "stdout", "time": "2023-11-14T22:13:30Z"}\n')
        f.write('{"log": "bad time\\n", "stream": "stdout", "time": "soon"}\n')
    assert [e.data for e in run(collect(log))] == [b"line 0\n", b"line 1\n", b"ok\n", b"bad time\n"]
    assert [e.data for e in run(collect(log, since=BASE / SECOND))] == [b"line 0\n", b"line 1\n", b"ok\n"]


def test_missing_log_reads_empty(tmp_path: Path) -> None:
    assert run(collect(tmp_path / "nothing.log")) == []


def test_follow_stops_when_exited_is_set(tmp_path: Path) -> None:
    log = tmp_path / "c.log"

    async def scenario() -> list[LogEntry]:
        exited = asyncio.Event()
        w = JsonLogWriter(str(log))
        w.write("stdout", b"before\n")
        got: list[LogEntry] = []

        async def follower() -> None:
            async for entry in read_logs(str(log), follow=True, exited=exited):
                got.append(entry)

        task = asyncio.create_task(follower())
        await asyncio.sleep(0.1)
        assert [e.data for e in got] == [b"before\n"]
        w.write("stdout", b"while following\n")
        w.write("stderr", b"unterminated")
        await asyncio.sleep(0.1)
        assert [e.data for e in got] == [b"before\n", b"while following\n"]
        w.close()
        exited.set()
        await asyncio.wait_for(task, 5)
        return got

    got = run(scenario())
    assert got == [("stdout", b"before\n"), ("stdout", b"while following\n"), ("stderr", b"unterminated")]


def test_follow_waits_for_the_log_to_appear(tmp_path: Path) -> None:
    log = tmp_path / "c.log"

    async def scenario() -> list[bytes]:
        exited = asyncio.Event()
        got: list[bytes] = []

        async def follower() -> None:
            async for entry in read_logs(str(log), follow=True, exited=exited):
                got.append(entry.data)

        task = asyncio.create_task(follower())
        await asyncio.sleep(0.05)
        with JsonLogWriter(str(log)) as w:
            w.write("stdout", b"late\n")
        exited.set()
        await asyncio.wait_for(task, 5)
        return got

    assert run(scenario()) == [b"late\n"]


def test_follow_until_ends_the_stream(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    _write_lines(log, 3)
    with JsonLogWriter(str(log)) as w:
        w.write("stdout", b"later\n", now_ns=BASE + 100 * SECOND)
    got = run(collect(log, follow=True, until=(BASE + 50 * SECOND) / SECOND))
    assert [e.data for e in got] == [b"line 0\n", b"line 1\n", b"line 2\n"]


@pytest.mark.parametrize(("max_files", "tail"), [(4, None), (2, 0), (1, None)])
def test_follow_crosses_rotations_without_losing_lines(tmp_path: Path, max_files: int, tail: int | None) -> None:
    """A writer rotating every ~40 lines while a follower reads: the follower gets every line once, in
    order (the writer pauses now and then so the follower is never a whole rotation set behind)."""
    log = tmp_path / "c.log"
    total = 3000 if max_files > 1 else 800

    async def scenario() -> list[bytes]:
        exited = asyncio.Event()
        got: list[bytes] = []
        w = JsonLogWriter(str(log), max_size=3000, max_files=max_files)
        w.write("stdout", b"already there\n")

        async def follower() -> None:
            async for entry in read_logs(str(log), follow=True, exited=exited, tail=tail, poll_interval=0.01):
                got.append(entry.data)

        task = asyncio.create_task(follower())
        await asyncio.sleep(0.02)
        for i in range(total):
            w.write("stdout", f"row {i}\n".encode())
            if i % 10 == 9:
                # a small pause lets the follower catch up before the next rotation
                await asyncio.sleep(0.002 if max_files > 1 else 0.02)
        w.close()
        exited.set()
        await asyncio.wait_for(task, 20)
        return got

    got = run(scenario(), timeout=120)
    rows = [f"row {i}\n".encode() for i in range(total)]
    expected = ([b"already there\n"] if tail is None else []) + rows
    assert got == expected
    assert len(os.listdir(tmp_path)) == max_files
