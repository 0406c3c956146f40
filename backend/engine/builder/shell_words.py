"""Variable substitution and shell-word splitting as Docker's ``shell.Lex`` does it.

The builder calls this per instruction, with the build args and environment in force at that step,
because the environment changes from step to step; the Dockerfile parser only tokenises.

Supported, as in Docker: ``$VAR``, ``${VAR}``, ``${VAR:-word}`` / ``${VAR-word}`` (default when unset or,
with the colon, empty), ``${VAR:+word}`` / ``${VAR+word}`` (alternative), ``${VAR:?msg}`` / ``${VAR?msg}``
(error), nested words (``${a:-${b:-c}}``), single quotes (literal), double quotes (``$`` expands, the escape
token escapes only ``"``, ``$`` and itself), the escape token outside quotes (escapes any character, dropped
at the end of the word), positional and special parameters (``$1``, ``$@``... never set). The pattern
modifiers ``#``, ``%`` and ``/`` of BuildKit are refused (the classic builder has none).

Guarantees: time linear in the length of the word; nesting of ``${...}`` is bounded by ``MAX_NESTING``;
every failure is an :class:`ExpansionError` (an ``InvalidParameter``) with Docker's wording.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from backend.engine.errors import InvalidParameter

MAX_NESTING = 64
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ExpansionError(InvalidParameter):
    """A word could not be expanded (unterminated quote, bad substitution, ``${VAR?}`` unset)."""


_SPACES = re.compile(r"\s++")


@cache
def _plain_run(escape: str, stop: str) -> re.Pattern[str]:
    """A run of characters that are neither special to the lexer nor white space (matched possessively)."""
    specials = re.escape("$<'\"" + escape + stop)
    return re.compile(rf"[^\s{specials}]++")


@cache
def _double_quoted_run(escape: str) -> re.Pattern[str]:
    """A run of characters inside double quotes that need no processing."""
    return re.compile('[^"$' + re.escape(escape) + "]++")


class _Words:
    """Collects the words of a line the way Docker's ``wordsStruct`` does."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.buf: list[str] = []

    def flush(self) -> None:
        word = "".join(self.buf)
        if word:
            self.words.append(word)
        self.buf = []

    def add_split(self, text: str) -> None:
        """Text from an unquoted place: white space separates words."""
        if not text:
            return
        if text[0].isspace():
            self.flush()
        parts = text.split()
        for i, part in enumerate(parts):
            if i:
                self.flush()
            self.buf.append(part)
        if text[-1].isspace():
            self.flush()

    def add_raw(self, text: str) -> None:
        """Text from a quoted or escaped place: kept in the current word as it is."""
        self.buf.append(text)

    def result(self) -> list[str]:
        self.flush()
        return self.words


class _Lexer:
    def __init__(
        self, text: str, env: Mapping[str, str], escape: str, *, quotes: bool, raw_quotes: bool,
        raw_escapes: bool, keep_unset: bool,
    ) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.quotes = quotes
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.keep_unset = keep_unset
        self.depth = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += len(ch)
        return ch

    def run(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to ``stop`` (consumed; "" = end of text); return the joined result and its words."""
        text, escape = self.text, self.escape
        plain = _plain_run(escape, stop)
        result: list[str] = []
        words = _Words()
        while self.pos < len(text):
            ch = text[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return "".join(result), words.result()
            match = plain.match(text, self.pos)
            if match:
                chunk = match.group()
                self.pos = match.end()
                result.append(chunk)
                words.add_raw(chunk)
            elif ch == "$":
                value = self.dollar()
                result.append(value)
                words.add_split(value)
            elif ch == "<":
                value = self.possible_heredoc()
                result.append(value)
                words.add_raw(value)
            elif self.quotes and ch in "'\"":
                value = self.single_quoted() if ch == "'" else self.double_quoted()
                result.append(value)
                words.add_raw(value)
            elif ch == escape:
                self.pos += 1
                if raw_escapes:
                    result.append(ch)
                    words.add_raw(ch)
                if self.pos >= len(text):
                    break
                ch = self.next()
                result.append(ch)
                words.add_raw(ch)
            else:  # white space, or a quote when quotes are not processed
                space = _SPACES.match(text, self.pos)
                chunk = space.group() if space else ch
                self.pos += len(chunk)
                result.append(chunk)
                words.add_split(chunk)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quoted(self) -> str:
        start = self.pos + 1
        end = self.text.find("'", start)
        if end < 0:
            raise ExpansionError("unexpected end of statement while looking for matching single-quote")
        self.pos = end + 1
        return self.text[start - 1:end + 1] if self.raw_quotes else self.text[start:end]

    def double_quoted(self) -> str:
        out: list[str] = []
        if self.raw_quotes:
            out.append('"')
        self.pos += 1
        escape = self.escape
        plain = _double_quoted_run(escape)
        while True:
            ch = self.peek()
            if not ch:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.pos += 1
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            run = plain.match(self.text, self.pos)
            if run:
                out.append(run.group())
                self.pos = run.end()
                continue
            self.pos += 1  # the escape token
            if self.raw_escapes:
                out.append(ch)
            following = self.peek()
            if not following:
                continue
            if following in ('"', "$", escape):
                ch = self.next()
            out.append(ch)

    def name(self) -> str:
        text, start = self.text, self.pos
        ch = self.peek()
        if ch.isdecimal():
            end = start
            while end < len(text) and text[end].isdecimal():
                end += 1
        elif ch and ch in _SPECIAL_PARAMS:
            end = start + 1
        else:
            end = start
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
        self.pos = end
        return text[start:end]

    def lookup(self, name: str) -> str | None:
        return self.env.get(name)

    def dollar(self) -> str:
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.keep_unset else ""
            return value
        self.pos += 1
        first = self.peek()
        if not first:
            raise ExpansionError("syntax error: missing '}'")
        if first in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            value = self.lookup(name)
            if value is None:
                return "${" + name + "}" if self.keep_unset else ""
            return value
        if not ch:
            raise ExpansionError("syntax error: missing '}'")
        modifier = ch
        if ch == ":":
            ch = self.next()
            modifier += ch
        if not ch or ch not in "+-?":
            raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpansionError(f"variable substitution nested more than {MAX_NESTING} levels deep")
        try:
            word, _ = self.run("}", raw_escapes=False)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        self.depth -= 1
        value = self.lookup(name)
        if value is None and self.keep_unset:
            return "${" + name + modifier + word + "}"
        missing = value is None or (modifier[0] == ":" and value == "")
        if ch == "-":
            return word if missing or value is None else value
        if ch == "+":
            return "" if missing else word
        if missing:
            reason = "is not allowed to be unset" if value is None else "is not allowed to be empty"
            raise ExpansionError(f"{name}: {word or reason}")
        return value or ""

    def possible_heredoc(self) -> str:
        self.pos += 1
        if self.peek() != "<":
            return "<"
        self.pos += 1
        start = self.pos
        while self.peek() in (" ", "\t", "\r") and self.peek():
            self.pos += 1
        return "<<" + self.text[start:self.pos]


def _lex(
    word: str, env: Mapping[str, str], escape: str, quotes: bool, raw_quotes: bool, raw_escapes: bool,
    keep_unset: bool,
) -> tuple[str, list[str]]:
    if escape not in ("\\", "`"):
        raise ValueError(f"invalid escape token {escape!r}")
    lexer = _Lexer(word, env, escape, quotes=quotes, raw_quotes=raw_quotes, raw_escapes=raw_escapes,
                   keep_unset=keep_unset)
    try:
        return lexer.run("", raw_escapes)
    except ExpansionError as exc:
        raise ExpansionError(f"failed to process {word!r}: {exc}") from None


def expand(
    word: str, env: Mapping[str, str], *, escape: str = "\\", quotes: bool = True, raw_quotes: bool = False,
    raw_escapes: bool = False, keep_unset: bool = False,
) -> str:
    """Expand variables in ``word`` and remove its quotes; white space is kept (Docker's ``ProcessWord``).

    ``quotes=False`` leaves quote characters alone (as for heredoc bodies); ``raw_quotes`` and ``raw_escapes``
    keep the quote and escape characters in the result; ``keep_unset`` leaves references to unset variables
    as written. Raises ExpansionError.
    """
    return _lex(word, env, escape, quotes, raw_quotes, raw_escapes, keep_unset)[0]


def expand_words(
    word: str, env: Mapping[str, str], *, escape: str = "\\", raw_quotes: bool = False, raw_escapes: bool = False,
    keep_unset: bool = False,
) -> list[str]:
    """Expand ``word`` and split it into words at unquoted white space (Docker's ``ProcessWords``).

    Split happens after substitution, so ``$V`` with ``V="a b"`` gives two words; an empty quoted string
    gives no word, as in Docker. Raises ExpansionError.
    """
    return _lex(word, env, escape, True, raw_quotes, raw_escapes, keep_unset)[1]
