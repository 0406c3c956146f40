"""The Engine API over SSH: ``ssh://[user@]host[:port][/remote/socket]`` (paramiko).

One SSH connection per :class:`SSHTunnel` (so per client), made on first use and made again when it drops;
each HTTP connection is a channel of it to the remote engine's unix socket:

- an OpenSSH ``direct-streamlocal@openssh.com`` channel (OpenSSH's PROTOCOL, section 2.4: the socket path,
  then a reserved string and uint32), which paramiko does not build, so :class:`StreamlocalTransport` appends those
  fields to its channel-open message;
- to the address's path when it has one; else to dockerd's ``/var/run/docker.sock`` or berthd's
  ``/run/berth/berth.sock``, else ``docker system dial-stdio`` (what the docker CLI runs, so a remote
  ``DOCKER_HOST`` is honoured); the first that works is kept.

The channel reaches asyncio through a socketpair relayed by two threads; the HTTP client's end of it is an
ordinary stream, so :mod:`backend.api.http` and :mod:`backend.api.hijack` work unchanged.

Authentication is paramiko's: the user's agent (``SSH_AUTH_SOCK``) and keys (``~/.ssh/id_*`` and
``IdentityFile`` of ``~/.ssh/config``, whose ``HostName`` also applies). Host keys are
checked against ``~/.ssh/known_hosts`` (and the system's) with ``RejectPolicy``: an unknown or changed key
refuses the connection with a message saying how to fix it. Every failure is EngineUnreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import struct
import threading
from pathlib import Path

import paramiko

from backend.api.errors import EngineUnreachable
from backend.api.host import EngineAddress
from backend.api.http import MAX_HEAD, where

STREAMLOCAL = "direct-streamlocal@openssh.com"
REMOTE_SOCKETS = ("/var/run/docker.sock", "/run/berth/berth.sock")
DIAL_STDIO = "docker system dial-stdio"
_PIECE = 64 * 1024
_MSG_CHANNEL_OPEN = 90
_OPEN_PREFIX = bytes([_MSG_CHANNEL_OPEN]) + struct.pack(">I", len(STREAMLOCAL)) + STREAMLOCAL.encode()


class StreamlocalTransport(paramiko.Transport):
    """paramiko's Transport that can also open ``direct-streamlocal@openssh.com`` channels."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._open_lock = threading.Lock()
        self._socket_path: str | None = None

    def open_streamlocal(self, path: str, timeout: float | None) -> paramiko.Channel:
        """A channel to the server's unix socket ``path``. Raises paramiko.ChannelException when the server
        refuses (no such socket, forwarding disabled), SSHException when the connection is gone."""
        with self._open_lock:
            self._socket_path = path
            try:
                return self.open_channel(STREAMLOCAL, timeout=timeout)
            finally:
                self._socket_path = None

    def _send_user_message(self, data: paramiko.Message) -> None:
        path = self._socket_path
        if path is not None and isinstance(data, paramiko.Message) and data.asbytes().startswith(_OPEN_PREFIX):
            self._socket_path = None
            data.add_string(path)
            data.add_string("")
            data.add_int(0)
        paramiko.Transport._send_user_message(self, data)  # type: ignore[attr-defined]


def _relay(channel: paramiko.Channel, sock: socket.socket) -> None:
    """Copy bytes both ways. EOF from either side is passed on as a half-close (the client half-closes after
    an exec's stdin); both ends close once the socket hangs up: POLLHUP, when the client closed it or both
    directions have ended."""

    def down() -> None:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            while data := channel.recv(_PIECE):
                sock.sendall(data)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    reader = threading.Thread(target=down, name="berth-ssh-down", daemon=True)
    reader.start()
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        while data := sock.recv(_PIECE):
            channel.sendall(data)
        channel.shutdown_write()
        hangup = select.poll()
        hangup.register(sock, 0)  # POLLHUP is always reported
        hangup.poll()
    channel.close()
    reader.join()
    sock.close()


class SSHTunnel:
    """Connections to the engine at an ``ssh://`` address. Thread-safe; :meth:`close` ends the SSH connection."""

    def __init__(self, address: EngineAddress) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._target: str | None = address.path or None
        """The remote socket (or :data:`DIAL_STDIO`) that worked; None until one did."""

    async def open_connection(self, timeout: float | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new stream to the remote engine (``limit`` as http's). Raises EngineUnreachable."""
        channel = await asyncio.to_thread(self._channel, timeout)
        ours, theirs = socket.socketpair()
        threading.Thread(target=_relay, args=(channel, theirs), name="berth-ssh-relay", daemon=True).start()
        return await asyncio.open_connection(sock=ours, limit=MAX_HEAD)

    def close(self) -> None:
        """End the SSH connection (idempotent); open channels end with it."""
        with self._lock:
            self._drop()

    def _fail(self, why: str) -> EngineUnreachable:
        return EngineUnreachable(f"cannot reach the engine at {where(self.address)}: {why}")

    def _channel(self, timeout: float | None) -> paramiko.Channel:
        with self._lock:
            transport = self._transport(timeout)
            targets = [self._target] if self._target else [*REMOTE_SOCKETS, DIAL_STDIO]
            refused: list[str] = []
            for target in targets:
                try:
                    if target == DIAL_STDIO:
                        channel = transport.open_session(timeout=timeout)
                        channel.exec_command(DIAL_STDIO)
                    else:
                        channel = transport.open_streamlocal(target, timeout)
                except paramiko.ChannelException as exc:
                    refused.append(f"{target} ({exc.text})")
                    continue
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    self._drop()
                    raise self._fail(f"the SSH connection broke off: {exc}") from exc
                self._target = target
                return channel
            raise self._fail("the SSH server refused a channel to the engine's socket: " + ", ".join(refused))

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _transport(self, timeout: float | None) -> StreamlocalTransport:
        if self._client is not None:
            transport = self._client.get_transport()
            if isinstance(transport, StreamlocalTransport) and transport.is_active():
                return transport
            self._drop()
        host, port, user, identities = self._ssh_config()
        quiet = logging.getLogger("paramiko")  # its refusals are our exceptions, not lines on stderr
        if not quiet.handlers:
            quiet.addHandler(logging.NullHandler())
        client = paramiko.SSHClient()
        with contextlib.suppress(OSError):
            client.load_system_host_keys()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        shown = f"[{host}]:{port}" if port != 22 else host
        try:
            client.connect(host, port, username=user, key_filename=identities or None,  # type: ignore[arg-type]
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, allow_agent=True,
                           look_for_keys=True, transport_factory=StreamlocalTransport)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise self._fail(f"the host key of {shown} changed: ~/.ssh/known_hosts has {exc.expected_key.get_name()} "
                             f"{exc.expected_key.get_base64()[:16]}…, the server sent {exc.key.get_name()} "
                             f"{exc.key.get_base64()[:16]}…; refusing to connect (if the change is expected, remove "
                             f"the old key with: ssh-keygen -R '{shown}')") from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise self._fail(f"SSH authentication as {user} failed ({exc}); add a key to the agent or ~/.ssh") from exc
        except paramiko.SSHException as exc:
            client.close()
            if "No authentication methods available" in str(exc):
                raise self._fail(f"SSH authentication as {user} failed: no key in the agent or ~/.ssh") from exc
            if "not found in known_hosts" in str(exc):
                raise self._fail(f"the host key of {shown} is unknown (not in ~/.ssh/known_hosts); check it and add "
                                 f"it, e.g. by connecting once with: ssh -p {port} {user}@{host}") from exc
            raise self._fail(f"SSH: {exc}") from exc
        except (OSError, EOFError) as exc:
            client.close()
            raise self._fail(str(exc) or type(exc).__name__) from exc
        transport = client.get_transport()
        assert isinstance(transport, StreamlocalTransport)
        transport.set_keepalive(30)
        self._client = client
        return transport

    def _ssh_config(self) -> tuple[str, int, str, list[str]]:
        """(host, port, user, identity files) after ``~/.ssh/config`` (the address's explicit values win)."""
        host, port, user = self.address.host, self.address.port, self.address.user
        path = Path("~/.ssh/config").expanduser()
        try:
            found = paramiko.SSHConfig.from_path(str(path)).lookup(host)
        except FileNotFoundError:
            return host, port, user, []
        except (OSError, paramiko.SSHException) as exc:
            raise self._fail(f"cannot read {path}: {exc}") from exc
        identities = [str(Path(p).expanduser()) for p in found.get("identityfile", []) if Path(p).expanduser().exists()]
        return str(found.get("hostname", host)), port, user, identities
