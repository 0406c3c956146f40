"""``--change`` instructions of ``docker import`` / ``docker commit`` applied to an image config.

Accepts the Dockerfile instructions Docker accepts there: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME, WORKDIR. Each change is one line; errors name the instruction and raise
InvalidParameter. JSON (exec) and shell forms are handled as Docker handles them.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from backend.engine.errors import InvalidParameter

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")
MAX_CHANGE = 64 * 1024


def _json_list(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _pairs(keyword: str, rest: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` or the legacy ``K V`` form."""
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidParameter(f"{keyword}: {exc}") from exc
    if not words:
        raise InvalidParameter(f"{keyword} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        if not value.strip():
            raise InvalidParameter(f"{keyword} names can not be blank or {keyword} needs a value")
        return [(key, value.strip())]
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidParameter(f"{keyword} names can not be blank: {word!r}")
        out.append((key, value))
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Return a copy of the container ``config`` (the image config's ``config`` object) with the
    changes applied in order. Raises InvalidParameter naming the bad instruction."""
    out: dict[str, Any] = json.loads(json.dumps(config))
    for change in changes:
        if len(change) > MAX_CHANGE:
            raise InvalidParameter(f"--change is longer than {MAX_CHANGE} bytes")
        line = change.strip()
        if not line:
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword not in ALLOWED:
            raise InvalidParameter(f"{keyword} is not a valid change command")
        if keyword in ("CMD", "ENTRYPOINT"):
            form = _json_list(rest)
            out["Cmd" if keyword == "CMD" else "Entrypoint"] = form if form is not None else ["/bin/sh", "-c", rest]
        elif keyword == "ENV":
            env = [e for e in out.get("Env") or [] if isinstance(e, str)]
            for key, value in _pairs("ENV", rest):
                env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
            out["Env"] = env
        elif keyword == "LABEL":
            labels = dict(out.get("Labels") or {})
            labels.update(_pairs("LABEL", rest))
            out["Labels"] = labels
        elif keyword == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            for port in rest.split():
                number, _, proto = port.partition("/")
                if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
                    raise InvalidParameter(f"EXPOSE: invalid port {port!r}")
                ports[f"{int(number)}/{proto or 'tcp'}"] = {}
            out["ExposedPorts"] = ports
        elif keyword == "VOLUME":
            volumes = dict(out.get("Volumes") or {})
            for path in _json_list(rest) or rest.split():
                if not path:
                    raise InvalidParameter("VOLUME specified can not be an empty string")
                volumes[path] = {}
            out["Volumes"] = volumes
        elif keyword == "ONBUILD":
            if not rest:
                raise InvalidParameter("ONBUILD requires at least one argument")
            out["OnBuild"] = [*(out.get("OnBuild") or []), rest]
        else:
            if not rest:
                raise InvalidParameter(f"{keyword} requires exactly one argument")
            field = {"STOPSIGNAL": "StopSignal", "USER": "User", "WORKDIR": "WorkingDir"}[keyword]
            out[field] = rest
    return out
