"""Interactive docker CLI sessions against a real berthd, through real pseudo-terminals.

The docker CLI runs on the slave side of a fresh pty (stdin, stdout and stderr); the test types into
the master and reads what the CLI prints. Window sizes are set on the pty with TIOCSWINSZ, and a change
mid-session is announced to the CLI with SIGWINCH, as a terminal emulator does.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator

import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]

DETACH = b"\x10\x11"  # ctrl-p ctrl-q


class Terminal:
    """``docker *args`` on a new pty of ``rows`` x ``cols``. Use as a context manager: on exit the CLI
    is killed (by pid) if it still runs and the master is closed."""

    def __init__(self, env: dict[str, str], *args: str, rows: int = 24, cols: int = 80) -> None:
        self.master, slave = os.openpty()
        self._set_size(rows, cols)
        try:
            self.proc = subprocess.Popen(["docker", *args], stdin=slave, stdout=slave, stderr=slave, env=env,
                                         start_new_session=True)
        finally:
            os.close(slave)
        self.output = bytearray()
        self._seen = 0

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)

    def _set_size(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _read(self, timeout: float) -> bool:
        """Append what the CLI printed within ``timeout``; False once the pty is closed."""
        ready, _, _ = select.select([self.master], [], [], max(timeout, 0))
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError as exc:  # EIO: every slave descriptor is closed
            if exc.errno != errno.EIO:
                raise
            data = b""
        self.output += data
        return bool(data)

    def expect(self, pattern: bytes, timeout: float = 10) -> re.Match[bytes]:
        """The first match of ``pattern`` in output not yet consumed; consumes output up to its end."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.compile(pattern).search(bytes(self.output), self._seen)
            if match:
                self._seen = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0 or (not self._read(min(left, 0.5)) and self.proc.poll() is not None):
                raise AssertionError(f"no {pattern!r} in {bytes(self.output[self._seen:])!r}")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def resize(self, rows: int, cols: int) -> None:
        """Change the window size and tell the CLI, as a terminal emulator does."""
        self._set_size(rows, cols)
        self.proc.send_signal(signal.SIGWINCH)

    def exit_code(self, timeout: float = 10) -> int:
        """Wait for the CLI to exit, reading its output meanwhile; its exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        while self._read(0):
            pass
        return self.proc.wait(max(deadline - time.monotonic(), 0.1))


def stty_size_becomes(term: Terminal, rows: int, cols: int, timeout: float = 10) -> None:
    """Ask the shell for its size until it reports ``rows cols`` (a resize reaches it asynchronously;
    until the first one, stty may find no size at all)."""
    deadline = time.monotonic() + timeout
    while True:
        term.send(b"stty size\r")
        size = term.expect(rb"\n(\d+ \d+|stty: [^\r\n]*)\r?\n").group(1).decode()
        if size == f"{rows} {cols}":
            return
        assert time.monotonic() < deadline, f"the container sees {size}, not {rows} {cols}"
        time.sleep(0.05)


@pytest.fixture
def names(berthd_with_busybox: Berthd) -> Iterator[Callable[[], str]]:
    """Unique container names; every container so named is force-removed after the test."""
    made: list[str] = []

    def new() -> str:
        made.append(f"tty-{secrets.token_hex(4)}")
        return made[-1]

    yield new
    if made:
        berthd_with_busybox.docker("rm", "-f", *made, check=False)


def test_run_it(berthd_with_busybox: Berthd, names: Callable[[], str]) -> None:
    with Terminal(berthd_with_busybox.env, "run", "-it", "--rm", "--name", names(), "busybox", "sh",
                  rows=30, cols=100) as term:
        term.expect(rb"# ")
        term.send(b"echo hel''lo\r")
        term.expect(rb"\nhello\r\n")
        stty_size_becomes(term, 30, 100)
        term.resize(40, 120)
        stty_size_becomes(term, 40, 120)
        term.send(b"exit 3\r")
        assert term.exit_code() == 3


def test_exec_it(berthd_with_busybox: Berthd, names: Callable[[], str]) -> None:
    name = names()
    berthd_with_busybox.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    with Terminal(berthd_with_busybox.env, "exec", "-it", name, "sh", rows=30, cols=100) as term:
        term.expect(rb"# ")
        term.send(b"echo hel''lo\r")
        term.expect(rb"\nhello\r\n")
        stty_size_becomes(term, 30, 100)
        term.resize(40, 120)
        stty_size_becomes(term, 40, 120)
        term.send(b"exit 3\r")
        assert term.exit_code() == 3
    assert berthd_with_busybox.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"


def test_run_i_with_piped_stdin(berthd_with_busybox: Berthd) -> None:
    daemon = berthd_with_busybox
    result = daemon.docker("run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z", input="hello\nworld\n")
    assert result.stdout == "HELLO\nWORLD\n"
    big = "x" * 200_000 + "\n"
    assert daemon.docker("run", "-i", "--rm", "busybox", "sh", "-c", "wc -c", input=big).stdout.strip() == str(len(big))
    failed = daemon.docker("run", "-i", "--rm", "busybox", "sh", "-c", "read line; echo got $line; exit 4",
                           input="abc\n", check=False)
    assert (failed.returncode, failed.stdout) == (4, "got abc\n")


def test_attach_and_detach(berthd_with_busybox: Berthd, names: Callable[[], str]) -> None:
    daemon = berthd_with_busybox
    name = names()
    daemon.docker("run", "-dit", "--name", name, "busybox", "sh")
    with Terminal(daemon.env, "attach", name) as term:
        term.send(b"echo at''tached\r")
        term.expect(rb"\nattached\r\n")
        term.send(DETACH)
        assert term.exit_code() == 1  # as with dockerd: the CLI reports the detach as an error
        term.expect(rb"read escape sequence")
    assert daemon.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
    with Terminal(daemon.env, "attach", name) as term:
        term.send(b"echo ag''ain\r")
        term.expect(rb"\nagain\r\n")
        term.send(b"exit 5\r")
        assert term.exit_code() == 5
    assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "5"


@pytest.mark.parametrize("verb", [("attach",), ("exec", "-it")])
def test_missing_container(berthd_with_busybox: Berthd, verb: tuple[str, ...]) -> None:
    command = ("sh",) if verb[0] == "exec" else ()
    with Terminal(berthd_with_busybox.env, *verb, "tty-no-such-container", *command) as term:
        assert term.exit_code() == 1
        term.expect(rb"No such container: tty-no-such-container\r?\n")
    assert b"Traceback" not in term.output
    berthd_with_busybox.docker("version")


def test_exec_tty_detached_and_failing(berthd_with_busybox: Berthd, names: Callable[[], str]) -> None:
    daemon = berthd_with_busybox
    name = names()
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    daemon.docker("exec", "-d", "-t", name, "sh", "-c", "yes | head -c 300000; echo done > /bin/marker")
    deadline = time.monotonic() + 10
    while daemon.docker("exec", name, "cat", "/bin/marker", check=False).stdout != "done\n":
        assert time.monotonic() < deadline, "a detached exec with a tty did not run to its end"
        time.sleep(0.1)
    missing = daemon.docker("exec", "-t", name, "no-such-command", check=False)
    assert missing.returncode != 0 and "no-such-command" in missing.stdout + missing.stderr
    assert daemon.docker("exec", "-t", name, "sh", "-c", "exit 6", check=False).returncode == 6
