""".dockerignore patterns with Docker's semantics (moby/patternmatcher and its ignorefile reader).

- A line starting with ``#`` is a comment; blank lines are skipped; other lines are trimmed, cleaned like
  Go's ``filepath.Clean`` (``./a/`` is ``a``, ``a//b/../c`` is ``a/c``) and lose a leading ``/``.
- ``*`` matches any run of characters but ``/``, ``?`` one character but ``/``, ``[...]`` a class (``[^...]``
  negates, ``a-z`` ranges), ``\\`` escapes the next character; ``**`` matches any number of directories
  (``**/`` may match none), a trailing ``**`` anything, and a pattern starting with ``**`` followed by
  plain text matches any path ending with that text.
- A pattern ``!p`` re-includes what ``p`` matches; the last pattern that matches a path decides.
- A path is excluded when a pattern matches it or one of its parent directories.

Matching runs as a set of states over the path (no backtracking regular expressions), so its time is
bounded by len(path) x len(pattern). Bad patterns raise :class:`PatternError` (a ``ValueError``).

The berth CLI filters the contexts it sends with it; the builder (``backend.engine.builder.dockerignore``)
applies it again on the daemon side.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from enum import Enum


class PatternError(ValueError):
    """A .dockerignore pattern is malformed (an unterminated ``[``, a bare ``!``)."""


class _Op(Enum):
    LITERAL = "literal"  # one given character
    ONE = "one"  # ?: one character but "/"
    CLASS = "class"  # [...]
    STAR = "star"  # *: any run without "/"
    ANY = "any"  # trailing **: any run
    DIRS = "dirs"  # **/ in the middle: nothing, or any run ending with "/" (followed by DIRS_BODY)
    DIRS_BODY = "dirs_body"


@dataclass(frozen=True)
class _Token:
    op: _Op
    char: str = ""
    ranges: tuple[tuple[str, str], ...] = ()
    negated: bool = False

    def accepts(self, ch: str) -> bool:
        if self.op is _Op.LITERAL:
            return ch == self.char
        if self.op is _Op.ONE or self.op is _Op.STAR:
            return ch != "/"
        if self.op is _Op.CLASS:
            return any(lo <= ch <= hi for lo, hi in self.ranges) != self.negated
        return True


@dataclass(frozen=True)
class Pattern:
    """One cleaned pattern; ``exclusion`` is True for a ``!`` (re-include) line."""

    text: str
    exclusion: bool
    tokens: tuple[_Token, ...]
    suffix: str | None  # set when the pattern is ** followed by plain text (Docker's suffix match)

    def matches(self, path: str) -> bool:
        """True when this pattern (without its ``!``) matches the whole cleaned relative ``path``."""
        if self.suffix is not None:
            return path.endswith(self.suffix) or (self.suffix.startswith("/") and path == self.suffix[1:])
        return _run(self.tokens, path, parents=False)

    def matches_or_parent(self, path: str) -> bool:
        """True when this pattern matches ``path`` or one of its parent directories (one pass over it)."""
        if self.suffix is None:
            return _run(self.tokens, path, parents=True)
        return self.matches(path) or any(self.matches(path[:i]) for i, ch in enumerate(path) if ch == "/")


def clean_path(path: str) -> str:
    """Go's ``filepath.Clean`` for slash paths: "" and "./" become ".", a leading "//" becomes "/"."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _closure(tokens: tuple[_Token, ...], states: set[int]) -> set[int]:
    stack = list(states)
    while stack:
        i = stack.pop()
        if i >= len(tokens):
            continue
        op = tokens[i].op
        follow = [i + 1] if op in (_Op.STAR, _Op.ANY) else [i + 2] if op is _Op.DIRS else []
        if op is _Op.DIRS:
            follow.append(i + 1)
        for j in follow:
            if j not in states:
                states.add(j)
                stack.append(j)
    return states


def _run(tokens: tuple[_Token, ...], path: str, parents: bool) -> bool:
    """Run the pattern over ``path``; with ``parents``, a match of any prefix ending before a "/" counts."""
    states = _closure(tokens, {0})
    for ch in path:
        if parents and ch == "/" and len(tokens) in states:
            return True
        moved: set[int] = set()
        for i in states:
            if i >= len(tokens):
                continue
            token = tokens[i]
            if token.op is _Op.DIRS:
                continue
            if token.accepts(ch):
                moved.add(i if token.op in (_Op.STAR, _Op.ANY, _Op.DIRS_BODY) else i + 1)
            if token.op is _Op.DIRS_BODY and ch == "/":
                moved.add(i + 1)
        if not moved:
            return False
        states = _closure(tokens, moved)
    return len(tokens) in states


def _parse_class(pattern: str, start: int) -> tuple[_Token, int]:
    """Parse ``[...]`` whose ``[`` is at ``start``; return the token and the index after ``]``."""
    i = start + 1
    negated = i < len(pattern) and pattern[i] == "^"
    i += negated
    ranges: list[tuple[str, str]] = []
    while True:
        if i >= len(pattern):
            raise PatternError(f"syntax error in pattern: {pattern!r}")
        ch = pattern[i]
        if ch == "]" and ranges:
            return _Token(_Op.CLASS, ranges=tuple(ranges), negated=negated), i + 1
        if ch == "\\":
            i += 1
            if i >= len(pattern):
                raise PatternError(f"syntax error in pattern: {pattern!r}")
            ch = pattern[i]
        hi = ch
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            hi = pattern[i + 2]
            i += 2
            if hi == "\\" and i + 1 < len(pattern):
                i += 1
                hi = pattern[i]
            if hi < ch:
                raise PatternError(f"syntax error in pattern: {pattern!r}")
        ranges.append((ch, hi))
        i += 1


def _compile(text: str, exclusion: bool) -> Pattern:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "*" and text.startswith("**", i):
            i += 2
            if i < len(text) and text[i] == "/":
                i += 1
            if i == len(text):
                tokens.append(_Token(_Op.ANY))
            else:
                tokens += [_Token(_Op.DIRS), _Token(_Op.DIRS_BODY)]
            continue
        if ch == "*":
            tokens.append(_Token(_Op.STAR))
        elif ch == "?":
            tokens.append(_Token(_Op.ONE))
        elif ch == "[":
            token, i = _parse_class(text, i)
            tokens.append(token)
            continue
        elif ch == "\\" and i + 1 < len(text):
            i += 1
            tokens.append(_Token(_Op.LITERAL, text[i]))
        else:
            tokens.append(_Token(_Op.LITERAL, ch))
        i += 1
    rest = text[2:]
    plain = text.startswith("**") and rest and not any(c in "*?[]\\" for c in rest)
    return Pattern(text, exclusion, tuple(tokens), rest if plain else None)


def parse_dockerignore(text: str) -> list[Pattern]:
    """Parse a .dockerignore file (a leading BOM is dropped). Raises PatternError."""
    patterns: list[Pattern] = []
    for line in text.removeprefix("\ufeff").split("\n"):
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
            if not line:
                raise PatternError('illegal exclusion pattern: "!"')
        line = clean_path(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        patterns.append(_compile(line, exclusion))
    return patterns


def is_excluded(path: str, patterns: list[Pattern]) -> bool:
    """True when the context path ``path`` (relative, "/"-separated) is left out of the build context.

    The last pattern matching the path or one of its parents decides; the context root is never excluded.
    """
    path = clean_path(path).lstrip("/") or "."
    if path == ".":
        return False
    excluded = False
    for pattern in patterns:
        if pattern.exclusion != excluded:
            continue
        if pattern.matches_or_parent(path):
            excluded = not pattern.exclusion
    return excluded


def must_walk_dir(directory: str, patterns: list[Pattern]) -> bool:
    """True when an excluded ``directory`` may still hold re-included (``!``) files, so it must be walked.

    Conservative: it may say True for a directory where nothing is re-included; callers still check
    every entry with :func:`is_excluded`.
    """
    parts = clean_path(directory).lstrip("/").split("/")
    return any(pattern.exclusion and _may_reach(pattern, parts) for pattern in patterns)


def _may_reach(pattern: Pattern, dir_parts: list[str]) -> bool:
    """Could ``pattern`` match ``dir`` itself, one of its parents or something below it?"""
    if pattern.suffix is not None or "**" in pattern.text:
        return True
    try:
        segments = [_compile(segment, False) for segment in pattern.text.split("/")]
    except PatternError:  # a class holding "/": cannot tell per segment
        return True
    return all(segment.matches(part) for segment, part in zip(segments, dir_parts, strict=False))
