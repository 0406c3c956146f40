"""Finding the engine: which address a client talks to.

Order (first that is set wins): the ``-H``/``--host`` argument, ``BERTH_HOST``, ``DOCKER_HOST``, the
current context (``BERTH_CONTEXT``, ``DOCKER_CONTEXT``, else ``currentContext`` in the config dir's
``config.json``), then :data:`DEFAULT_HOST`. Contexts live in :mod:`backend.api.contexts` (Docker's store).

Addresses are ``unix:///path``, ``tcp://host:port`` (``http://`` is accepted as a synonym),
``ssh://[user@]host[:port][/remote/socket]`` (:mod:`backend.api.ssh_transport`) or a bare absolute socket
path. :func:`parse_host` splits them; it raises :class:`HostError` for schemes Berth's client does not
speak (``npipe://``).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_TCP_PORT = 2375
DEFAULT_SSH_PORT = 22


class HostError(ValueError):
    """An engine address that cannot be used (malformed, or a scheme the client does not support)."""


@dataclass(frozen=True)
class EngineAddress:
    """Where the engine listens: a unix socket ``path``, ``host``:``port`` over TCP, or over SSH as ``user`` at
    ``host``:``port`` to the remote socket ``path`` (empty: the remote engine's usual socket)."""

    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0
    user: str = ""

    @property
    def base_url(self) -> str:
        """The ``http://`` URL requests go to (the socket path travels in the transport)."""
        if self.scheme != "tcp":
            return "http://api.moby.localhost"
        return f"http://{self.host}:{self.port}"


def parse_host(text: str) -> EngineAddress:
    """Split an engine address. Raises HostError."""
    text = text.strip()
    if text.startswith("/"):
        return EngineAddress("unix", path=text)
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise HostError(f"invalid engine address {text!r}: expected unix:///path or tcp://host:port")
    scheme = scheme.lower()
    if scheme == "unix":
        if not rest.startswith("/"):
            raise HostError(f"invalid engine address {text!r}: the socket path must be absolute")
        return EngineAddress("unix", path=rest)
    if scheme in ("tcp", "http"):
        host, port = _host_port(text, rest.split("/", 1)[0], DEFAULT_TCP_PORT)
        return EngineAddress("tcp", host=host, port=port)
    if scheme == "ssh":
        authority, slash, path = rest.partition("/")
        user, at, hostport = authority.rpartition("@")
        if at and not user:
            raise HostError(f"invalid engine address {text!r}: empty user name")
        host, port = _host_port(text, hostport, DEFAULT_SSH_PORT)
        path = "/" + path if slash and path else ""
        if any(c in path for c in "?#\0"):
            raise HostError(f"invalid engine address {text!r}: bad socket path")
        return EngineAddress("ssh", path=path, host=host, port=port, user=user or getpass.getuser())
    raise HostError(f"engine address scheme {scheme}:// is not supported (use unix://, tcp:// or ssh://)")


def _host_port(text: str, hostport: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` split. Raises HostError."""
    if not hostport:
        raise HostError(f"invalid engine address {text!r}: no host")
    if hostport.startswith("["):
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError as exc:
        raise HostError(f"invalid engine address {text!r}: bad port") from exc
    if not host or not 0 < port < 65536:
        raise HostError(f"invalid engine address {text!r}: bad {'port' if host else 'host'}")
    return host, port


def find_host(cli_host: str | None = None, env: Mapping[str, str] | None = None,
              home: Path | None = None) -> str:
    """The engine address to use (see the module docstring for the order). Raises HostError (a
    :class:`~backend.api.contexts.ContextError`) when a context named by the environment does not exist."""
    from backend.api.contexts import resolve

    return resolve(cli_host, None, os.environ if env is None else env, home).host
