"""Parsing of request input as dockerd parses it: query booleans and integers, ``filters`` JSON,
JSON bodies (capped), ``X-Registry-Auth`` and event timestamps.

Every function raises :class:`~backend.engine.errors.InvalidParameter` (HTTP 400) for malformed input,
so hostile input (broken or deeply nested JSON, numbers too large, bodies over the cap) always gets a
clear ``{"message"}`` and never a 500.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import time
from typing import Any

from aiohttp import web

from backend.api.units import go_duration_seconds
from backend.engine.errors import InvalidParameter
from backend.engine.registry.auth import Credentials
from backend.server.errors import JSON_BODY_LIMIT

_FALSE = frozenset({"", "0", "no", "false", "none"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    """dockerd's ``BoolValue``: absent -> ``default``; ``""``, ``0``, ``no``, ``false``, ``none`` (any
    case) -> False; anything else -> True (so ``1``, ``true`` and Python's ``True`` all work)."""
    if name not in request.query:
        return default
    return request.query[name].strip().lower() not in _FALSE


def query_int(request: web.Request, name: str, default: int) -> int:
    """A 64-bit integer query parameter; absent or empty -> ``default``. Raises InvalidParameter."""
    text = request.query.get(name, "").strip()
    if not text:
        return default
    if len(text) > 20 or not re.fullmatch(r"[+-]?\d+", text):
        raise InvalidParameter(f"invalid value for {name}: {text!r} is not an integer")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidParameter(f"invalid value for {name}: {text} is out of range")
    return value


def load_json(data: bytes | str, what: str = "JSON") -> Any:
    """Decode JSON. Raises InvalidParameter for bad syntax or encoding, nesting too deep for the
    parser, or a number too long to convert."""
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise InvalidParameter(f"invalid {what}: nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError, so is int overflow
        raise InvalidParameter(f"invalid {what}: {exc}") from exc


def parse_filters(text: str | None) -> dict[str, list[str]]:
    """dockerd's ``filters.FromJSON``: ``{"key": ["v", ...]}`` or the old ``{"key": {"v": true}}``;
    empty -> ``{}``. Raises InvalidParameter ("invalid filter ...")."""
    if text is None or not text.strip():
        return {}
    doc = load_json(text, "filters")
    if not isinstance(doc, dict):
        raise InvalidParameter("invalid filters: expected a JSON object of lists")
    out: dict[str, list[str]] = {}
    for key, values in doc.items():
        if isinstance(values, list) and all(isinstance(v, str) for v in values):
            out[key] = list(values)
        elif isinstance(values, dict) and all(isinstance(v, bool) for v in values.values()):
            out[key] = [v for v, on in values.items() if on]
        else:
            raise InvalidParameter(f"invalid filter '{key}': values must be a list of strings")
    return out


async def read_json_body(request: web.Request, *, limit: int = JSON_BODY_LIMIT) -> Any:
    """The request's JSON body, or None when it is empty. Bodies over ``limit`` bytes get 413 (checked
    against Content-Length before reading, and while reading a chunked body). Raises InvalidParameter
    for malformed JSON."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    data = bytearray()
    while chunk := await request.content.read(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
    if not data.strip():
        return None
    return load_json(bytes(data), "JSON body")


def _b64decode(text: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded) if ("-" in text or "_" in text) else base64.b64decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise InvalidParameter("invalid X-Registry-Auth header: not base64") from exc


def registry_auth(header: str | None) -> Credentials | None:
    """The credentials in an ``X-Registry-Auth`` header (base64url JSON AuthConfig: ``username``,
    ``password``, ``auth`` (base64 ``user:pass``), ``identitytoken``, ``registrytoken``), or None when
    absent or empty (``e30=`` is ``{}``). Raises InvalidParameter for a malformed header."""
    if header is None or not header.strip():
        return None
    if len(header) > 64 * 1024:
        raise InvalidParameter("invalid X-Registry-Auth header: too long")
    doc = load_json(_b64decode(header), "X-Registry-Auth header")
    if not isinstance(doc, dict):
        raise InvalidParameter("invalid X-Registry-Auth header: not a JSON object")

    def text(key: str) -> str:
        value = doc.get(key) or ""
        if not isinstance(value, str):
            raise InvalidParameter(f"invalid X-Registry-Auth header: {key} is not a string")
        return value

    username, password = text("username"), text("password")
    if not (username or password) and text("auth"):
        user, sep, secret = _b64decode(text("auth")).decode(errors="replace").partition(":")
        if not sep:
            raise InvalidParameter("invalid X-Registry-Auth header: auth is not user:password")
        username, password = user, secret
    identity, token = text("identitytoken"), text("registrytoken")
    if not (username or password or identity or token):
        return None
    return Credentials(username=username, password=password, identity_token=identity or None,
                       registry_token=token or None)


def parse_time_filter_ns(text: str, name: str, now_ns: int | None = None) -> int:
    """A filter time as dockerd's ``GetTimestamp`` reads it: a Go duration (``90m``, ``1h30m``) counts back
    from now; otherwise as :func:`parse_timestamp_ns`. Returns Unix nanoseconds. Raises InvalidParameter."""
    text = text.strip()
    seconds = go_duration_seconds(text)
    if seconds is not None:
        return (time.time_ns() if now_ns is None else now_ns) - int(seconds * 1e9)
    return parse_timestamp_ns(text, name)


def parse_timestamp_ns(text: str, name: str) -> int:
    """An event timestamp as dockerd takes it: ``seconds[.fraction]`` (the CLI turns ``10m`` and dates
    into this form) or an RFC 3339 date. Returns Unix nanoseconds. Raises InvalidParameter."""
    text = text.strip()
    m = re.fullmatch(r"(\d{1,12})(?:\.(\d{1,9}))?", text)
    if m:
        return int(m.group(1)) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidParameter(f"invalid {name} timestamp {text[:64]!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
