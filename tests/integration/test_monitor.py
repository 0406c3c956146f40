"""The container monitor (backend/engine/runtime/monitor.py) with real runtimes (berth-runtime and runc)
and real containers from the busybox rootfs, driven through MonitorHandle (monitor_client.py).

The test process is a child subreaper while a test runs, so the daemonized monitors (and the short-lived
middle process of their double fork) become its children: teardown deletes each container with
``runtime delete --force``, waits for its monitor to finish, SIGKILLs by pid whatever of ours is left,
reaps it, and removes the test cgroups.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from backend.engine.errors import Conflict, Unavailable
from backend.engine.runtime import syscalls
from backend.engine.runtime.forkserver_client import ForkServer
from backend.engine.runtime.logfile import read_logs
from backend.engine.runtime.monitor_client import MonitorHandle, MonitorState, read_output
from tests.integration.runtime.harness import (
    Bundle,
    BundleFactory,
    process_state,
    remove_empty_parent,
    runtime_binary,
)

pytestmark = pytest.mark.root

T = TypeVar("T")
MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


def run(coro: Awaitable[T], timeout: float = 30) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def children_of_self() -> set[int]:
    """Pids whose parent is this process (zombies included), from /proc."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


def wait_for(predicate: Any, timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


async def log_entries(handle: MonitorHandle) -> list[tuple[str, bytes]]:
    return [tuple(e) async for e in read_logs(handle.log_path)]  # type: ignore[misc]


async def read_until(reader: asyncio.StreamReader, tty: bool, needle: bytes,
                     seen: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Collect attach output per stream until ``needle`` is in stdout."""
    seen = seen if seen is not None else {"stdout": b"", "stderr": b""}
    async for stream, data in read_output(reader, tty):
        seen[stream] += data
        if needle in seen["stdout"]:
            return seen
    raise AssertionError(f"attach stream ended before {needle!r}; got {seen!r}")


@dataclass
class MonitorEnv:
    """One runtime, its state root, a bundle factory, and every monitor a test started."""

    name: str
    runtime: Path
    root: Path
    tmp: Path
    bundles: BundleFactory
    fork_server: ForkServer | None = None
    started: list[tuple[Path, str]] = field(default_factory=list)

    def bundle(self, args: list[str], **config: Any) -> Bundle:
        return self.bundles(args, **config)

    def state_dir(self, bundle: Bundle) -> Path:
        return self.tmp / f"m-{bundle.cid}"

    def spawn(self, bundle: Bundle, **options: Any) -> MonitorHandle:
        state = self.state_dir(bundle)
        self.started.append((state, bundle.cid))
        return MonitorHandle.spawn(str(state), bundle.cid, str(bundle.path), str(self.runtime),
                                   runtime_root=str(self.root), fork_server=self.fork_server, **options)

    def runtime_state(self, cid: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.runtime), "--root", str(self.root), "state", cid],
                              capture_output=True, text=True, timeout=10, check=False)

    def cleanup(self, before: set[int]) -> list[str]:
        problems = []
        for state, cid in self.started:
            subprocess.run([str(self.runtime), "--root", str(self.root), "delete", "--force", cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=15, check=False)
            with contextlib.suppress(NotImplementedError, Exception):
                handle = MonitorHandle.connect(str(state))
                deadline = time.monotonic() + 5
                while handle.alive() and time.monotonic() < deadline:
                    time.sleep(0.01)
                if handle.alive():
                    problems.append(f"monitor {handle.monitor_pid} of {cid} did not exit; killed")
                    os.kill(handle.monitor_pid, signal.SIGKILL)
        # whatever became our child during the test: monitors, their fork middles, orphaned inits
        for pid in children_of_self() - before:
            if alive(pid):
                problems.append(f"process {pid} still alive at teardown; killed")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        problems += self.bundles.cleanup()
        return problems


@pytest.fixture(scope="module", autouse=True)
def _cgroup_parent() -> Iterator[None]:
    yield
    remove_empty_parent()


@pytest.fixture(params=["berth", "berth-warm", "runc"])
def env(request: pytest.FixtureRequest, tmp_path: Path, busybox_rootfs: Path) -> Iterator[MonitorEnv]:
    """A runtime for monitors: berth-runtime as a process per verb, berth-runtime warm (monitors forked
    from a fork server, verbs in-process), or runc."""
    binary = runtime_binary(str(request.param).removesuffix("-warm"))
    if binary is None:
        pytest.skip(f"{request.param} runtime binary not found")
    before = children_of_self()
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    fork_server = ForkServer.start(str(tmp_path / "fs")) if request.param == "berth-warm" else None
    menv = MonitorEnv(str(request.param), binary, tmp_path / "rt", tmp_path,
                      BundleFactory(tmp_path / "bundles", busybox_rootfs), fork_server)
    try:
        yield menv
    finally:
        if fork_server is not None:
            fork_server.close()
        problems = menv.cleanup(before)
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 0)
        assert not problems, problems


# ---------------------------------------------------------------------------------------------------


def test_output_is_logged_in_order_and_exit_code_reported(env: MonitorEnv) -> None:
    bundle = env.bundle(["sh", "-c", "for i in $(seq 1 200); do echo line $i; echo err $i >&2; done; exit 3"])
    handle = env.spawn(bundle)
    assert handle.alive()
    assert handle.pid > 0 and alive(handle.pid)
    assert handle.exit_status() is None
    socket_mode = os.stat(handle.socket_path).st_mode & 0o777
    assert socket_mode == 0o600

    async def scenario() -> tuple[Any, ...]:
        created = await handle.status()
        started = await handle.start()
        final = await handle.wait()
        return created, started, final

    created, started, final = run(scenario())
    assert created.state is MonitorState.CREATED and created.pid == handle.pid
    assert started.state is MonitorState.RUNNING or started.exit_code == 3
    assert started.started_at
    assert final.state is MonitorState.EXITED
    assert (final.exit_code, final.oom_killed) == (3, False)
    assert final.started_at and final.finished_at and final.finished_at >= final.started_at

    got = run(log_entries(handle))
    assert [d for s, d in got if s == "stdout"] == [f"line {i}\n".encode() for i in range(1, 201)]
    assert [d for s, d in got if s == "stderr"] == [f"err {i}\n".encode() for i in range(1, 201)]
    raw = json.loads(Path(handle.log_path).read_text().splitlines()[0])
    assert set(raw) == {"log", "stream", "time"} and raw["time"].endswith("Z")

    record = handle.exit_status()
    assert record is not None and (record.exit_code, record.oom_killed) == (3, False)
    wait_for(lambda: not handle.alive(), what="the monitor to exit")
    assert not os.path.exists(handle.socket_path)
    assert env.runtime_state(bundle.cid).returncode != 0, "the monitor must delete the container"
    # the status of a container whose monitor is gone comes from the files it left
    after = run(handle.status())
    assert (after.state, after.exit_code) == (MonitorState.EXITED, 3)


def test_attach_streams_stdin_and_output_to_several_clients(env: MonitorEnv) -> None:
    bundle = env.bundle(["sh", "-c", "cat; echo done >&2"])
    handle = env.spawn(bundle, stdin=True, stdin_once=True)

    async def scenario() -> tuple[dict[str, bytes], dict[str, bytes], int | None]:
        r1, w1 = await handle.attach(stdin=True)
        r2, w2 = await handle.attach(stdout=True, stderr=True)
        await handle.start()
        w1.write(b"hello\n")
        await w1.drain()
        seen1 = await read_until(r1, False, b"hello\n")
        seen2 = await read_until(r2, False, b"hello\n")
        w1.write(b"second line\n")
        w1.write_eof()  # stdin-once: the container's stdin closes, cat ends
        async for stream, data in read_output(r1, False):
            seen1[stream] += data
        async for stream, data in read_output(r2, False):
            seen2[stream] += data
        status = await handle.wait()
        w1.close()
        w2.close()
        return seen1, seen2, status.exit_code

    seen1, seen2, code = run(scenario())
    assert code == 0
    for seen in (seen1, seen2):
        assert seen == {"stdout": b"hello\nsecond line\n", "stderr": b"done\n"}
    got = run(log_entries(handle))
    assert got == [("stdout", b"hello\n"), ("stdout", b"second line\n"), ("stderr", b"done\n")]


def test_stdin_stays_open_without_stdin_once_and_signals_give_128_plus(env: MonitorEnv) -> None:
    bundle = env.bundle(["cat"])
    handle = env.spawn(bundle, stdin=True)

    async def scenario() -> Any:
        r1, w1 = await handle.attach(stdin=True)
        await handle.start()
        w1.write(b"one\n")
        await read_until(r1, False, b"one\n")
        w1.write_eof()  # only this client's input ends
        await asyncio.sleep(0.3)
        assert (await handle.status()).state is MonitorState.RUNNING
        w1.close()
        r2, w2 = await handle.attach(stdin=True)
        w2.write(b"two\n")
        await read_until(r2, False, b"two\n")
        subprocess.run([str(env.runtime), "--root", str(env.root), "kill", bundle.cid, "KILL"], check=True)
        status = await handle.wait()
        w2.close()
        return status

    status = run(scenario())
    assert status.exit_code == 128 + signal.SIGKILL
    assert run(log_entries(handle)) == [("stdout", b"one\n"), ("stdout", b"two\n")]


def test_tty_resize_and_input(env: MonitorEnv) -> None:
    bundle = env.bundle(["sh", "-c", "stty size; read x; echo got $x; stty size"], terminal=True)
    handle = env.spawn(bundle, tty=True, stdin=True)
    assert handle.tty

    async def scenario() -> tuple[bytes, int | None]:
        await handle.resize(24, 80)
        reader, writer = await handle.attach(stdin=True)
        await handle.start()
        seen = await read_until(reader, True, b"24 80")
        await handle.resize(50, 132)
        writer.write(b"abc\n")
        await writer.drain()
        await read_until(reader, True, b"50 132", seen)
        async for _stream, data in read_output(reader, True):
            seen["stdout"] += data
        status = await handle.wait()
        writer.close()
        return seen["stdout"], status.exit_code

    output, code = run(scenario())
    assert code == 0
    assert b"24 80\r\n" in output and b"got abc\r\n" in output and b"50 132\r\n" in output
    got = run(log_entries(handle))
    assert {s for s, _ in got} == {"stdout"}
    assert b"".join(d for _, d in got) == output  # the raw pty output, input echo included
    assert ("stdout", b"24 80\r\n") in got


def test_requests_in_the_wrong_state_are_conflicts(env: MonitorEnv) -> None:
    bundle = env.bundle(["true"])
    handle = env.spawn(bundle)

    async def scenario() -> None:
        with pytest.raises(Conflict):
            await handle.resize(10, 10)  # no tty
        await handle.start()
        with pytest.raises(Conflict):
            await handle.start()
        await handle.wait()
        with pytest.raises(Conflict):
            await handle.attach()
        with pytest.raises(Conflict):
            await handle.start()

    run(scenario())


def test_live_restore_after_the_engine_is_killed(env: MonitorEnv) -> None:
    """An 'engine' process spawns the monitor, starts the container, attaches, and is SIGKILLed; a new
    handle from the state directory finds the same container and a log with every line."""
    count = 200
    bundle = env.bundle(["sh", "-c", f"i=0; while [ $i -lt {count} ]; do i=$((i+1)); echo tick $i; usleep 10000; done"])
    state = env.state_dir(bundle)
    env.started.append((state, bundle.cid))
    engine_code = (
        "import asyncio, json, sys\n"
        "from backend.engine.runtime.monitor_client import MonitorHandle, read_output\n"
        "a = json.loads(sys.argv[1])\n"
        "h = MonitorHandle.spawn(a['state'], a['cid'], a['bundle'], a['runtime'], runtime_root=a['root'])\n"
        "async def main():\n"
        "    reader, writer = await h.attach()\n"
        "    await h.start()\n"
        "    print(json.dumps({'pid': h.pid}), flush=True)\n"
        "    async for stream, data in read_output(reader, False):\n"
        "        print(json.dumps(data.decode()), flush=True)\n"
        "asyncio.run(main())\n"
    )
    args = {"state": str(state), "cid": bundle.cid, "bundle": str(bundle.path), "runtime": str(env.runtime),
            "root": str(env.root)}
    engine = subprocess.Popen([sys.executable, "-c", engine_code, json.dumps(args)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert engine.stdout is not None
        first = engine.stdout.readline()
        assert first, engine.stderr.read() if engine.stderr else ""
        pid = json.loads(first)["pid"]
        for _ in range(5):
            assert b"tick" in engine.stdout.readline()
    finally:
        engine.kill()
        engine.wait()
    assert alive(pid), "the container must survive its engine"

    handle = MonitorHandle.connect(str(state))
    assert handle.pid == pid and handle.alive()

    async def scenario() -> tuple[Any, bytes]:
        status = await handle.status()
        reader, writer = await handle.attach()
        seen = await read_until(reader, False, b"tick")
        final = await handle.wait()
        writer.close()
        assert final.exit_code == 0 and final.pid == pid
        return status, seen["stdout"]

    status, live = run(scenario())
    assert status.state is MonitorState.RUNNING and status.pid == pid
    assert live.startswith(b"tick ")
    record = handle.exit_status()
    assert record is not None and record.exit_code == 0
    got = run(log_entries(handle))
    assert got == [("stdout", f"tick {i}\n".encode()) for i in range(1, count + 1)]


def test_exit_with_no_client_connected_is_recorded(env: MonitorEnv) -> None:
    bundle = env.bundle(["sh", "-c", "sleep 0.3; exit 7"])
    handle = env.spawn(bundle)
    run(handle.start())
    state_dir = handle.state_dir
    del handle  # nobody is connected while the container exits

    exit_file = Path(state_dir) / "exit.json"
    wait_for(exit_file.exists, what="exit.json")
    assert json.loads(exit_file.read_text())["exit_code"] == 7
    again = MonitorHandle.connect(state_dir)
    wait_for(lambda: not again.alive(), what="the monitor to exit")
    status = run(again.wait())
    assert (status.state, status.exit_code, status.oom_killed) == (MonitorState.EXITED, 7, False)
    record = again.exit_status()
    assert record is not None and record.exit_code == 7 and record.finished_at


def test_oom_killed_container_is_reported(env: MonitorEnv) -> None:
    bundle = env.bundle(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                        memory_limit=32 * MiB, memory_swap=32 * MiB)
    handle = env.spawn(bundle)

    async def scenario() -> Any:
        await handle.start()
        return await handle.wait()

    status = run(scenario())
    assert status.exit_code == 128 + signal.SIGKILL
    assert status.oom_killed is True
    record = handle.exit_status()
    assert record is not None and record.oom_killed is True


def test_log_rotation_keeps_n_files_and_follow_crosses_rotations(env: MonitorEnv) -> None:
    rows, max_size, max_files = 2000, 16 * 1024, 3
    script = (f"i=0; while [ $i -lt {rows} ]; do i=$((i+1)); echo row $i; "
              "[ $((i % 50)) -eq 0 ] && usleep 20000; done; true")
    bundle = env.bundle(["sh", "-c", script])
    handle = env.spawn(bundle, log_max_size=max_size, log_max_files=max_files)

    async def scenario() -> list[tuple[str, bytes]]:
        exited = asyncio.Event()
        got: list[tuple[str, bytes]] = []

        async def follower() -> None:
            async for stream, data in read_logs(handle.log_path, follow=True, exited=exited):
                got.append((stream, data))

        task = asyncio.create_task(follower())
        await handle.start()
        status = await handle.wait()
        assert status.exit_code == 0
        exited.set()
        await asyncio.wait_for(task, 10)
        return got

    followed = run(scenario(), timeout=60)
    assert followed == [("stdout", f"row {i}\n".encode()) for i in range(1, rows + 1)]
    names = sorted(p.name for p in Path(handle.state_dir).iterdir() if p.name.startswith("container-json.log"))
    assert names == ["container-json.log", "container-json.log.1", "container-json.log.2"]
    for name in names:
        assert (Path(handle.state_dir) / name).stat().st_size <= max_size
    kept = run(log_entries(handle))
    assert 0 < len(kept) < rows
    assert kept == followed[-len(kept):]


def test_create_failure_raises_the_runtime_error_and_leaves_nothing(env: MonitorEnv) -> None:
    bundle = env.bundle(["true"])
    bundle.process["cwd"] = "relative/dir"
    bundle.write()
    with pytest.raises(Unavailable) as info:
        env.spawn(bundle)
    message = str(info.value)
    assert message and "cwd" in message.lower(), message
    state = env.state_dir(bundle)
    wait_for(lambda: not (state / "monitor.pid").exists(), what="the failed monitor to clean up")
    assert not (state / "monitor.sock").exists()
    assert env.runtime_state(bundle.cid).returncode != 0
    with pytest.raises(Exception):  # noqa: B017 - NotFound: no container was ever created here
        MonitorHandle.connect(str(state))


def test_second_monitor_in_the_same_directory_is_refused(env: MonitorEnv) -> None:
    bundle = env.bundle(["sleep", "5"])
    handle = env.spawn(bundle)
    with pytest.raises(Conflict):
        MonitorHandle.spawn(handle.state_dir, bundle.cid, str(bundle.path), str(env.runtime),
                            runtime_root=str(env.root))
    assert run(handle.status()).state is MonitorState.CREATED


def test_monitor_is_cheap(env: MonitorEnv, record_property: Any) -> None:
    """RSS of a live monitor under 15 MB (25 MB forked from the warm fork server, which has the runtime
    loaded); spawn (monitor start + runtime create) timed for the record."""
    bundle = env.bundle(["sleep", "30"])
    t0 = time.perf_counter()
    handle = env.spawn(bundle)
    spawn_ms = (time.perf_counter() - t0) * 1000
    t1 = time.perf_counter()
    run(handle.start())
    start_ms = (time.perf_counter() - t1) * 1000
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{handle.monitor_pid}/status").read_text().splitlines())
    rss_kb = int(fields["VmRSS"].split()[0])
    record_property("monitor_rss_kb", rss_kb)
    record_property("spawn_ms", round(spawn_ms, 1))
    record_property("start_ms", round(start_ms, 1))
    print(f"\n[{env.name}] monitor RSS {rss_kb} kB, spawn+create {spawn_ms:.0f} ms, start {start_ms:.0f} ms")
    assert rss_kb < (25 if env.fork_server else 15) * 1024
    if env.fork_server is not None:
        assert Path(f"/proc/{handle.monitor_pid}/comm").read_text().strip() == "berth-monitor"


def test_deep_state_directory_uses_short_socket_paths(env: MonitorEnv) -> None:
    """sun_path holds 108 bytes: a state directory deeper than that still works (the client connects
    through /proc/self/fd/N, the runtime reaches the console socket through /proc/<monitor>/cwd)."""
    bundle = env.bundle(["sh", "-c", "stty size"], terminal=True)
    deep = env.tmp / ("d" * 60) / ("e" * 60) / bundle.cid
    assert len(str(deep / "monitor.sock")) > 108
    env.started.append((deep, bundle.cid))
    handle = MonitorHandle.spawn(str(deep), bundle.cid, str(bundle.path), str(env.runtime),
                                 runtime_root=str(env.root), tty=True)

    async def scenario() -> int | None:
        await handle.resize(7, 33)
        await handle.start()
        return (await handle.wait()).exit_code

    assert run(scenario()) == 0
    assert run(log_entries(handle)) == [("stdout", b"7 33\r\n")]


def test_a_client_that_does_not_read_is_dropped_without_blocking_the_container(env: MonitorEnv) -> None:
    first, last = 1_000_000_000, 1_000_600_000  # 600001 lines of 11 bytes: 6.6 MB, more than a client may lag
    total = (last - first + 1) * 11
    bundle = env.bundle(["seq", str(first), str(last)])
    handle = env.spawn(bundle)

    async def scenario() -> tuple[int, int, int | None]:
        stalled_reader, stalled_writer = await handle.attach()  # not read until the end
        reader, writer = await handle.attach()
        await handle.start()
        received = 0
        async for _stream, data in read_output(reader, False):
            received += len(data)
        status = await handle.wait()
        stalled = 0
        while chunk := await stalled_reader.read(1 << 20):
            stalled += len(chunk)
        writer.close()
        stalled_writer.close()
        return received, stalled, status.exit_code

    received, stalled, code = run(scenario(), timeout=60)
    assert code == 0
    assert received == total
    assert stalled < total, "the stalled client should have been disconnected"
    assert "dropping an attached client" in (Path(handle.state_dir) / "monitor.log").read_text()
    assert Path(handle.log_path).read_bytes().count(b"\n") == last - first + 1


def test_a_killed_monitor_is_reported_unavailable(env: MonitorEnv) -> None:
    bundle = env.bundle(["sleep", "30"])
    handle = env.spawn(bundle)
    run(handle.start())
    os.kill(handle.monitor_pid, signal.SIGKILL)
    wait_for(lambda: not handle.alive(), what="the monitor to die")
    assert alive(handle.pid), "the container outlives its monitor"
    with pytest.raises(Unavailable):
        run(handle.status())
    with pytest.raises(Unavailable):
        run(handle.wait())
    assert handle.exit_status() is None


def test_module_runs_in_the_foreground_with_a_ready_pipe(env: MonitorEnv) -> None:
    """``python -m backend.engine.runtime.monitor --foreground``: the documented command line, not
    daemonized; it reports on the ready pipe and exits 0 once the container has exited."""
    bad = subprocess.run([sys.executable, "-m", "backend.engine.runtime.monitor", "--bogus"], cwd=REPO,
                         capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "usage:" in bad.stderr
    bundle = env.bundle(["sh", "-c", "echo hi; exit 4"])
    state = env.state_dir(bundle)
    env.started.append((state, bundle.cid))
    ready_r, ready_w = os.pipe()
    monitor = subprocess.Popen(
        [sys.executable, "-m", "backend.engine.runtime.monitor", "--foreground", "--dir", str(state),
         "--id", bundle.cid, "--bundle", str(bundle.path), "--runtime", str(env.runtime),
         "--runtime-root", str(env.root), f"--ready-fd={ready_w}"],
        cwd=REPO, pass_fds=(ready_w,), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(ready_w)
    try:
        with os.fdopen(ready_r, "rb") as ready:
            report = json.loads(ready.readline())
        assert report["ok"] is True and report["pid"] > 0
        handle = MonitorHandle.connect(str(state))
        assert handle.monitor_pid == monitor.pid and handle.pid == report["pid"]

        async def scenario() -> Any:
            await handle.start()
            return await handle.wait()

        assert run(scenario()).exit_code == 4
        assert monitor.wait(10) == 0
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()
        assert monitor.stderr is not None
        monitor.stderr.close()
    assert run(log_entries(handle)) == [("stdout", b"hi\n")]
