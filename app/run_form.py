"""The Run dialog's form, Qt-free: what the user typed (:class:`RunForm`), checked once, turned into the
``POST /containers/create`` body (:func:`run_request`) or the equivalent ``berth run`` command (:func:`berth_command`).

Both come from the same checked values, so the copied command makes the container the dialog makes (the body
has the keys the berth CLI sets for these flags, with the same values). Ports are parsed with Docker's ``-p``
parser (:mod:`backend.api.ports`); restart policies, names and volume specs follow dockerd's rules. Bad input
raises :class:`FormInvalid` with one message per field, for the dialog to show next to it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from backend.api import ports

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # dockerd's container and volume names
RESTART_NAMES = ("no", "always", "unless-stopped", "on-failure")


class FormInvalid(ValueError):
    """``errors`` maps RunForm field names to one message each (the first problem found in that field)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class VolumeMount:
    """``source`` is an absolute host path, a volume name, or empty (an anonymous volume); ``target`` the
    absolute path in the container."""

    source: str
    target: str
    read_only: bool = False

    @property
    def spec(self) -> str:
        """The ``-v`` value: ``source:target[:ro]``, or ``target`` alone for an anonymous volume."""
        if not self.source:
            return self.target
        return f"{self.source}:{self.target}{':ro' if self.read_only else ''}"


@dataclass(frozen=True)
class RunForm:
    """The Run dialog's values as typed. Empty rows are ignored; ``command`` is split as a shell would
    (without expansions); ``network`` "" is the default network; ``restart`` is ``no``, ``always``,
    ``unless-stopped`` or ``on-failure[:N]``."""

    image: str
    name: str = ""
    ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    command: str = ""
    restart: str = "no"
    network: str = ""
    detach: bool = True


@dataclass(frozen=True)
class _Checked:
    """A form's values after checking."""

    ports: tuple[str, ...]
    env: tuple[str, ...]
    volumes: tuple[VolumeMount, ...]
    argv: tuple[str, ...]
    restart: dict[str, Any]


def _check_ports(specs: tuple[str, ...]) -> str | None:
    for spec in specs:
        try:
            ports.parse_port_spec(spec)
        except ports.PortSpecError as exc:
            return f"{spec}: {exc}"
    return None


def _check_env(items: tuple[str, ...]) -> str | None:
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            return f"{item}: use KEY=VALUE"
        if any(c.isspace() for c in key):
            return f"{item}: the name must not contain spaces"
    return None


def _check_volumes(mounts: tuple[VolumeMount, ...]) -> str | None:
    for mount in mounts:
        if not mount.target.startswith("/") or mount.target.rstrip("/") == "" or ":" in mount.target:
            return f"{mount.target or '(empty)'}: the container path must be absolute and not /"
        if mount.source and ":" in mount.source:
            return f"{mount.source}: a path with ':' cannot be mounted"
        if mount.source and not mount.source.startswith("/") and not NAME.match(mount.source):
            return f"{mount.source}: use an absolute host path or a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
        if mount.read_only and not mount.source:
            return f"{mount.target}: an anonymous volume cannot be read-only"
    return None


def _parse_restart(text: str) -> dict[str, Any]:
    name, sep, count = text.partition(":")
    if name not in RESTART_NAMES:
        raise ValueError(f"{text}: use no, always, unless-stopped or on-failure[:N]")
    if sep and (name != "on-failure" or not count.isdigit()):
        raise ValueError(f"{text}: only on-failure takes a maximum retry count (a number)")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def _check(form: RunForm) -> _Checked:
    """The form's values, checked. Raises FormInvalid naming every field that is wrong."""
    errors: dict[str, str] = {}
    image = form.image.strip()
    if not image or image.startswith("-") or any(c.isspace() for c in image):
        errors["image"] = "choose an image (a name without spaces)"
    if form.name and not NAME.match(form.name):
        errors["name"] = f"{form.name}: use letters, digits, _ . - (two or more, starting with a letter or digit)"
    specs = tuple(p.strip() for p in form.ports if p.strip())
    env = tuple(e for e in form.env if e.strip())
    mounts = tuple(m for m in form.volumes if m.source.strip() or m.target.strip())
    for key, problem in (("ports", _check_ports(specs)), ("env", _check_env(env)),
                         ("volumes", _check_volumes(mounts))):
        if problem:
            errors[key] = problem
    argv: list[str] = []
    try:
        argv = shlex.split(form.command)
    except ValueError as exc:
        errors["command"] = f"cannot split the command: {str(exc).lower()}"
    restart: dict[str, Any] = {}
    try:
        restart = _parse_restart(form.restart.strip())
    except ValueError as exc:
        errors["restart"] = str(exc)
    if form.network and (form.network.startswith("-") or any(c.isspace() for c in form.network)):
        errors["network"] = f"{form.network}: not a network name"
    if errors:
        raise FormInvalid(errors)
    return _Checked(specs, env, mounts, tuple(argv), restart)


def run_request(form: RunForm) -> tuple[dict[str, Any], str | None]:
    """The create body for ``client.create_container`` and the container name (None: the engine picks one).
    Raises FormInvalid."""
    checked = _check(form)
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in checked.ports:
        for mapping in ports.parse_port_spec(spec):
            exposed[mapping.key] = {}
            bindings.setdefault(mapping.key, []).append({"HostIp": mapping.host_ip, "HostPort": mapping.host_port})
    binds = [m.spec for m in checked.volumes if m.source]
    anonymous: dict[str, dict[str, Any]] = {m.target: {} for m in checked.volumes if not m.source}
    body: dict[str, Any] = {
        "Image": form.image.strip(), "Cmd": list(checked.argv) or None, "Env": list(checked.env) or None,
        "ExposedPorts": exposed or None, "Volumes": anonymous or None,
        "AttachStdin": False, "AttachStdout": not form.detach, "AttachStderr": not form.detach,
        "Tty": False, "OpenStdin": False,
        "HostConfig": {"NetworkMode": form.network or "default", "RestartPolicy": checked.restart,
                       "PortBindings": bindings, "Binds": binds or None},
    }
    return body, form.name or None


def _option(short: str, long: str, value: str) -> list[str]:
    """``[short, value]``, or ``[long=value]`` when the value would read as a flag."""
    return [f"{long}={value}"] if value.startswith("-") else [short, value]


def berth_command(form: RunForm) -> str:
    """The ``berth run ...`` command line that creates the same container, quoted for a POSIX shell.
    Raises FormInvalid."""
    checked = _check(form)
    argv = ["berth", "run"] + (["-d"] if form.detach else [])
    if form.name:
        argv += ["--name", form.name]
    for spec in checked.ports:
        argv += ["-p", spec]
    for item in checked.env:
        argv += _option("-e", "--env", item)
    for mount in checked.volumes:
        argv += ["-v", mount.spec]
    if checked.restart["Name"] != "no":
        argv += ["--restart", form.restart.strip()]
    if form.network and form.network != "default":
        argv += ["--network", form.network]
    return shlex.join([*argv, form.image.strip(), *checked.argv])
