"""SSH to a machine (paramiko): the pinned host key, commands, SFTP, channels to guest-local TCP ports and to the
guest engine's unix socket (direct-streamlocal, through backend.api's transport).

The only host key accepted is the one pinned at provisioning (``RejectPolicy``; nothing is ever added
automatically). Every paramiko or socket failure is wrapped once here as MachineError (HostKeyChanged when
the guest presents another key).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko

from backend.api.ssh_transport import StreamlocalTransport
from backend.machine.errors import HostKeyChanged, MachineError


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def _public_key(line: str) -> paramiko.PKey:
    kind, _, rest = line.strip().partition(" ")
    data = rest.split()[0] if rest.split() else ""
    try:
        return paramiko.PKey.from_type_string(kind, base64.b64decode(data))
    except (ValueError, paramiko.SSHException) as exc:
        raise MachineError(f"the pinned host key is unreadable: {exc}") from exc


@contextlib.contextmanager
def _raw_terminal() -> Iterator[None]:
    """stdin in raw mode while inside (when it is a POSIX terminal); applied at once, so type-ahead stays."""
    stdin = sys.stdin.fileno()
    if sys.platform == "win32" or not os.isatty(stdin):
        yield
        return
    import termios
    import tty
    saved = termios.tcgetattr(stdin)
    tty.setraw(stdin, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def _pump_stdin(channel: paramiko.Channel) -> None:
    """Send what the user types to ``channel`` until stdin ends (then end the channel's input)."""
    stdin = sys.stdin.fileno()
    try:
        while data := os.read(stdin, 4096):
            channel.sendall(data)
        channel.shutdown_write()
    except (OSError, paramiko.SSHException):
        pass


class GuestSSH:
    """One SSH connection to a machine as root. Close it with :meth:`close`."""

    def __init__(self, port: int, user_key: Path, pinned_host_key: Path, *, timeout: float = 15.0) -> None:
        """Connect to ``127.0.0.1:port``. Raises HostKeyChanged when the guest's key is not the pinned one,
        MachineError for any other failure."""
        self._client = paramiko.SSHClient()
        host_key = _public_key(pinned_host_key.read_text())
        self._client.get_host_keys().add(f"[127.0.0.1]:{port}", host_key.get_name(), host_key)
        self._client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self._client.connect("127.0.0.1", port, username="root", pkey=paramiko.Ed25519Key.from_private_key_file(
                str(user_key)), allow_agent=False, look_for_keys=False, timeout=timeout, banner_timeout=timeout,
                auth_timeout=timeout, transport_factory=StreamlocalTransport)
        except paramiko.BadHostKeyException as exc:
            self._client.close()
            raise HostKeyChanged(f"the machine's host key changed: pinned {fingerprint(exc.expected_key)}, the guest "
                                 f"presented {fingerprint(exc.key)} (refusing to connect; re-create the machine if "
                                 "this is expected)") from exc
        except (paramiko.SSHException, OSError) as exc:
            self._client.close()
            raise MachineError(f"cannot connect to the machine over SSH (127.0.0.1:{port}): {exc}") from exc
        transport = self._client.get_transport()
        assert isinstance(transport, StreamlocalTransport)
        transport.set_keepalive(15)
        self.transport = transport

    def run(self, command: str, *, timeout: float = 600.0) -> str:
        """Run ``command`` in the guest; its stdout. Raises MachineError if it exits non-zero."""
        try:
            _, stdout, stderr = self._client.exec_command(command, timeout=timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = stdout.channel.recv_exit_status()
        except (paramiko.SSHException, OSError) as exc:
            raise MachineError(f"running {command!r} in the machine: {exc}") from exc
        if code != 0:
            raise MachineError(f"{command!r} failed in the machine ({code}): {err.strip() or out.strip()}")
        return out

    def put(self, local: Path, remote: str) -> None:
        """Copy ``local`` to ``remote`` (a guest path) over SFTP. Raises MachineError."""
        try:
            with self._client.open_sftp() as sftp:
                sftp.put(str(local), remote)
        except (paramiko.SSHException, OSError) as exc:
            raise MachineError(f"copying {local.name} into the machine: {exc}") from exc

    def open_tcp(self, port: int, origin: tuple[str, int] = ("127.0.0.1", 0)) -> paramiko.Channel:
        """A channel to the guest's ``127.0.0.1:port`` (direct-tcpip). Raises MachineError."""
        try:
            return self.transport.open_channel("direct-tcpip", ("127.0.0.1", port), origin, timeout=10)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise MachineError(f"cannot reach port {port} in the machine: {exc}") from exc

    def open_unix(self, path: str) -> paramiko.Channel:
        """A channel to the guest's unix socket ``path`` (OpenSSH's direct-streamlocal). Raises MachineError."""
        try:
            return self.transport.open_streamlocal(path, timeout=10)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise MachineError(f"cannot reach {path} in the machine: {exc}") from exc

    def interactive(self) -> int:
        """An interactive shell on this terminal (raw mode on POSIX terminals; what was typed ahead is kept);
        its exit status. Raises MachineError."""
        channel = self.transport.open_session()
        try:
            size = shutil.get_terminal_size()
            channel.get_pty(term="xterm", width=size.columns, height=size.lines)
            channel.invoke_shell()
            with _raw_terminal():
                threading.Thread(target=_pump_stdin, args=(channel,), daemon=True).start()
                while data := channel.recv(65536):
                    sys.stdout.buffer.write(data)
                    sys.stdout.flush()
            return channel.recv_exit_status()
        except (paramiko.SSHException, OSError) as exc:
            raise MachineError(f"ssh session: {exc}") from exc
        finally:
            channel.close()

    def close(self) -> None:
        self._client.close()
