"""Finding the engine: which address a client talks to.

Order (first that is set wins): the ``-H``/``--host`` argument, ``BERTH_HOST``, ``DOCKER_HOST``, the
current docker context (``DOCKER_CONTEXT``, else ``currentContext`` in ``$DOCKER_CONFIG/config.json``
or ``~/.docker/config.json``; its endpoint is ``Endpoints.docker.Host`` in
``contexts/meta/<sha256(name)>/meta.json`` beside that config), then :data:`DEFAULT_HOST`.

Addresses are ``unix:///path``, ``tcp://host:port`` (``http://`` is accepted as a synonym) or a bare
absolute socket path. :func:`parse_host` splits them; it raises :class:`HostError` for schemes Berth's
client does not speak (``ssh://``, ``npipe://``, TLS).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_TCP_PORT = 2375


class HostError(ValueError):
    """An engine address that cannot be used (malformed, or a scheme the client does not support)."""


@dataclass(frozen=True)
class EngineAddress:
    """Where the engine listens: a unix socket ``path``, or ``host``:``port`` over TCP."""

    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0

    @property
    def base_url(self) -> str:
        """The ``http://`` URL requests go to (the socket path travels in the transport)."""
        if self.scheme == "unix":
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
        hostport = rest.split("/", 1)[0]
        if not hostport:
            raise HostError(f"invalid engine address {text!r}: no host")
        if hostport.startswith("["):
            host, _, port_text = hostport[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        try:
            port = int(port_text) if port_text else DEFAULT_TCP_PORT
        except ValueError as exc:
            raise HostError(f"invalid engine address {text!r}: bad port") from exc
        if not 0 < port < 65536:
            raise HostError(f"invalid engine address {text!r}: bad port")
        return EngineAddress("tcp", host=host, port=port)
    raise HostError(f"engine address scheme {scheme}:// is not supported (use unix:// or tcp://)")


def _config_dir(env: Mapping[str, str], home: Path) -> Path:
    configured = env.get("DOCKER_CONFIG")
    return Path(configured) if configured else home / ".docker"


def context_host(env: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """The docker endpoint of the current docker context, or None (no context, ``default``, or
    unreadable files: a broken context is not worth failing over, the default applies)."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    config_dir = _config_dir(env, home)
    name = env.get("DOCKER_CONTEXT")
    if not name:
        try:
            doc = json.loads((config_dir / "config.json").read_text())
        except (OSError, ValueError):
            return None
        name = doc.get("currentContext") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name or name == "default":
        return None
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
    try:
        doc = json.loads(meta.read_text())
        host = doc["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return host if isinstance(host, str) and host else None


def find_host(cli_host: str | None = None, env: Mapping[str, str] | None = None,
              home: Path | None = None) -> str:
    """The engine address to use (see the module docstring for the order)."""
    env = os.environ if env is None else env
    for candidate in (cli_host, env.get("BERTH_HOST"), env.get("DOCKER_HOST")):
        if candidate:
            return candidate
    return context_host(env, home) or DEFAULT_HOST
