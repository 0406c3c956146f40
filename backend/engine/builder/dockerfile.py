"""The Dockerfile parser: text -> typed stages and instructions, as Docker's parser reads them.

Supported, with Docker's rules and (where it has one) Docker's error wording:

- Parser directives ``# escape=`` (``\\`` or backtick) and ``# syntax=`` / ``# check=`` (recorded, otherwise
  ignored), only in the leading comment block; a repeated directive is an error.
- Comments: lines whose first non-blank character is ``#``; inside a continued instruction such lines are
  dropped, as are empty lines. A ``#`` elsewhere is an ordinary character.
- Line continuation with the escape token at the end of a line (trailing blanks allowed), not when the
  token is itself escaped; an instruction left open at the end of the file ends there.
- JSON (exec) form for RUN, CMD, ENTRYPOINT, SHELL, VOLUME, COPY, ADD and HEALTHCHECK CMD; text that is
  not a valid JSON array of strings falls back to the shell form, a valid array holding a non-string is
  an error. SHELL must be JSON.
- Heredocs for RUN, COPY and ADD (also under ONBUILD): ``<<EOF``, ``<<-EOF`` (leading tabs stripped from
  the body), quoted names (``<<"EOF"``, ``<<'EOF'``: ``Heredoc.expand`` is False), file descriptors
  (``3<<EOF``), several in one instruction; ``COPY <<EOF /dst`` makes an inline source.
- ENV and LABEL as ``k=v k2="v 2"`` and the legacy ``ENV k v w``; ARG with and without a default,
  several per line; ARGs before the first FROM are the Dockerfile's ``meta_args`` (usable in FROM lines).
- FROM ``[--platform=p] image [AS name]`` (stage names: ``[a-z][a-z0-9-_.]*``, case-insensitive, unique).
- Builder flags (``--name=value`` words before the arguments) per instruction: COPY ``--from --chown
  --chmod --link``, ADD ``--chown --chmod --checksum --link --keep-git-dir``, RUN ``--mount --network
  --security`` (recorded; the classic builder refuses them at run time), FROM ``--platform``, HEALTHCHECK
  ``--interval --timeout --start-period --start-interval --retries``. Any other flag is an error.
- Instruction names are case-insensitive.

The parser never expands variables: the builder calls :meth:`Instruction.expanded` (or the functions
of ``shell_words``) with the environment of each step. Instructions that expand, as Docker's: ADD COPY
ENV EXPOSE LABEL STOPSIGNAL USER VOLUME WORKDIR ARG, and FROM (with the meta args only, see
:meth:`Dockerfile.meta_env` and :meth:`Stage.expanded`); ONBUILD triggers expand when they run in the
child build. RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and MAINTAINER never do.

Limits: input over ``MAX_DOCKERFILE_SIZE`` bytes, NUL bytes and invalid UTF-8 are refused; a leading BOM
is dropped. Parsing is linear in the size of the input (no backtracking regular expressions).
Every error is a :class:`DockerfileError` (``InvalidParameter``) naming the line.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Self

from backend.engine.builder.shell_words import ExpansionError, expand, expand_words
from backend.engine.errors import InvalidParameter

MAX_DOCKERFILE_SIZE = 4 * 1024 * 1024
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")
_DIRECTIVE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_BLANKS = re.compile(r"[\t\v\f\r ]+")
_GO_SPACE = " \t\n\f\r"
_MAX_REASON = 300  # keeps messages one readable line when they quote a huge word
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9,
                   "m": 60 * 10**9, "h": 3600 * 10**9}


_Expander = Callable[[str], str]
_WordsExpander = Callable[[str], list[str]]


class DockerfileError(InvalidParameter):
    """The Dockerfile is malformed. ``line`` is the 1-based line of the instruction (None: the whole file)."""

    def __init__(self, line: int | None, reason: str, instruction: str = "") -> None:
        if instruction and instruction not in reason:
            reason = f"{instruction}: {reason}"
        if len(reason) > _MAX_REASON:
            reason = reason[:_MAX_REASON] + "..."
        where = f" line {line}" if line is not None else ""
        super().__init__(f"Dockerfile parse error{where}: {reason}")
        self.line = line
        self.instruction = instruction
        self.reason = reason


class Kind(StrEnum):
    ADD = "ADD"
    ARG = "ARG"
    CMD = "CMD"
    COPY = "COPY"
    ENTRYPOINT = "ENTRYPOINT"
    ENV = "ENV"
    EXPOSE = "EXPOSE"
    FROM = "FROM"
    HEALTHCHECK = "HEALTHCHECK"
    LABEL = "LABEL"
    MAINTAINER = "MAINTAINER"
    ONBUILD = "ONBUILD"
    RUN = "RUN"
    SHELL = "SHELL"
    STOPSIGNAL = "STOPSIGNAL"
    USER = "USER"
    VOLUME = "VOLUME"
    WORKDIR = "WORKDIR"


@dataclass(frozen=True)
class Directive:
    name: str  # lower case: syntax, escape or check
    value: str
    line: int


@dataclass(frozen=True)
class Heredoc:
    """An inline document. ``content`` ends with a newline per line and has its tabs stripped if ``chomp``."""

    name: str
    content: str
    expand: bool  # False when the name was quoted: the body is taken literally
    chomp: bool  # <<-
    fd: int | None = None  # 3<<EOF


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    legacy: bool = False  # written as ``ENV key value``


@dataclass(frozen=True)
class Arg:
    name: str
    default: str | None
    line: int


@dataclass(frozen=True)
class Instruction:
    """One instruction as written. ``original`` is the logical line (continuations joined)."""

    kind: Kind
    line: int
    end_line: int
    original: str
    flags: Mapping[str, str]

    def expanded(self, env: Mapping[str, str], escape: str = "\\") -> Self:
        """This instruction with variables substituted from ``env`` (itself if the kind never expands).

        Raises DockerfileError naming the line when a word cannot be expanded.
        """
        try:
            return self._expand(lambda word: expand(word, env, escape=escape),
                                lambda word: expand_words(word, env, escape=escape))
        except ExpansionError as exc:
            raise DockerfileError(self.line, str(exc), self.kind.value) from None

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return self


@dataclass(frozen=True)
class RunInstruction(Instruction):
    command: str | tuple[str, ...]  # str: shell form, tuple: exec (JSON) form
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class CmdInstruction(Instruction):
    command: str | tuple[str, ...]


@dataclass(frozen=True)
class EntrypointInstruction(Instruction):
    command: str | tuple[str, ...]


@dataclass(frozen=True)
class ShellInstruction(Instruction):
    shell: tuple[str, ...]


@dataclass(frozen=True)
class EnvInstruction(Instruction):
    """ENV or LABEL pairs (keys and values unexpanded: quotes are removed by :meth:`expanded`)."""

    pairs: tuple[KeyValue, ...]

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return dataclasses.replace(
            self, pairs=tuple(KeyValue(word(p.key), word(p.value), p.legacy) for p in self.pairs))


@dataclass(frozen=True)
class LabelInstruction(EnvInstruction):
    pass


@dataclass(frozen=True)
class ArgInstruction(Instruction):
    args: tuple[Arg, ...]

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return dataclasses.replace(self, args=tuple(
            Arg(word(a.name), None if a.default is None else word(a.default), a.line) for a in self.args))


@dataclass(frozen=True)
class CopyInstruction(Instruction):
    """COPY (and the base of ADD). ``heredocs`` are inline sources, named by their ``name``."""

    sources: tuple[str, ...]
    dest: str
    chown: str = ""
    chmod: str = ""
    from_: str = ""
    link: bool = False
    heredocs: tuple[Heredoc, ...] = ()

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return dataclasses.replace(
            self, sources=tuple(word(s) for s in self.sources), dest=word(self.dest), chown=word(self.chown),
            chmod=word(self.chmod), from_=word(self.from_))


@dataclass(frozen=True)
class AddInstruction(CopyInstruction):
    checksum: str = ""
    keep_git_dir: bool = False

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return dataclasses.replace(super()._expand(word, words), checksum=word(self.checksum))


@dataclass(frozen=True)
class ExposeInstruction(Instruction):
    ports: tuple[str, ...]

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return dataclasses.replace(self, ports=tuple(p for port in self.ports for p in words(port)))


@dataclass(frozen=True)
class VolumeInstruction(Instruction):
    paths: tuple[str, ...]

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return dataclasses.replace(self, paths=tuple(word(p) for p in self.paths))


@dataclass(frozen=True)
class WorkdirInstruction(Instruction):
    path: str

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return dataclasses.replace(self, path=word(self.path))


@dataclass(frozen=True)
class UserInstruction(Instruction):
    user: str

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return dataclasses.replace(self, user=word(self.user))


@dataclass(frozen=True)
class StopSignalInstruction(Instruction):
    signal: str

    def _expand(self, word: _Expander, words: _WordsExpander) -> Self:
        return dataclasses.replace(self, signal=word(self.signal))


@dataclass(frozen=True)
class MaintainerInstruction(Instruction):
    maintainer: str


@dataclass(frozen=True)
class HealthcheckInstruction(Instruction):
    """``test`` is ("NONE",), ("CMD", *argv) or ("CMD-SHELL", command); durations in nanoseconds (0: unset)."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class OnbuildInstruction(Instruction):
    """``expression`` is what the image config records; ``trigger`` the same, parsed (and checked) now."""

    expression: str
    trigger: Instruction


@dataclass(frozen=True)
class Stage:
    index: int
    name: str  # lower case; "" when the stage has no AS name
    base: str  # image reference, stage name or "scratch" (unexpanded)
    platform: str
    line: int
    original: str
    instructions: tuple[Instruction, ...] = ()

    def expanded(self, meta_env: Mapping[str, str], escape: str = "\\") -> Stage:
        """The stage with ``base`` and ``platform`` expanded from the meta args. Raises DockerfileError."""
        try:
            return dataclasses.replace(self, base=expand(self.base, meta_env, escape=escape),
                                       platform=expand(self.platform, meta_env, escape=escape))
        except ExpansionError as exc:
            raise DockerfileError(self.line, str(exc), "FROM") from None


@dataclass(frozen=True)
class Dockerfile:
    directives: tuple[Directive, ...]
    stages: tuple[Stage, ...]
    meta_args: tuple[Arg, ...]
    escape: str = "\\"

    def meta_env(self, build_args: Mapping[str, str]) -> dict[str, str]:
        """Values of the ARGs before the first FROM: a build arg wins over the default, which may use the
        earlier meta args; an ARG with neither stays unset. Raises DockerfileError."""
        env: dict[str, str] = {}
        for arg in self.meta_args:
            if arg.name in build_args:
                env[arg.name] = build_args[arg.name]
            elif arg.default is not None:
                try:
                    env[arg.name] = expand(arg.default, env, escape=self.escape)
                except ExpansionError as exc:
                    raise DockerfileError(arg.line, str(exc), "ARG") from None
        return env

    def stage(self, name_or_index: str) -> Stage:
        """The stage named (case-insensitively) or numbered so (``--target``). Raises DockerfileError."""
        for stage in self.stages:
            if stage.name and stage.name == name_or_index.lower():
                return stage
        if name_or_index.isdecimal() and int(name_or_index) < len(self.stages):
            return self.stages[int(name_or_index)]
        raise DockerfileError(None, f"target stage {name_or_index!r} could not be found")


# --- reading lines --------------------------------------------------------------------------------------


@dataclass
class _Node:
    """One logical line, split into instruction word, flags and the rest (Docker's parser node)."""

    cmd: str
    flags: list[str]
    rest: str
    original: str
    line: int
    end_line: int
    heredocs: list[Heredoc] = field(default_factory=list)


class _Reader:
    def __init__(self, text: str) -> None:
        lines = text.split("\n")
        self.lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        self.pos = 0
        self.escape = "\\"
        self.directives: list[Directive] = []
        self.directives_done = False

    def next_line(self) -> str | None:
        if self.pos >= len(self.lines):
            return None
        self.pos += 1
        return self.lines[self.pos - 1]

    def directive(self, line: str) -> None:
        """Docker's directive parser: only a leading block of ``# name=value`` comments counts."""
        if self.directives_done:
            return
        if not line.startswith("#"):
            self.directives_done = True
            return
        key, sep, value = line[1:].lstrip().partition("=")
        key, value = key.rstrip(_GO_SPACE).lower(), value.strip(_GO_SPACE)
        if not sep or not value or not _DIRECTIVE_NAME.fullmatch(key) or key not in _KNOWN_DIRECTIVES:
            self.directives_done = True
            return
        if any(d.name == key for d in self.directives):
            raise DockerfileError(self.pos, f"only one {key} parser directive can be used")
        if key == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(self.pos, f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
        self.directives.append(Directive(key, value, self.pos))

    def continued(self, line: str) -> tuple[str, bool]:
        """Strip a line-continuation token; return the text and whether the instruction ends here."""
        stripped = line.rstrip(" \t")
        if not stripped.endswith(self.escape):
            return line, True
        body = stripped[:-1]
        if body.endswith(self.escape):
            return line, True
        return body, False

    def nodes(self) -> list[_Node]:
        nodes: list[_Node] = []
        while (raw := self.next_line()) is not None:
            token = raw.rstrip("\r\n").lstrip()
            self.directive(token)
            start = self.pos
            if token.startswith("#"):
                token = ""
            token, ended = self.continued(token)
            if ended and not token:
                continue
            parts = [token]
            while not ended and (raw := self.next_line()) is not None:
                token = raw.rstrip("\r\n")
                self.directive(token)
                if token.lstrip().startswith("#") or not token.strip():
                    continue
                token, ended = self.continued(token)
                parts.append(token)
            node = _split_node("".join(parts), self.escape, start, self.pos)
            if _may_hold_heredocs(node, self.escape):
                self.read_heredocs(node)
            nodes.append(node)
        return nodes

    def read_heredocs(self, node: _Node) -> None:
        for name, fd, chomp, expand_body in _heredoc_words(node.original):
            body: list[str] = []
            while True:
                raw = self.next_line()
                if raw is None:
                    raise DockerfileError(node.line, "unterminated heredoc", node.cmd.upper())
                candidate = raw.rstrip("\r\n")
                if (candidate.lstrip("\t") if chomp else candidate) == name:
                    break
                body.append(raw.lstrip("\t") if chomp else raw)
            node.heredocs.append(Heredoc(name, "".join(body), expand_body, chomp, fd))
        node.end_line = self.pos


def _split_node(line: str, escape: str, start: int, end: int) -> _Node:
    parts = _BLANKS.split(line.strip(), maxsplit=1)
    rest, flags = _builder_flags(parts[1], escape) if len(parts) == 2 else ("", [])
    return _Node(parts[0], flags, rest.strip(), line, start, end)


def _builder_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Split leading ``--flag[=value]`` words (quotes and escapes resolved) from the rest of ``line``."""
    flags: list[str] = []
    pos = 0
    while True:
        while pos < len(line) and line[pos].isspace():
            pos += 1
        if not line.startswith("--", pos):
            return line[pos:], flags
        word: list[str] = []
        quote = ""
        while pos < len(line):
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                    pos += 1
                    continue
            elif ch.isspace():
                break
            elif ch in "'\"":
                quote = ch
                pos += 1
                continue
            if ch == escape:
                pos += 1
                if pos == len(line):
                    break
                ch = line[pos]
            word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--":
            return line[pos:], flags
        flags.append(text)


def _may_hold_heredocs(node: _Node, escape: str) -> bool:
    cmd, rest = node.cmd.lower(), node.rest
    if cmd == "onbuild":
        child = _split_node(rest, escape, node.line, node.end_line) if rest else None
        if child is None:
            return False
        cmd, rest = child.cmd.lower(), child.rest
    if cmd not in ("run", "copy", "add") or "<<" not in node.original:
        return False
    try:
        return _json_array(rest) is None
    except _NotStrings:  # reported when the instruction is built
        return False


_RAW_WORD = re.compile(r"""(?:<<[ \t\r]*+|\\(?:.|\Z)|"(?:[^"\\]++|\\(?:.|\Z))*+"?+|'[^']*+'?+|[^\s"'\\<]++|<)++""",
                       re.DOTALL)


def _heredoc_words(line: str) -> list[tuple[str, int | None, bool, bool]]:
    """The heredocs a line opens: (name, fd, chomp, expand) per ``[n]<<[-]NAME`` word, in order."""
    found: list[tuple[str, int | None, bool, bool]] = []
    for match in _RAW_WORD.finditer(line):
        word = match.group()
        digits = len(word) - len(word.lstrip("0123456789"))
        rest = word[digits:]
        if not rest.startswith("<<"):
            continue
        rest = rest[2:]
        chomp = rest.startswith("-")
        rest = rest[chomp:].lstrip(_GO_SPACE)
        if not rest or "<" in rest:
            continue
        if not any(c in rest for c in "'\"\\") and not any(c.isspace() for c in rest):
            found.append((rest, int(word[:digits]) if digits else None, chomp, True))
            continue
        try:
            names = expand_words(rest, {}, keep_unset=True)
            raw_names = expand_words(rest, {}, keep_unset=True, raw_quotes=True)
        except ExpansionError:
            continue
        if len(names) != 1 or len(raw_names) != 1:
            continue
        quotes = names[0].count("'") + names[0].count('"')
        expand_body = quotes == raw_names[0].count("'") + raw_names[0].count('"')
        found.append((names[0], int(word[:digits]) if digits else None, chomp, expand_body))
    return found


# --- argument forms -------------------------------------------------------------------------------------


class _NotStrings(ValueError):
    pass


def _reject_constant(name: str) -> object:
    raise ValueError(name)


def _json_array(rest: str) -> tuple[str, ...] | None:
    """The strings of a JSON array, or None when ``rest`` is not one (Docker then uses the shell form).

    Raises _NotStrings for a valid array holding something other than strings.
    """
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise _NotStrings("when using JSON array syntax, arrays must be comprised of strings only")
    return tuple(value)


@cache
def _word_pattern(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"""(?:{e}(?:.|\Z)|"(?:[^"{e}]++|{e}(?:.|\Z))*+"?+|'[^']*+'?+|[^\s"'{e}]++)++""",
                      re.DOTALL)


def _words(rest: str, escape: str) -> list[str]:
    """Docker's ``parseWords``: split at unquoted blanks, keeping quotes and escapes in the words."""
    return [w[:-1] if w.endswith(escape) and _lone_escape_at_end(w, escape) else w
            for w in _word_pattern(escape).findall(rest)]


def _lone_escape_at_end(word: str, escape: str) -> bool:
    count = len(word) - len(word.rstrip(escape))
    return count % 2 == 1


# --- building instructions ------------------------------------------------------------------------------


_FLAG_KINDS: dict[Kind, dict[str, str]] = {
    Kind.ADD: {"chown": "str", "chmod": "str", "checksum": "str", "link": "bool", "keep-git-dir": "bool"},
    Kind.COPY: {"chown": "str", "chmod": "str", "from": "str", "link": "bool"},
    Kind.FROM: {"platform": "str"},
    Kind.RUN: {"mount": "list", "network": "str", "security": "str"},
    Kind.HEALTHCHECK: {"interval": "str", "timeout": "str", "start-period": "str", "start-interval": "str",
                       "retries": "str"},
}


def _parse_flags(kind: Kind, words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Docker's BFlags: ``--name=value``, bools as ``--name`` or ``--name=true|false``; repeatable lists."""
    allowed = _FLAG_KINDS.get(kind, {})
    values: dict[str, str] = {}
    lists: list[str] = []
    for word in words:
        if not word.startswith("--"):
            raise ValueError(f"arg should start with -- : {word}")
        name, has_value, value = word[2:].partition("=")
        flag_type = allowed.get(name)
        if flag_type is None:
            raise ValueError(f"unknown flag: --{name}")
        if name in values and flag_type != "list":
            raise ValueError(f"duplicate flag specified: --{name}")
        if flag_type == "bool":
            if has_value and value.lower() not in ("true", "false"):
                if not value:
                    raise ValueError(f"missing a value on flag: --{name}")
                raise ValueError(f"expecting boolean value for flag --{name}, not: {value}")
            values[name] = value.lower() if has_value else "true"
            continue
        if not has_value:
            raise ValueError(f"missing a value on flag: --{name}")
        if flag_type == "list":
            lists.append(value)
        values[name] = value
    return values, lists


def _command(rest: str) -> str | tuple[str, ...]:
    array = _json_array(rest)
    return rest if array is None else array


def _list_form(rest: str) -> list[str]:
    array = _json_array(rest)
    if array is not None:
        return list(array)
    return _BLANKS.split(rest) if rest else []


def _one_argument(kind: Kind, rest: str) -> str:
    if not rest:
        raise ValueError(f"{kind} requires exactly one argument")
    return rest


def _key_values(kind: Kind, rest: str, escape: str) -> tuple[KeyValue, ...]:
    words = _words(rest, escape)
    if not words:
        raise ValueError(f"{kind} requires at least one argument")
    if "=" not in words[0]:
        parts = _BLANKS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ValueError(f"{kind} must have two arguments")
        return (KeyValue(parts[0], parts[1], legacy=True),)
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        if not key:
            raise ValueError(f"{kind} names can not be blank")
        pairs.append(KeyValue(key, value))
    return tuple(pairs)


def _duration(name: str, text: str) -> int:
    """Go's ``time.ParseDuration`` (non-negative), in nanoseconds; 0 when empty; at least 1ms otherwise."""
    if not text:
        return 0
    body = text.lstrip("+")
    if body == "0":
        return 0
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    nanoseconds = int(total)
    if 0 < nanoseconds < 1_000_000:
        raise ValueError(f'Interval "{name}" cannot be less than 1ms')
    return nanoseconds


_Common = tuple[Kind, int, int, str, Mapping[str, str]]  # the fields of Instruction, in order


def _healthcheck(rest: str, flags: dict[str, str], common: _Common) -> HealthcheckInstruction:
    parts = _BLANKS.split(rest, maxsplit=1)
    typ, rest = parts[0].upper(), (parts[1] if len(parts) == 2 else "")
    if not typ:
        raise ValueError("HEALTHCHECK requires at least one argument")
    if typ == "NONE":
        if rest:
            raise ValueError("HEALTHCHECK NONE takes no arguments")
        return HealthcheckInstruction(*common, test=("NONE",))
    if typ != "CMD":
        raise ValueError(f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
    command = _command(rest)
    if not command:
        raise ValueError("Missing command after HEALTHCHECK CMD")
    test = ("CMD-SHELL", command) if isinstance(command, str) else ("CMD", *command)
    retries_text = flags.get("retries", "")
    try:
        retries = int(retries_text) if retries_text else 0
    except ValueError:
        raise ValueError(f'--retries must be an integer, not "{retries_text}"') from None
    if retries < 0:
        raise ValueError(f"--retries cannot be negative ({retries})")
    return HealthcheckInstruction(
        *common, test=test, interval=_duration("interval", flags.get("interval", "")),
        timeout=_duration("timeout", flags.get("timeout", "")),
        start_period=_duration("start-period", flags.get("start-period", "")),
        start_interval=_duration("start-interval", flags.get("start-interval", "")), retries=retries)


def _copy(node: _Node, flags: dict[str, str], common: _Common) -> CopyInstruction:
    kind = common[0]
    args = _list_form(node.rest)
    if len(args) < 2:
        raise ValueError(f"{kind} requires at least two arguments, but only one was provided. "
                         "Destination could not be determined")
    if _heredoc_words(args[-1]):
        raise ValueError(f"{kind} cannot accept a heredoc as a destination")
    by_name = {heredoc.name: heredoc for heredoc in node.heredocs}
    sources: list[str] = []
    inline: list[Heredoc] = []
    for source in args[:-1]:
        opened = _heredoc_words(source) if by_name else []
        if opened and opened[0][0] in by_name:
            inline.append(by_name[opened[0][0]])
        else:
            sources.append(source)
    chown, chmod, link = flags.get("chown", ""), flags.get("chmod", ""), flags.get("link") == "true"
    if kind is Kind.ADD:
        return AddInstruction(*common, sources=tuple(sources), dest=args[-1], chown=chown, chmod=chmod, link=link,
                              heredocs=tuple(inline), checksum=flags.get("checksum", ""),
                              keep_git_dir=flags.get("keep-git-dir") == "true")
    return CopyInstruction(*common, sources=tuple(sources), dest=args[-1], chown=chown, chmod=chmod, link=link,
                           heredocs=tuple(inline), from_=flags.get("from", ""))


def _instruction(node: _Node, escape: str) -> Instruction:
    """Build the typed instruction of ``node`` (not FROM). Raises ValueError with Docker's reason."""
    try:
        kind = Kind(node.cmd.upper())
    except ValueError:
        raise ValueError(f"unknown instruction: {node.cmd.upper()}") from None
    flags, mounts = _parse_flags(kind, node.flags)
    common: _Common = (kind, node.line, node.end_line, node.original.strip(), flags)
    rest = node.rest
    if kind is Kind.RUN:
        return RunInstruction(*common, command=_command(rest), heredocs=tuple(node.heredocs), mounts=tuple(mounts))
    if kind is Kind.CMD:
        return CmdInstruction(*common, command=_command(rest))
    if kind is Kind.ENTRYPOINT:
        return EntrypointInstruction(*common, command=_command(rest))
    if kind is Kind.SHELL:
        shell = _json_array(rest)
        if not rest or shell == ():
            raise ValueError("SHELL requires at least one argument")
        if shell is None:
            raise ValueError("SHELL requires the arguments to be in JSON form")
        return ShellInstruction(*common, shell=shell)
    if kind is Kind.ENV:
        return EnvInstruction(*common, pairs=_key_values(kind, rest, escape))
    if kind is Kind.LABEL:
        return LabelInstruction(*common, pairs=_key_values(kind, rest, escape))
    if kind is Kind.ARG:
        return ArgInstruction(*common, args=_args(rest, escape, node.line))
    if kind in (Kind.COPY, Kind.ADD):
        return _copy(node, flags, common)
    if kind is Kind.EXPOSE:
        if not rest:
            raise ValueError("EXPOSE requires at least one argument")
        return ExposeInstruction(*common, ports=tuple(_BLANKS.split(rest)))
    if kind is Kind.VOLUME:
        paths = [p.strip() for p in _list_form(rest)]
        if not paths:
            raise ValueError("VOLUME requires at least one argument")
        if not all(paths):
            raise ValueError("VOLUME specified can not be an empty string")
        return VolumeInstruction(*common, paths=tuple(paths))
    if kind is Kind.WORKDIR:
        return WorkdirInstruction(*common, path=_one_argument(kind, rest))
    if kind is Kind.USER:
        return UserInstruction(*common, user=_one_argument(kind, rest))
    if kind is Kind.STOPSIGNAL:
        return StopSignalInstruction(*common, signal=_one_argument(kind, rest))
    if kind is Kind.MAINTAINER:
        return MaintainerInstruction(*common, maintainer=_one_argument(kind, rest))
    if kind is Kind.HEALTHCHECK:
        return _healthcheck(rest, flags, common)
    if kind is Kind.ONBUILD:
        return _onbuild(node, escape, common)
    raise ValueError(f"{kind} isn't allowed here")


def _args(rest: str, escape: str, line: int) -> tuple[Arg, ...]:
    words = _words(rest, escape)
    if not words:
        raise ValueError("ARG requires at least one argument")
    args = []
    for word in words:
        name, sep, default = word.partition("=")
        if not name:
            raise ValueError("ARG names can not be blank")
        args.append(Arg(name, default if sep else None, line))
    return tuple(args)


def _onbuild(node: _Node, escape: str, common: _Common) -> OnbuildInstruction:
    if not node.rest:
        raise ValueError("ONBUILD requires at least one argument")
    child = _split_node(node.rest, escape, node.line, node.end_line)
    child.heredocs = node.heredocs
    trigger = child.cmd.upper()
    if trigger == "ONBUILD":
        raise ValueError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise ValueError(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = node.original.strip()[len(node.cmd):].lstrip()
    for heredoc in node.heredocs:
        expression += "\n" + heredoc.content + heredoc.name
    return OnbuildInstruction(*common, expression=expression, trigger=_instruction(child, escape))


def _stage(node: _Node, index: int) -> Stage:
    flags, _ = _parse_flags(Kind.FROM, node.flags)
    args = _BLANKS.split(node.rest) if node.rest else []
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.fullmatch(name):
            raise ValueError(f'invalid name for build stage: "{args[2]}", name can\'t start with a number or '
                             "contain symbols")
    elif len(args) != 1:
        raise ValueError("FROM requires either one or three arguments")
    return Stage(index, name, args[0], flags.get("platform", ""), node.line, node.original.strip())


def parse_dockerfile(data: bytes | str, *, max_size: int = MAX_DOCKERFILE_SIZE) -> Dockerfile:
    """Parse a Dockerfile into stages of typed instructions, variables left unexpanded.

    Guarantees: at least one stage; stage names unique; only ARGs before the first FROM (they become
    ``meta_args``). Raises DockerfileError (line and reason) for any malformed input.
    """
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > max_size:
        raise DockerfileError(None, f"Dockerfile is larger than the limit of {max_size} bytes")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise DockerfileError(raw.count(b"\n", 0, nul) + 1, "Dockerfile contains a NUL byte")
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise DockerfileError(raw.count(b"\n", 0, exc.start) + 1, "Dockerfile is not valid UTF-8") from None
    reader = _Reader(text.removeprefix("\ufeff"))
    stages: list[Stage] = []
    instructions: list[Instruction] = []
    meta_args: list[Arg] = []
    for node in reader.nodes():
        kind = node.cmd.upper()
        try:
            if kind == "FROM":
                if stages:
                    stages[-1] = dataclasses.replace(stages[-1], instructions=tuple(instructions))
                stage = _stage(node, len(stages))
                if stage.name and any(s.name == stage.name for s in stages):
                    raise ValueError(f'duplicate stage name "{stage.name}"')
                stages.append(stage)
                instructions = []
                continue
            instruction = _instruction(node, reader.escape)
            if isinstance(instruction, ArgInstruction) and not stages:
                meta_args.extend(instruction.args)
            elif not stages:
                raise ValueError(f"no build stage in current context ({kind} before the first FROM)")
            else:
                instructions.append(instruction)
        except ValueError as exc:
            raise DockerfileError(node.line, str(exc), kind if kind in Kind.__members__ else "") from None
    if not stages:
        if not meta_args:
            raise DockerfileError(None, "file with no instructions")
        raise DockerfileError(None, "no build stage in current context (a Dockerfile needs a FROM)")
    stages[-1] = dataclasses.replace(stages[-1], instructions=tuple(instructions))
    return Dockerfile(tuple(reader.directives), tuple(stages), tuple(meta_args), reader.escape)
