"""The last steps of a container process before exec: fds, terminal, identity, capabilities, seccomp.

Everything here runs in a child that is already inside the container's namespaces and root. The
modules it needs were imported before the fork; nothing here imports, loads a library or asks NSS
(no user or group names: ids only). Guarantees on success of ``finalize_and_exec``:
- only fds 0, 1, 2 (and ``preserve_fds`` more, from 3 up) survive exec;
- the working directory is inside the container root (a cwd that resolves outside is refused);
- the process is non-dumpable until exec, so no process in the container can open its
  ``/proc/<pid>/exe`` (the interpreter) for writing.
"""

from __future__ import annotations

import array  # noqa: F401  (socket.send_fds needs it; imported before entering the container)
import fcntl
import os
import resource
import signal
import socket
import struct
import termios
from collections.abc import Sequence

from backend.engine.runtime import syscalls as sc
from backend.engine.runtime.capabilities import apply_capabilities, drop_bounding
from backend.engine.runtime.seccomp import CompiledFilter
from backend.engine.runtime.spec import Process

_TIOCSPTLCK = 0x40045431
_TIOCGPTN = 0x80045430


class SetupError(Exception):
    """The process cannot be started as configured. The message is one line for the user."""


def close_other_fds(keep: Sequence[int]) -> None:
    """Close every descriptor >= 3 that is not in ``keep``."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def find_executable(process: Process) -> str:
    """Resolve ``args[0]`` in the current root using the process's PATH. Raises SetupError."""
    name = process.args[0]
    if "/" in name:
        path = name if name.startswith("/") else os.path.join(process.cwd, name)
        if not os.path.exists(path):
            raise SetupError(f'exec: "{name}": stat {name}: no such file or directory')
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise SetupError(f'exec: "{name}": permission denied')
        return path
    search = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for item in process.env:
        if item.startswith("PATH="):
            search = item[5:]
    for folder in search.split(":"):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f'exec: "{name}": executable file not found in $PATH')


def setup_terminal(console: socket.socket, process: Process) -> None:
    """Open a pty inside the container, make it the controlling terminal on fds 0-2 and hand the
    master to the caller over ``console`` (SCM_RIGHTS), as runc's --console-socket does."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, struct.pack("I", 0)))[0]
        if process.console_size:
            rows, cols = process.console_size
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        slave = os.open(f"/dev/pts/{number}", os.O_RDWR | os.O_NOCTTY)
        os.fchown(slave, process.uid, -1)
        socket.send_fds(console, [b"/dev/ptmx"], [master])
    finally:
        os.close(master)
        console.close()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def apply_rlimits(process: Process) -> None:
    """Set the configured rlimits."""
    for limit in process.rlimits:
        try:
            resource.setrlimit(limit.resource, (limit.soft, limit.hard))
        except (ValueError, OSError) as exc:
            raise SetupError(f"setting rlimit {limit.resource} to {limit.soft}/{limit.hard}: {exc}") from exc


_MAX_PASSWD = 4 * 1024 * 1024


def home_of(uid: int) -> str:
    """The home directory of ``uid`` in the current root's /etc/passwd, or ``/``.

    The file is parsed here, not looked up through NSS: the image's NSS modules are never loaded.
    Malformed lines are skipped.
    """
    try:
        with open("/etc/passwd", "rb") as f:
            data = f.read(_MAX_PASSWD)
    except OSError:
        return "/"
    for line in data.split(b"\n"):
        fields = line.split(b":")
        if len(fields) >= 6 and fields[2] == str(uid).encode():
            return fields[5].decode("utf-8", "replace") or "/"
    return "/"


def reset_signals() -> None:
    """Give the process default signal dispositions and an empty signal mask, as runc does.

    Python ignores SIGPIPE and SIGXFSZ for itself; an ignored disposition survives exec, so without
    this ``yes | head`` would never end inside the container.
    """
    for number in range(1, signal.NSIG):
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(number) is not signal.SIG_DFL:
                signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _enter_cwd(cwd: str) -> None:
    try:
        os.chdir(cwd)
        here = os.getcwd()
    except OSError as exc:
        raise SetupError(f"cannot enter working directory {cwd}: {exc.strerror}") from exc
    if not here.startswith("/"):
        raise SetupError(f"working directory {cwd} is outside the container root")


def finalize_and_exec(process: Process, executable: str, seccomp: CompiledFilter | None,
                      preserve_fds: int = 0) -> None:
    """Drop to the configured identity and privileges and exec. Returns only by raising.

    Raises SetupError or OSError if a step fails (the caller reports it and exits non-zero).
    """
    close_other_fds(range(3, 3 + preserve_fds))
    env = dict(item.split("=", 1) for item in process.env)
    if "HOME" not in env:
        env["HOME"] = home_of(process.uid)
    if seccomp is not None and not process.no_new_privileges:
        seccomp.load()
    caps = process.capabilities
    drop_bounding(caps)
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(process.additional_gids))
    os.setresgid(process.gid, process.gid, process.gid)
    os.setresuid(process.uid, process.uid, process.uid)
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    _enter_cwd(process.cwd)
    apply_capabilities(caps)
    if process.no_new_privileges:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp is not None and process.no_new_privileges:
        seccomp.load()
    if process.umask is not None:
        os.umask(process.umask)
    sc.close_range_cloexec(3 + preserve_fds)
    reset_signals()
    os.execve(executable, list(process.args), env)
