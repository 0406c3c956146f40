"""Drive OCI runtimes (berth-runtime, runc) through their command line, for the runtime tests.

Everything a test starts is tracked and torn down by :meth:`Runtime.cleanup` and
:meth:`BundleFactory.cleanup`, even when the test fails: containers are deleted with ``delete
--force``; processes still alive in the test's cgroups (or recorded as a container's init) are
SIGKILLed by pid; the cgroup directories are removed from every hierarchy.

Container stdio always goes to files, never to pipes: a detached container inherits the runtime's
stdio, and a pipe it holds open would make the test wait for the container rather than the runtime.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.engine.runtime.defaults import DEFAULT_RLIMITS, docker_default_config
from tests.fixtures.rootfs import copy_rootfs

DEFAULT_TIMEOUT = 10.0
# One parent per test session, so concurrent sessions never remove each other's parent.
CGROUP_PARENT = f"/berth-test-{os.getpid()}"
RUNTIME_NAMES = ("berth", "runc")
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


class RuntimeTimeout(AssertionError):
    """A runtime command did not finish in time (it was killed)."""


class RuntimeFailed(AssertionError):
    """A runtime command that had to succeed exited non-zero."""


# ---------------------------------------------------------------------------------------------------
# host facts


def runtime_binary(name: str) -> Path | None:
    """The executable for ``name``: runc from PATH, berth-runtime next to this interpreter."""
    if name == "runc":
        found = shutil.which("runc")
        return Path(found) if found else None
    if name == "berth":
        path = Path(sys.executable).parent / "berth-runtime"
        return path if path.exists() else None
    raise ValueError(f"unknown runtime {name!r}")


def host_safe_rlimits() -> list[tuple[str, int, int]]:
    """Docker's default rlimits, lowered to what this process may set.

    Raising a hard limit needs CAP_SYS_RESOURCE; test sandboxes often lack it, and then runc fails
    with ``error setting rlimit type 7: operation not permitted``.
    """
    result = []
    for kind, soft, hard in DEFAULT_RLIMITS:
        res = getattr(resource, kind)
        _, host_hard = resource.getrlimit(res)
        if host_hard != resource.RLIM_INFINITY:
            hard = min(hard, host_hard)
            soft = min(soft, hard)
        result.append((kind, soft, hard))
    return result


def reap(pids: Iterable[int]) -> None:
    """waitpid(WNOHANG) each pid that is a zombie child of ours; ignore the others."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def process_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and state not in ("Z", "X")


def umount_detach(path: str) -> None:
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount2({path}): {os.strerror(err)}")


# ---------------------------------------------------------------------------------------------------
# mountinfo


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    vfs_options: frozenset[str]
    fstype: str
    source: str
    super_options: frozenset[str]


def _unescape(field_: str) -> str:
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and i + 3 < len(field_) and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        entries.append(
            MountEntry(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                vfs_options=frozenset(fields[5].split(",")),
                fstype=rfields[0] if rfields else "",
                source=_unescape(rfields[1]) if len(rfields) > 1 else "",
                super_options=frozenset(rfields[2].split(",")) if len(rfields) > 2 else frozenset(),
            )
        )
    return entries


def host_mounts() -> list[MountEntry]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


# ---------------------------------------------------------------------------------------------------
# cgroups


def cgroup_hierarchies() -> list[Path]:
    """Mount points of every cgroup v1 hierarchy and of the v2 hierarchy, as the host sees them."""
    return sorted({Path(m.mount_point) for m in host_mounts() if m.fstype in ("cgroup", "cgroup2")}, key=str)


def cgroup_dirs(cgroups_path: str) -> list[Path]:
    """The existing directories for ``cgroups_path`` (absolute, as in config.json) in every hierarchy."""
    rel = cgroups_path.strip("/")
    if not rel:
        return []
    return [h / rel for h in cgroup_hierarchies() if (h / rel).is_dir()]


def cgroup_pids(directory: Path) -> set[int]:
    pids: set[int] = set()
    for sub, _dirs, _files in os.walk(directory):
        with contextlib.suppress(OSError):
            pids.update(int(x) for x in (Path(sub) / "cgroup.procs").read_text().split())
    return pids


def remove_cgroup(cgroups_path: str, *, timeout: float = 5.0) -> list[str]:
    """Kill what is left in ``cgroups_path`` (by pid, SIGKILL) and remove its directories, deepest
    first, in every hierarchy. Returns the directories that could not be removed."""
    dirs = cgroup_dirs(cgroups_path)
    for d in dirs:
        # a frozen (paused) cgroup would keep SIGKILLed tasks alive
        with contextlib.suppress(OSError):
            if (d / "freezer.state").exists():
                (d / "freezer.state").write_text("THAWED")
        with contextlib.suppress(OSError):
            if (d / "cgroup.freeze").exists():
                (d / "cgroup.freeze").write_text("0")
    deadline = time.monotonic() + timeout
    failed: list[str] = []
    for d in dirs:
        while True:
            for pid in cgroup_pids(d):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                for sub, _dirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
                    with contextlib.suppress(FileNotFoundError):
                        os.rmdir(sub)
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    failed.append(f"{d}: {exc}")
                    break
                time.sleep(0.02)
    return failed


def remove_empty_parent(parent: str = CGROUP_PARENT) -> None:
    for h in cgroup_hierarchies():
        with contextlib.suppress(OSError):
            os.rmdir(h / parent.strip("/"))


# ---------------------------------------------------------------------------------------------------
# bundles


@dataclass
class Bundle:
    """An OCI bundle: ``path/config.json``; ``config`` is written by :meth:`write`."""

    path: Path
    cid: str
    config: dict[str, Any]
    rootfs: Path
    cgroups_path: str

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def write(self) -> Bundle:
        tmp = self.path / "config.json.tmp"
        tmp.write_text(json.dumps(self.config, indent=2))
        os.chmod(tmp, 0o644)
        tmp.rename(self.config_path)
        return self

    @property
    def process(self) -> dict[str, Any]:
        proc = self.config["process"]
        assert isinstance(proc, dict)
        return proc

    @property
    def linux(self) -> dict[str, Any]:
        linux = self.config["linux"]
        assert isinstance(linux, dict)
        return linux


def new_container_id(prefix: str = "bt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class BundleFactory:
    """Makes bundles whose ``root.path`` is the cached busybox rootfs (read-only) or, with
    ``writable``/``world_traversable``/``rootfs_setup``, a private copy of it."""

    def __init__(self, base: Path, rootfs: Path) -> None:
        self.base = base
        self.cached_rootfs = rootfs
        self.cgroups: list[str] = []
        self._public_dirs: list[Path] = []

    def __call__(
        self,
        args: Sequence[str],
        *,
        writable: bool = False,
        world_traversable: bool = False,
        rootfs_setup: Callable[[Path], None] | None = None,
        cid: str | None = None,
        **config: Any,
    ) -> Bundle:
        """A new bundle with a fresh container id and cgroupsPath ``/berth-test/<id>``.

        ``world_traversable`` puts the bundle under a mode-0755 directory in /tmp (pytest's tmp_path
        is 0700), for user namespaces whose root is not host root. ``rootfs_setup`` edits the copy.
        Extra keywords go to :func:`docker_default_config`.
        """
        cid = cid or new_container_id()
        if world_traversable:
            parent = Path(tempfile.mkdtemp(prefix="berth-test-", dir="/tmp"))
            os.chmod(parent, 0o755)
            self._public_dirs.append(parent)
        else:
            parent = self.base
        path = parent / cid
        path.mkdir(parents=True)
        os.chmod(path, 0o755)
        copy = writable or world_traversable or rootfs_setup is not None
        if copy:
            rootfs = copy_rootfs(self.cached_rootfs, path / "rootfs")
            if rootfs_setup is not None:
                rootfs_setup(rootfs)
        else:
            rootfs = self.cached_rootfs
        cgroups_path = config.pop("cgroups_path", f"{CGROUP_PARENT}/{cid}")
        if cgroups_path:
            self.cgroups.append(cgroups_path)
        config.setdefault("rlimits", host_safe_rlimits())
        config.setdefault("readonly_rootfs", not writable)
        cfg = docker_default_config(args, rootfs=str(rootfs), cgroups_path=cgroups_path, **config)
        return Bundle(path=path, cid=cid, config=cfg, rootfs=rootfs, cgroups_path=cgroups_path).write()

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        for cg in self.cgroups:
            problems.extend(remove_cgroup(cg))
        for d in self._public_dirs:
            shutil.rmtree(d, ignore_errors=True)
        return problems


# ---------------------------------------------------------------------------------------------------
# runtimes


@dataclass
class Foreground:
    """A ``run`` in the foreground, started in the background of the test."""

    runtime: Runtime
    cid: str
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stdout():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.runtime.name} run exited {self.proc.returncode} before printing {text!r}; "
                    f"stdout={self.stdout()!r} stderr={self.stderr()!r}"
                )
            if time.monotonic() > deadline:
                raise RuntimeTimeout(f"{self.runtime.name}: no {text!r} on stdout after {timeout}s")
            time.sleep(0.01)

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeTimeout(
                f"{self.runtime.name} run {self.cid} did not exit within {timeout}s; stderr={self.stderr()!r}"
            ) from None
        finally:
            self.runtime.forget_foreground(self)


class Runtime:
    """One runtime binary with its own ``--root`` state directory."""

    def __init__(self, name: str, binary: Path, workdir: Path) -> None:
        self.name = name
        self.binary = binary
        self.workdir = workdir
        self.state_root = workdir / "state"
        self.state_root.mkdir(parents=True, exist_ok=True)
        self.containers: dict[str, int | None] = {}
        self._foreground: list[Foreground] = []
        self._counter = 0
        self.last_io: tuple[Path, Path] = (workdir / "none.out", workdir / "none.err")
        self.last_create_io = self.last_io

    def __repr__(self) -> str:
        return f"Runtime({self.name})"

    # -- plumbing

    def _files(self, tag: str) -> tuple[Path, Path]:
        self._counter += 1
        base = self.workdir / f"io-{self._counter:03d}-{tag}"
        return base.with_suffix(".out"), base.with_suffix(".err")

    def argv(self, *args: str) -> list[str]:
        return [str(self.binary), "--root", str(self.state_root), *args]

    def cli(
        self,
        *args: str,
        timeout: float = DEFAULT_TIMEOUT,
        stdin: int | None = subprocess.DEVNULL,
        pass_fds: Sequence[int] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Run ``<binary> --root <state> *args``; stdout and stderr are captured through files.

        Raises RuntimeTimeout (after killing the runtime process) when it takes longer than timeout.
        """
        out_path, err_path = self._files(args[0] if args else "cli")
        self.last_io = (out_path, err_path)
        argv = self.argv(*args)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, pass_fds=tuple(pass_fds))
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeTimeout(
                f"{self.name}: {' '.join(argv)} did not finish within {timeout}s; "
                f"stderr={err_path.read_text(errors='replace')!r}"
            ) from None
        return subprocess.CompletedProcess(
            argv, rc, out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
        )

    def must(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        res = self.cli(*args, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeFailed(f"{self.name} {' '.join(args)} exited {res.returncode}: stderr={res.stderr.strip()!r}")
        return res

    def track(self, cid: str, pid: int | None = None) -> None:
        if pid is not None or cid not in self.containers:
            self.containers[cid] = pid

    # -- verbs

    def run(
        self, bundle: Bundle, *extra: str, cid: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``run -b <bundle> <id>`` in the foreground; always ``delete --force`` afterwards."""
        cid = cid or bundle.cid
        self.track(cid)
        try:
            return self.cli("run", "-b", str(bundle.path), *extra, cid, timeout=timeout)
        finally:
            self.delete(cid, force=True)

    def run_background(self, bundle: Bundle, *extra: str, cid: str | None = None) -> Foreground:
        """Start ``run -b <bundle> <id>`` in the foreground of a child process and return at once."""
        cid = cid or bundle.cid
        self.track(cid)
        out_path, err_path = self._files("run")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                self.argv("run", "-b", str(bundle.path), *extra, cid),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        fg = Foreground(self, cid, proc, out_path, err_path)
        self._foreground.append(fg)
        return fg

    def forget_foreground(self, fg: Foreground) -> None:
        if fg in self._foreground:
            self._foreground.remove(fg)

    def create(
        self,
        bundle: Bundle,
        *extra: str,
        cid: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``create -b <bundle> [extra] <id>``; the container's stdio is the files of this call."""
        cid = cid or bundle.cid
        self.track(cid)
        res = self.cli("create", "-b", str(bundle.path), *extra, cid, timeout=timeout)
        self.last_create_io = self.last_io
        if check and res.returncode != 0:
            raise RuntimeFailed(f"{self.name} create {cid} exited {res.returncode}: {res.stderr.strip()!r}")
        if res.returncode == 0:
            with contextlib.suppress(AssertionError, ValueError):
                self.track(cid, int(self.state(cid)["pid"]))
        return res

    def start(self, cid: str) -> subprocess.CompletedProcess[str]:
        return self.must("start", cid)

    def create_started(self, bundle: Bundle, *extra: str) -> tuple[str, Path]:
        """create + start; returns (id, path of the file the container's stdout goes to)."""
        self.create(bundle, *extra)
        out_file = self.last_create_io[0]
        self.start(bundle.cid)
        return bundle.cid, out_file

    def state(self, cid: str) -> dict[str, Any]:
        res = self.must("state", cid)
        try:
            data = json.loads(res.stdout)
        except ValueError as exc:
            raise AssertionError(f"{self.name} state {cid}: not JSON: {res.stdout!r}") from exc
        assert isinstance(data, dict), data
        return data

    def wait_status(self, cid: str, *statuses: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st.get("status") in statuses:
                return st
            if time.monotonic() > deadline:
                raise RuntimeTimeout(f"{self.name}: {cid} still {st.get('status')!r}, wanted {statuses}")
            time.sleep(0.01)

    def kill(self, cid: str, sig: str = "KILL") -> subprocess.CompletedProcess[str]:
        return self.must("kill", cid, sig)

    def delete(self, cid: str, *, force: bool = False) -> subprocess.CompletedProcess[str]:
        args = ["delete", "--force", cid] if force else ["delete", cid]
        try:
            return self.cli(*args)
        except RuntimeTimeout as exc:
            return subprocess.CompletedProcess(self.argv(*args), -9, "", str(exc))

    def exec(self, cid: str, *args: str, timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """``exec [options...] <id> <args...>``: pass options before ``--`` as ``("--cwd", "/x")``.

        Call as ``exec(cid, "sh", "-c", "...")`` or with options ``exec(cid, "--env", "A=b", "--",
        "sh")``: everything before ``"--"`` is an option, placed before the id.
        """
        if "--" in args:
            i = args.index("--")
            opts, cmd = args[:i], args[i + 1 :]
        else:
            opts, cmd = (), args
        return self.cli("exec", *opts, cid, *cmd, timeout=timeout)

    # -- teardown

    def cleanup(self) -> list[str]:
        """Delete every container this object touched; kill leftovers by pid; reap zombies."""
        problems: list[str] = []
        for fg in list(self._foreground):
            if fg.proc.poll() is None:
                fg.proc.kill()
            fg.proc.wait()
        self._foreground.clear()
        for cid, pid in list(self.containers.items()):
            if pid is None:
                with contextlib.suppress(AssertionError, ValueError, KeyError):
                    pid = int(self.state(cid)["pid"]) or None
            res = self.delete(cid, force=True)
            if pid is not None and alive(pid):
                problems.append(f"{self.name}: {cid} init {pid} still alive after delete --force")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            leftover = self.state_root / cid
            if leftover.exists() and res.returncode != 0:
                problems.append(f"{self.name}: delete --force {cid} failed: {res.stderr.strip()!r}")
            if pid is not None:
                deadline = time.monotonic() + 2
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
                reap([pid])
        self.containers.clear()
        return problems


# ---------------------------------------------------------------------------------------------------
# console socket


class ConsoleSocket:
    """A unix socket listening for the pty master a runtime sends for ``process.terminal``."""

    def __init__(self) -> None:
        # sun_path is limited to 108 bytes; pytest's tmp_path can be longer
        self.dir = Path(tempfile.mkdtemp(prefix="bt-cs-", dir="/tmp"))
        self.path = self.dir / "console.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(1)
        self.master_fd: int | None = None

    def receive(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[bytes, int]:
        """Accept one connection and receive (message, pty master fd)."""
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(timeout)
            msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
        if not fds:
            raise AssertionError(f"console socket: message {msg!r} carried no file descriptor")
        for extra in fds[1:]:
            os.close(extra)
        self.master_fd = fds[0]
        return msg, fds[0]

    def read_until_closed(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Read the pty master until the slave side is closed (EIO) or EOF."""
        assert self.master_fd is not None
        os.set_blocking(self.master_fd, False)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master_fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master_fd, 65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return data
                raise
            if not chunk:
                return data
            data += chunk
        raise RuntimeTimeout(f"pty still open after {timeout}s; read so far: {data!r}")

    def close(self) -> None:
        if self.master_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.master_fd)
            self.master_fd = None
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> ConsoleSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------
# comparing runtimes


def compare_with_reference(
    runtime: Runtime,
    reference: Runtime | None,
    scenario: Callable[[Runtime], Any],
    *,
    what: str = "observation",
) -> Any:
    """Run ``scenario`` on ``runtime``; when ``reference`` (runc) is given, run it there too and
    assert both observations are equal. Returns the runtime's observation."""
    got = scenario(runtime)
    if reference is not None:
        want = scenario(reference)
        assert got == want, (
            f"{what} differs between {runtime.name} and {reference.name}:\n"
            f"  {runtime.name}: {got!r}\n  {reference.name}: {want!r}"
        )
    return got


def status_fields(text: str, keys: Iterable[str]) -> dict[str, str]:
    """``Key:\tvalue`` lines of /proc/<pid>/status, restricted to ``keys``."""
    wanted = set(keys)
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in wanted:
            out[key] = value.strip()
    return out


CAP_NUMBERS: Mapping[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}


def cap_mask(names: Iterable[str]) -> str:
    """The 16-hex-digit mask /proc/<pid>/status prints for a capability set."""
    mask = 0
    for name in names:
        mask |= 1 << CAP_NUMBERS[name]
    return f"{mask:016x}"
