"""Contexts: named engine endpoints in Docker's own store format, and which one a client uses.

The store is Docker's (so ``docker context`` and ``berth context`` see the same contexts):
``<config dir>/contexts/meta/<sha256(name)>/meta.json`` holds ``{"Name", "Metadata": {"Description"},
"Endpoints": {"docker": {"Host", "SkipTLSVerify"}}}``, the endpoint's TLS files are
``<config dir>/contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem`` and the current context is
``currentContext`` in ``<config dir>/config.json``. Berth writes to its config dir (``BERTH_CONFIG``,
``DOCKER_CONFIG``, ``~/.docker``); Docker's own (``DOCKER_CONFIG`` or ``~/.docker``) is read as well when it
is another directory, so a user's docker contexts appear (Berth's win on a name clash).

:func:`resolve` picks the endpoint in Docker's order, with Berth's variables first at each step:
``--context`` (with ``--host`` too: an error), ``--host``, ``BERTH_HOST``, ``DOCKER_HOST``, ``BERTH_CONTEXT``,
``DOCKER_CONTEXT``, the config's ``currentContext`` (ignored when the config or that context is unreadable, as
before contexts existed), then ``default`` (:data:`~backend.api.host.DEFAULT_HOST`). Qt-free; errors are
:class:`ContextError` (a HostError, so every client already reports it as one line).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.api.host import DEFAULT_HOST, HostError, parse_host

DEFAULT_CONTEXT = "default"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]*$")  # docker's context name rule
_TLS_FILES = ("ca.pem", "cert.pem", "key.pem")


class ContextError(HostError):
    """A context that does not exist, cannot be created or removed, or a conflicting choice of engine."""


@dataclass(frozen=True)
class TLSFiles:
    """The TLS material of an endpoint: files that exist (or None) and whether the server is verified."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    verify: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext from these files (the system's CAs when there is no ``ca``). Raises
        ContextError for unreadable or mismatched files."""
        try:
            context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
            if self.cert and self.key:
                context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            raise ContextError(f"cannot load the context's TLS files: {exc}") from exc
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True)
class Context:
    """A named endpoint. ``source`` is the config dir it was read from (None for ``default``)."""

    name: str
    host: str
    description: str = ""
    tls: TLSFiles | None = None
    source: Path | None = None

    def inspect(self) -> dict[str, Any]:
        """``docker context inspect``'s document for this context."""
        tls = self.tls
        return {
            "Name": self.name,
            "Metadata": {"Description": self.description} if self.description else {},
            "Endpoints": {"docker": {"Host": self.host, "SkipTLSVerify": bool(tls and not tls.verify)}},
            "TLSMaterial": {"docker": [p.name for p in (tls.ca, tls.cert, tls.key) if p]} if tls else {},
            "Storage": {"MetadataPath": str(_meta_dir(self.source, self.name)) if self.source else "<IN MEMORY>",
                        "TLSPath": str(_tls_dir(self.source, self.name)) if self.source else "<IN MEMORY>"},
        }


@dataclass(frozen=True)
class Endpoint:
    """What a client connects to: the address, the context it came from, its TLS material (or None)."""

    host: str
    context: str = DEFAULT_CONTEXT
    tls: TLSFiles | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The SSLContext for a TLS endpoint, None otherwise. Raises ContextError."""
        return self.tls.ssl_context() if self.tls else None


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _meta_dir(config_dir: Path, name: str) -> Path:
    return config_dir / "contexts" / "meta" / _digest(name)


def _tls_dir(config_dir: Path, name: str) -> Path:
    return config_dir / "contexts" / "tls" / _digest(name)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _write_json(path: Path, doc: dict[str, Any], mode: int = 0o644) -> None:
    """Replace ``path`` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _load(config_dir: Path, meta: Path) -> Context | None:
    """The context in ``meta`` (a meta.json), or None when it is unreadable or has no docker endpoint."""
    doc = _read_json(meta)
    if doc is None or not isinstance(doc.get("Name"), str):
        return None
    endpoint = (doc.get("Endpoints") or {}).get("docker")
    if not isinstance(endpoint, dict) or not isinstance(endpoint.get("Host"), str):
        return None
    name: str = doc["Name"]
    metadata = doc.get("Metadata")
    description = metadata.get("Description", "") if isinstance(metadata, dict) else ""
    tls_dir = _tls_dir(config_dir, name) / "docker"
    found = [tls_dir / f if (tls_dir / f).is_file() else None for f in _TLS_FILES]
    skip_verify = bool(endpoint.get("SkipTLSVerify"))
    tls = TLSFiles(found[0], found[1], found[2], verify=not skip_verify) if any(found) or skip_verify else None
    return Context(name, endpoint["Host"], str(description or ""), tls, config_dir)


class ContextStore:
    """Contexts in ``config_dir`` (read and written) and in ``docker_dir`` (read only; skipped when the same)."""

    def __init__(self, config_dir: Path, docker_dir: Path | None = None, *, default_host: str = DEFAULT_HOST) -> None:
        self.config_dir = config_dir
        self.docker_dir = docker_dir if docker_dir and docker_dir.resolve() != config_dir.resolve() else None
        self.default_host = default_host

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, home: Path | None = None,
                 config_dir: Path | None = None) -> ContextStore:
        """The store a client uses: ``config_dir`` (else ``BERTH_CONFIG``, ``DOCKER_CONFIG``, ``~/.docker``),
        plus Docker's (``DOCKER_CONFIG`` or ``~/.docker``); ``default`` is ``BERTH_HOST``, ``DOCKER_HOST`` or
        :data:`DEFAULT_HOST`."""
        env = os.environ if env is None else env
        home = Path.home() if home is None else home
        docker_dir = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
        own = config_dir or (Path(env["BERTH_CONFIG"]) if env.get("BERTH_CONFIG") else docker_dir)
        return cls(own, docker_dir, default_host=env.get("BERTH_HOST") or env.get("DOCKER_HOST") or DEFAULT_HOST)

    def _dirs(self) -> list[Path]:
        return [self.config_dir] + ([self.docker_dir] if self.docker_dir else [])

    def contexts(self) -> list[Context]:
        """``default`` first, then every readable context by name."""
        found: dict[str, Context] = {}
        for config_dir in self._dirs():
            meta_root = config_dir / "contexts" / "meta"
            try:
                metas = sorted(meta_root.iterdir())
            except OSError:
                continue
            for meta in metas:
                context = _load(config_dir, meta / "meta.json")
                if context is not None and context.name != DEFAULT_CONTEXT:
                    found.setdefault(context.name, context)
        return [Context(DEFAULT_CONTEXT, self.default_host, "Current BERTH_HOST / DOCKER_HOST based configuration")
                ] + [found[name] for name in sorted(found)]

    def get(self, name: str) -> Context:
        """The context called ``name``. Raises ContextError when there is none."""
        if name == DEFAULT_CONTEXT:
            return self.contexts()[0]
        for config_dir in self._dirs():
            context = _load(config_dir, _meta_dir(config_dir, name) / "meta.json")
            if context is not None and context.name == name:
                return context
        raise ContextError(f'context "{name}" does not exist')

    def create(self, name: str, host: str, *, description: str = "", ca: Path | None = None,
               cert: Path | None = None, key: Path | None = None, skip_verify: bool = False) -> Context:
        """Write a new context (TLS files copied in, the key readable by the owner only). Raises ContextError
        for a bad or taken name, an unusable address, a certificate without its key, or unreadable files."""
        if not _NAME.match(name) or name == DEFAULT_CONTEXT:
            raise ContextError(f'context name "{name}" is invalid: it must match {_NAME.pattern} and not be '
                               f'"{DEFAULT_CONTEXT}"')
        parse_host(host)
        if (_meta_dir(self.config_dir, name) / "meta.json").exists():
            raise ContextError(f'context "{name}" already exists')
        if bool(cert) != bool(key):
            raise ContextError("--tlscert and --tlskey go together")
        tls_dir = _tls_dir(self.config_dir, name) / "docker"
        try:
            for source, target in ((ca, "ca.pem"), (cert, "cert.pem"), (key, "key.pem")):
                if source is not None:
                    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                    shutil.copyfile(source, tls_dir / target)
                    os.chmod(tls_dir / target, 0o600 if target == "key.pem" else 0o644)
            _write_json(_meta_dir(self.config_dir, name) / "meta.json", {
                "Name": name, "Metadata": {"Description": description} if description else {},
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}})
        except OSError as exc:
            shutil.rmtree(_tls_dir(self.config_dir, name), ignore_errors=True)
            raise ContextError(f'cannot create context "{name}": {exc}') from exc
        return self.get(name)

    def remove(self, name: str, *, force: bool = False) -> None:
        """Delete a context of Berth's config dir. The current one needs ``force`` (and then ``default`` becomes
        current). Raises ContextError for ``default``, a missing context, one only in Docker's dir, or the
        current one without ``force``."""
        context = self.get(name)
        if context.source != self.config_dir:
            raise ContextError(f'context "{name}" cannot be removed: it belongs to '
                               f"{context.source or 'the environment'}")
        if self.current() == name:
            if not force:
                raise ContextError(f'context "{name}" is in use, set -f flag to force remove')
            self.use(DEFAULT_CONTEXT)
        shutil.rmtree(_meta_dir(self.config_dir, name))
        shutil.rmtree(_tls_dir(self.config_dir, name), ignore_errors=True)

    def current(self) -> str:
        """The name in ``currentContext`` of Berth's config (else Docker's), else ``default``."""
        for config_dir in self._dirs():
            doc = _read_json(config_dir / "config.json")
            name = doc.get("currentContext") if doc else None
            if isinstance(name, str) and name:
                return name
        return DEFAULT_CONTEXT

    def use(self, name: str) -> None:
        """Make ``name`` the current context (in Berth's config.json; other keys kept). Raises ContextError."""
        self.get(name)
        path = self.config_dir / "config.json"
        if path.exists() and _read_json(path) is None:
            raise ContextError(f"cannot update {path}: it is not a JSON object")
        doc = _read_json(path) or {}
        if name == DEFAULT_CONTEXT:
            doc.pop("currentContext", None)
        else:
            doc["currentContext"] = name
        try:
            _write_json(path, doc, 0o600)
        except OSError as exc:
            raise ContextError(f"cannot update {path}: {exc}") from exc


def resolve(cli_host: str | None = None, cli_context: str | None = None, env: Mapping[str, str] | None = None,
            home: Path | None = None, config_dir: Path | None = None) -> Endpoint:
    """The endpoint a client uses (order in the module docstring). Raises ContextError for ``--host`` with
    ``--context``, or a context named by a flag or variable that does not exist."""
    env = os.environ if env is None else env
    if cli_host and cli_context:
        raise ContextError("conflicting options: either specify --host or --context, not both")
    store = ContextStore.from_env(env, home, config_dir)
    if cli_context:
        return _endpoint(store.get(cli_context))
    for host in (cli_host, env.get("BERTH_HOST"), env.get("DOCKER_HOST")):
        if host:
            return Endpoint(host)
    named = env.get("BERTH_CONTEXT") or env.get("DOCKER_CONTEXT")
    if named:
        return _endpoint(store.get(named))
    try:
        return _endpoint(store.get(store.current()))
    except ContextError:
        return Endpoint(store.default_host)


def _endpoint(context: Context) -> Endpoint:
    return Endpoint(context.host, context.name, context.tls)
