"""Registry credentials (Docker's ``config.json`` and credential helpers) and auth challenges.

:class:`CredentialStore` reads and writes the ``auths`` section of a Docker client config file
(``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json`` unless a path is given), and runs
``docker-credential-<name>`` helpers named by ``credsStore``/``credHelpers``, as the docker CLI does.
Its methods are synchronous (file I/O and a short subprocess); async callers run them in a thread.

Invariants: the config file is rewritten atomically (temp file in the same directory, fsync, rename)
with mode 0600, and keys this module does not own are kept as they were. Docker Hub's entry is keyed
``https://index.docker.io/v1/``; every other registry by its ``host[:port]``.

:func:`parse_www_authenticate` parses ``WWW-Authenticate`` challenges (RFC 7235 auth-params).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backend.engine.registry.errors import RegistryForbidden, RegistryInvalid, RegistryUnavailable

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
"""The ``auths`` key (and credential-helper server URL) Docker uses for Docker Hub."""

DOCKER_HUB_DOMAINS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

_HELPER_TIMEOUT = 30.0
_TOKEN_USERNAME = "<token>"


@dataclass(frozen=True)
class Credentials:
    """What to authenticate to one registry with.

    ``identity_token`` is an OAuth refresh token (docker's ``identitytoken``, or a helper answering
    with user ``<token>``); ``registry_token`` is a bearer token to send as it is.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str | None = field(default=None, repr=False)
    registry_token: str | None = field(default=None, repr=False)

    @property
    def has_basic(self) -> bool:
        """True when there is a username and password to send as HTTP basic auth."""
        return bool(self.username) and bool(self.password)


def auth_key(domain: str) -> str:
    """The ``auths`` key for ``domain``: Docker Hub's URL for docker.io, else the domain itself."""
    return DOCKER_HUB_AUTH_KEY if domain.lower() in DOCKER_HUB_DOMAINS else domain


def _key_domain(key: str) -> str:
    """The host[:port] of an ``auths`` key (``https://host/v1/``, ``http://host``, ``host``...)."""
    host = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", key).split("/", 1)[0]
    return host.lower()


def _same_registry(key: str, domain: str) -> bool:
    host = _key_domain(key)
    domain = domain.lower()
    if domain in DOCKER_HUB_DOMAINS:
        return host in DOCKER_HUB_DOMAINS
    return host == domain


class CredentialSource(Protocol):
    """Where the registry client gets credentials: :class:`CredentialStore` or :class:`StaticCredentials`."""

    def get(self, domain: str) -> Credentials | None:
        """Credentials for ``domain``, or None."""
        ...

    def store(self, domain: str, credentials: Credentials) -> None:
        """Remember ``credentials`` for ``domain``."""
        ...

    def erase(self, domain: str) -> bool:
        """Forget ``domain``'s credentials; True if there were any."""
        ...


class StaticCredentials:
    """Credentials held in memory, per domain: for one API request's ``X-Registry-Auth``, or tests."""

    def __init__(self, entries: Mapping[str, Credentials] | None = None) -> None:
        self._entries = {auth_key(d): c for d, c in (entries or {}).items()}

    def get(self, domain: str) -> Credentials | None:
        """Credentials for ``domain`` (Docker Hub's aliases share one entry), or None."""
        return self._entries.get(auth_key(domain))

    def store(self, domain: str, credentials: Credentials) -> None:
        """Keep ``credentials`` for ``domain`` (in memory only)."""
        self._entries[auth_key(domain)] = credentials

    def erase(self, domain: str) -> bool:
        """Forget ``domain``'s credentials; True if there were any."""
        return self._entries.pop(auth_key(domain), None) is not None


class CredentialStore:
    """Docker client credentials for registries, in a ``config.json`` and its credential helpers.

    Raises RegistryInvalid for a config file that is not valid JSON (or holds a bad ``auth`` value),
    and RegistryUnavailable when a credential helper is missing or fails (other than "not found").
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            base = os.environ.get("DOCKER_CONFIG")
            path = Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"
        self.path = Path(path)

    # -- reading ---------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise RegistryUnavailable(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if not text.strip():
            return {}
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise RegistryInvalid(f"{self.path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise RegistryInvalid(f"{self.path} does not hold a JSON object")
        return doc

    def _helper_for(self, doc: Mapping[str, Any], domain: str) -> str | None:
        helpers = doc.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if isinstance(name, str) and name and _same_registry(key, domain):
                    return name
        store = doc.get("credsStore")
        return store if isinstance(store, str) and store else None

    def get(self, domain: str) -> Credentials | None:
        """Credentials for ``domain`` (``host[:port]``, or ``docker.io``), or None if none are stored.

        A credential helper (``credHelpers`` for this registry, else ``credsStore``) is asked first;
        if it knows nothing, the ``auths`` entry is used.
        """
        doc = self._load()
        helper = self._helper_for(doc, domain)
        if helper is not None:
            creds = self._helper_get(helper, auth_key(domain))
            if creds is not None:
                return creds
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            return None
        exact = auths.get(auth_key(domain))
        entries = [exact] if isinstance(exact, dict) else []
        entries += [v for k, v in auths.items() if isinstance(v, dict) and _same_registry(k, domain)]
        for entry in entries:
            creds = self._from_entry(entry, domain)
            if creds is not None:
                return creds
        return None

    def _from_entry(self, entry: Mapping[str, Any], domain: str) -> Credentials | None:
        username = entry.get("username") or ""
        password = entry.get("password") or ""
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise RegistryInvalid(f"{self.path}: the auth value for {domain} is not base64 user:password") from exc
            username, sep, password = decoded.partition(":")
            if not sep:
                raise RegistryInvalid(f"{self.path}: the auth value for {domain} is not base64 user:password")
        identity = entry.get("identitytoken") or None
        registry_token = entry.get("registrytoken") or None
        if not isinstance(username, str) or not isinstance(password, str):
            raise RegistryInvalid(f"{self.path}: username and password for {domain} must be strings")
        if not (username or password or identity or registry_token):
            return None
        return Credentials(
            username=username,
            password=password,
            identity_token=identity if isinstance(identity, str) else None,
            registry_token=registry_token if isinstance(registry_token, str) else None,
        )

    # -- credential helpers ----------------------------------------------------------------------------

    def _run_helper(self, helper: str, verb: str, stdin: str) -> str:
        program = f"docker-credential-{helper}"
        try:
            proc = subprocess.run(
                [program, verb],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=_HELPER_TIMEOUT,
                check=False,
            )
        except FileNotFoundError as exc:
            raise RegistryUnavailable(f"credential helper {program} is not installed (named in {self.path})") from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RegistryUnavailable(f"credential helper {program} {verb} failed: {exc}") from exc
        if proc.returncode != 0:
            message = (proc.stdout.strip() or proc.stderr.strip() or f"exit status {proc.returncode}").splitlines()[0]
            if "credentials not found" in message.lower():
                raise _HelperNotFound(message)
            raise RegistryUnavailable(f"credential helper {program} {verb} failed: {message}")
        return proc.stdout

    def _helper_get(self, helper: str, server_url: str) -> Credentials | None:
        try:
            out = self._run_helper(helper, "get", server_url)
        except _HelperNotFound:
            return None
        try:
            doc = json.loads(out)
        except ValueError as exc:
            raise RegistryUnavailable(f"credential helper docker-credential-{helper} printed invalid JSON") from exc
        if not isinstance(doc, dict):
            raise RegistryUnavailable(f"credential helper docker-credential-{helper} printed invalid JSON")
        username = str(doc.get("Username") or "")
        secret = str(doc.get("Secret") or "")
        if not username and not secret:
            return None
        if username == _TOKEN_USERNAME:
            return Credentials(identity_token=secret)
        return Credentials(username=username, password=secret)

    # -- writing ---------------------------------------------------------------------------------------

    def store(self, domain: str, credentials: Credentials) -> None:
        """Remember ``credentials`` for ``domain``: in its credential helper if one is configured,
        else as a base64 ``auth`` value in ``auths`` (an identity token as ``identitytoken``)."""
        doc = self._load()
        key = auth_key(domain)
        helper = self._helper_for(doc, domain)
        if helper is not None:
            username = _TOKEN_USERNAME if credentials.identity_token else credentials.username
            secret = credentials.identity_token or credentials.password
            self._run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": secret}))
            auths = doc.setdefault("auths", {})
            if isinstance(auths, dict):
                auths[key] = {}
            self._write(doc)
            return
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            auths = doc["auths"] = {}
        for other in [k for k in auths if k != key and _same_registry(k, domain)]:
            del auths[other]
        entry: dict[str, str] = {}
        if credentials.username or credentials.password:
            raw = f"{credentials.username}:{credentials.password}".encode()
            entry["auth"] = base64.b64encode(raw).decode("ascii")
        if credentials.identity_token:
            entry["identitytoken"] = credentials.identity_token
        auths[key] = entry
        self._write(doc)

    def erase(self, domain: str) -> bool:
        """Forget the credentials for ``domain``; True if there were any to forget."""
        doc = self._load()
        key = auth_key(domain)
        removed = False
        helper = self._helper_for(doc, domain)
        if helper is not None:
            try:
                self._run_helper(helper, "erase", key)
                removed = True
            except _HelperNotFound:
                pass
        auths = doc.get("auths")
        if isinstance(auths, dict):
            for k in [k for k in auths if _same_registry(k, domain)]:
                del auths[k]
                removed = True
        if removed:
            self._write(doc)
        return removed

    def _write(self, doc: Mapping[str, Any]) -> None:
        data = (json.dumps(doc, indent="\t") + "\n").encode("utf-8")
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=directory)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise RegistryUnavailable(f"cannot write {self.path}: {exc.strerror or exc}") from exc


class _HelperNotFound(Exception):
    """A credential helper answered "credentials not found"."""


# --- WWW-Authenticate --------------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*(,|$)')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")


@dataclass(frozen=True)
class Challenge:
    """One auth challenge: its scheme in lower case (``bearer``, ``basic``) and its parameters
    (names in lower case, values unquoted)."""

    scheme: str
    params: Mapping[str, str]


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Every challenge of one ``WWW-Authenticate`` value, in order; unparsable parts are skipped."""
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        while pos < len(header) and header[pos] in " ,":
            pos += 1
        m = _SCHEME_RE.match(header, pos)
        if m is None:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            p = _PARAM_RE.match(header, pos)
            if p is None:
                break
            value = p.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[p.group(1).lower()] = value
            pos = p.end()
        challenges.append(Challenge(scheme, params))
    return challenges


def basic_header(credentials: Credentials) -> str:
    """The ``Authorization`` value for HTTP basic auth with ``credentials``; RegistryForbidden if it has none."""
    if not credentials.has_basic:
        raise RegistryForbidden("unauthorized: authentication required", status=401, code="UNAUTHORIZED")
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
