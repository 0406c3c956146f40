"""``login`` and ``logout``, and registry credentials from the docker CLI's ``config.json``.

Credentials live under ``auths`` keyed by registry (``https://index.docker.io/v1/`` for Docker Hub,
``host[:port]`` otherwise) as ``{"auth": base64("user:password")}``, exactly as ``docker login``
writes them, so either tool reads what the other saved. Credential helpers are not used. The file is
replaced atomically and kept private (0600).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from backend.api.types import RegistryAuth
from backend.cli.context import ArgumentParser, Cli, Command, CommandError, UsageError

DOCKER_HUB = "https://index.docker.io/v1/"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", DOCKER_HUB)


def registry_key(server: str | None) -> str:
    """The ``auths`` key for a registry given as a host, URL or nothing (Docker Hub)."""
    if not server:
        return DOCKER_HUB
    host = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    return DOCKER_HUB if server in _HUB_NAMES or host in _HUB_NAMES else host


def registry_of(reference: str) -> str:
    """The ``auths`` key for an image reference (``localhost:5000/x`` -> ``localhost:5000``)."""
    first, sep, _ = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return registry_key(first)
    return DOCKER_HUB


def _load(config: Path) -> dict[str, Any]:
    try:
        doc = json.loads((config / "config.json").read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CommandError(f"berth: cannot read {config / 'config.json'}: {exc}") from exc
    return doc if isinstance(doc, dict) else {}


def _save(config: Path, doc: dict[str, Any]) -> None:
    config.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(dir=config, prefix=".config.json.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent="\t")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, config / "config.json")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def credentials(config: Path, registry: str) -> RegistryAuth | None:
    """The saved credentials for ``registry`` (an ``auths`` key), or None."""
    entry = _load(config).get("auths", {}).get(registry)
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken") if isinstance(entry.get("identitytoken"), str) else ""
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return None
        return RegistryAuth(user, password, registry, token or "")
    return RegistryAuth(serveraddress=registry, identitytoken=token) if token else None


def auth_for_image(cli: Cli, reference: str) -> RegistryAuth | None:
    """Saved credentials for the registry of an image reference."""
    return credentials(cli.config, registry_of(reference))


def _configure_login(p: ArgumentParser) -> None:
    p.add_argument("-u", "--username", help="Username")
    p.add_argument("-p", "--password", help="Password")
    p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
    p.add_argument("server", nargs="?", help="The registry (default: Docker Hub)")


async def login(cli: Cli, args: argparse.Namespace) -> None:
    if args.password and args.password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    password = args.password
    if args.password_stdin:
        if not args.username:
            raise UsageError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password:
        cli.warn("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    key = registry_key(args.server)
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise UsageError("cannot perform an interactive login from a non TTY device")
        username = input("Username: ").strip()
    if not password:
        if not sys.stdin.isatty():
            raise UsageError("cannot perform an interactive login from a non TTY device")
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise UsageError("username and password are required")
    result = await cli.client.login(RegistryAuth(username, password, key))
    doc = _load(cli.config)
    entry: dict[str, str] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    if result.identity_token:
        entry = {"auth": "", "identitytoken": result.identity_token}
    doc.setdefault("auths", {})[key] = entry
    _save(cli.config, doc)
    cli.print(result.status or "Login Succeeded")


def _configure_logout(p: ArgumentParser) -> None:
    p.add_argument("server", nargs="?", help="The registry (default: Docker Hub)")


async def logout(cli: Cli, args: argparse.Namespace) -> None:
    key = registry_key(args.server)
    doc = _load(cli.config)
    auths = doc.get("auths")
    if not isinstance(auths, dict) or key not in auths:
        cli.print(f"Not logged in to {key}")
        return
    cli.print(f"Removing login credentials for {key}")
    del auths[key]
    _save(cli.config, doc)


COMMANDS = {
    "login": Command("Log in to a registry", _configure_login, login),
    "logout": Command("Log out from a registry", _configure_logout, logout),
}
