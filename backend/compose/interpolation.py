"""Compose's variable interpolation and Docker's ``.env`` syntax.

``$VAR``, ``${VAR}``, ``${VAR:-default}`` (unset or empty), ``${VAR-default}`` (unset), ``${VAR:?message}``,
``${VAR?message}``, ``${VAR:+alternative}``, ``${VAR+alternative}``, ``$$`` for a literal ``$``; defaults and
alternatives may themselves hold ``${...}``. Unset variables become ``""``. Keys are never interpolated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from backend.compose.loader import Override

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.DOTALL)
_ENV_LINE_KEY = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(=?)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$$"}


class InterpolationError(ValueError):
    """A template that cannot be substituted: bad syntax, or a required variable (``:?``) missing."""


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start``; nested ``${...}`` are skipped."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"invalid interpolation format: unclosed '${{' in {text!r}")


def substitute(text: str, env: Mapping[str, str]) -> str:
    """``text`` with every variable replaced from ``env``. Raises InterpolationError."""
    out: list[str] = []
    i = 0
    while (j := text.find("$", i)) >= 0:
        out.append(text[i:j])
        nxt = text[j + 1:j + 2]
        if nxt == "$":
            out.append("$")
            i = j + 2
        elif nxt == "{":
            end = _closing_brace(text, j + 2)
            out.append(_braced(text[j + 2:end], env, text))
            i = end + 1
        elif match := _NAME.match(text, j + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise InterpolationError(f"invalid interpolation format for {text!r}: a lone '$' (use '$$' for a '$')")
    out.append(text[i:])
    return "".join(out)


def _braced(body: str, env: Mapping[str, str], text: str) -> str:
    match = _BRACED.fullmatch(body)
    if not match:
        raise InterpolationError(f"invalid interpolation format for {text!r}: '${{{body}}}'")
    name, op, word = match.group(1), match.group(2), match.group(3) or ""
    value = env.get(name)
    if op is None:
        return value or ""
    unset = value is None or (op.startswith(":") and value == "")
    kind = op[-1]
    if kind == "-":
        return substitute(word, env) if unset else value or ""
    if kind == "?":
        if unset:
            message = substitute(word, env)
            raise InterpolationError(f"required variable {name} is missing a value" + (f": {message}" if message
                                                                                        else ""))
        return value or ""
    return "" if unset else substitute(word, env)


def interpolate(value: Any, env: Mapping[str, str], path: tuple[str | int, ...],
                fail: Callable[[tuple[str | int, ...], str], Exception]) -> Any:
    """``value`` (YAML data) with every string value substituted; mapping keys are left alone. ``fail(path,
    message)`` builds the exception raised for a bad template at ``path``."""
    if isinstance(value, str):
        try:
            return substitute(value, env)
        except InterpolationError as exc:
            raise fail(path, str(exc)) from None
    if isinstance(value, dict):
        return {k: interpolate(v, env, (*path, k), fail) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, (*path, i), fail) for i, v in enumerate(value)]
    if isinstance(value, Override):
        return Override(interpolate(value.value, env, path, fail))
    return value


def parse_env_file(text: str, filename: str, lookup: Mapping[str, str] | None = None) -> dict[str, str]:
    """Docker's ``.env``/``env_file`` syntax: ``KEY=value`` lines, ``#`` comments, an optional ``export``,
    single quotes (literal), double quotes (escapes, may span lines), unquoted values (a `` #`` starts a
    comment). Unquoted and double-quoted values are interpolated from earlier keys, then ``lookup``; a bare
    ``KEY`` takes its value from ``lookup`` and is left out when unset there.
    Raises InterpolationError naming ``filename`` and the line."""
    lookup = lookup or {}
    result: dict[str, str] = {}
    pos = 0
    line_no = 1
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end]
        start_line = line_no
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            pos, line_no = end + 1, line_no + 1
            continue
        match = _ENV_LINE_KEY.match(line)
        if not match or (not match.group(2) and line[match.end():].strip()):
            raise InterpolationError(f"{filename}: line {start_line}: invalid line {stripped[:60]!r}")
        key = match.group(1)
        rest_at = pos + match.end()
        if not match.group(2):
            if key in lookup:
                result[key] = lookup[key]
            pos, line_no = end + 1, line_no + 1
            continue
        rest = text[rest_at:end].lstrip()
        value_at = end - len(rest)
        env = {**lookup, **result}
        try:
            if rest.startswith("'"):
                close = text.find("'", value_at + 1)
                if close < 0:
                    raise InterpolationError("unterminated single quote")
                value, after = text[value_at + 1:close], close + 1
            elif rest.startswith('"'):
                value, after = _double_quoted(text, value_at + 1)
                value = substitute(value, env)
            else:
                value, after = re.split(r"\s+#", rest, maxsplit=1)[0].strip(), end
                value = substitute(value, env)
        except InterpolationError as exc:
            raise InterpolationError(f"{filename}: line {start_line}: {exc}") from None
        line_no += text.count("\n", pos, after)
        end = text.find("\n", after)
        end = len(text) if end < 0 else end
        result[key] = value
        pos, line_no = end + 1, line_no + 1
    return result


def _double_quoted(text: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], "\\" + text[i + 1]))
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    raise InterpolationError("unterminated double quote")

