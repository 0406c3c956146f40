"""The Dockerfile parser and shell-word expansion: cases from Docker's documentation and its parser tests
(moby/buildkit frontend/dockerfile/parser testfiles, shell/envVarTest and wordsTest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from backend.engine.builder.dockerfile import (
    AddInstruction,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    Dockerfile,
    DockerfileError,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    HealthcheckInstruction,
    Instruction,
    Kind,
    LabelInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
    parse_dockerfile,
)
from backend.engine.builder.shell_words import ExpansionError, expand, expand_words
from backend.engine.errors import InvalidParameter


def only(text: str) -> Instruction:
    """The one instruction after ``FROM busybox``."""
    (instruction,) = parse_dockerfile("FROM busybox\n" + text).stages[0].instructions
    return instruction


def first(df: Dockerfile) -> Instruction:
    return df.stages[0].instructions[0]


# (Dockerfile text, check on the parsed Dockerfile)
VALID: dict[str, tuple[str, Callable[[Dockerfile], Any]]] = {
    "escape directive backtick": (
        "# escape=`\nFROM busybox\nRUN echo a `\n  b\nCOPY a\\b c\\d\n",
        lambda d: (d.escape == "`", first(d).command == "echo a   b",  # type: ignore[attr-defined]
                   d.stages[0].instructions[1].sources == ("a\\b",)),  # type: ignore[attr-defined]
    ),
    "syntax directive accepted and ignored": (
        "# syntax=docker/dockerfile:1\nFROM busybox\n",
        lambda d: d.directives[0].name == "syntax" and d.directives[0].value == "docker/dockerfile:1",
    ),
    "directive after a comment is a comment": (
        "# hello\n# escape=`\nFROM busybox\nRUN a \\\n b\n",
        lambda d: d.escape == "\\" and not d.directives and first(d).command == "a  b",  # type: ignore[attr-defined]
    ),
    "directive after an instruction is a comment": (
        "FROM busybox\n# escape=`\nRUN a \\\n b\n", lambda d: d.escape == "\\" and not d.directives,
    ),
    "directive names are case-insensitive, blanks allowed": (
        "#  ESCAPE = `\nFROM busybox\n", lambda d: d.escape == "`",
    ),
    "unknown directive ends the directive block": (
        "# foo=bar\n# escape=`\nFROM busybox\n", lambda d: d.escape == "\\",
    ),
    "comment lines and indented comments": (
        "# c\n   # indented\nFROM busybox\n\n# between\nRUN x # not a comment\n",
        lambda d: first(d).command == "x # not a comment",  # type: ignore[attr-defined]
    ),
    "comment inside a continuation is dropped": (
        "FROM busybox\nRUN echo hello \\\n# comment\n  # indented\nworld\n",
        lambda d: first(d).command == "echo hello world",  # type: ignore[attr-defined]
    ),
    "empty continuation lines are dropped": (
        "FROM busybox\nRUN a \\\n\n   \nb\n", lambda d: first(d).command == "a b",  # type: ignore[attr-defined]
    ),
    "continuation with trailing blanks": (
        "FROM busybox\nRUN a \\  \t\nb\n", lambda d: first(d).command == "a b",  # type: ignore[attr-defined]
    ),
    "escaped escape is not a continuation": (
        "FROM busybox\nRUN echo a\\\\\nRUN b\n", lambda d: len(d.stages[0].instructions) == 2,
    ),
    "continuation at end of file": (
        "FROM busybox\nRUN a \\", lambda d: first(d).command == "a",  # type: ignore[attr-defined]
    ),
    "CRLF line endings": (
        "FROM busybox\r\nRUN a \\\r\nb\r\n", lambda d: first(d).command == "a b",  # type: ignore[attr-defined]
    ),
    "BOM is stripped": ("\ufeffFROM busybox\n", lambda d: d.stages[0].base == "busybox"),
    "line numbers count comments and continuations": (
        "# c\n\nFROM busybox\nRUN a \\\n b\nUSER x\n",
        lambda d: (d.stages[0].line, first(d).line, first(d).end_line, d.stages[0].instructions[1].line)
        == (3, 4, 5, 6),
    ),
    "instructions are case-insensitive": (
        "from busybox\nrun a\nCoPy a b\n",
        lambda d: [i.kind for i in d.stages[0].instructions] == [Kind.RUN, Kind.COPY],
    ),
    "RUN exec form": ('FROM busybox\nRUN ["sh", "-c", "echo $HOME"]\n',
                      lambda d: first(d).command == ("sh", "-c", "echo $HOME")),  # type: ignore[attr-defined]
    "RUN invalid JSON falls back to shell form": (
        "FROM busybox\nRUN ['single', 'quotes']\n",
        lambda d: first(d).command == "['single', 'quotes']",  # type: ignore[attr-defined]
    ),
    "unterminated JSON array is shell form": (
        'FROM busybox\nCMD ["echo", "x"\n', lambda d: first(d).command == '["echo", "x"',  # type: ignore[attr-defined]
    ),
    "JSON inside a string stays shell form": (
        'FROM busybox\nCMD "[\\"a\\"]"\n', lambda d: isinstance(first(d).command, str),  # type: ignore[attr-defined]
    ),
    "CMD empty JSON array": ("FROM busybox\nCMD []\n", lambda d: first(d).command == ()),  # type: ignore[attr-defined]
    "ENTRYPOINT shell form": ("FROM busybox\nENTRYPOINT exec top -b\n",
                              lambda d: first(d).command == "exec top -b"),  # type: ignore[attr-defined]
    "RUN heredoc": (
        "FROM busybox\nRUN <<EOF\necho $HOME\n  two\nEOF\nUSER u\n",
        lambda d: (first(d).heredocs[0].content, first(d).heredocs[0].expand, first(d).end_line,  # type: ignore[attr-defined]
                   d.stages[0].instructions[1].line) == ("echo $HOME\n  two\n", True, 5, 6),
    ),
    "RUN <<- strips leading tabs, also before the terminator": (
        "FROM busybox\nRUN <<-EOF\n\t\techo a\n\tb\t\n\tEOF\n",
        lambda d: first(d).heredocs[0].content == "echo a\nb\t\n",  # type: ignore[attr-defined]
    ),
    "quoted heredoc names do not expand": (
        "FROM busybox\nRUN <<\"EOF\" cat\n$x\nEOF\nRUN <<'A'\n$y\nA\n",
        lambda d: [i.heredocs[0].expand for i in d.stages[0].instructions] == [False, False],  # type: ignore[attr-defined]
    ),
    "several heredocs in one RUN, with file descriptors": (
        "FROM busybox\nRUN cat <<A 3<<B\na\nA\nb\nB\n",
        lambda d: [(h.name, h.content, h.fd) for h in first(d).heredocs]  # type: ignore[attr-defined]
        == [("A", "a\n", None), ("B", "b\n", 3)],
    ),
    "heredoc body keeps comments and backslashes": (
        "FROM busybox\nRUN <<EOF\n# not a comment \\\nEOF\n",
        lambda d: first(d).heredocs[0].content == "# not a comment \\\n",  # type: ignore[attr-defined]
    ),
    "quoted << is not a heredoc": (
        "FROM busybox\nRUN echo '<<EOF'\nUSER u\n", lambda d: len(d.stages[0].instructions) == 2,
    ),
    "JSON RUN never holds a heredoc": (
        'FROM busybox\nRUN ["cat", "<<EOF"]\nUSER u\n', lambda d: len(d.stages[0].instructions) == 2,
    ),
    "COPY heredoc to a destination": (
        "FROM busybox\nCOPY <<EOF /dst/file\nhello\nEOF\n",
        lambda d: (first(d).sources, first(d).dest, first(d).heredocs[0].content)  # type: ignore[attr-defined]
        == ((), "/dst/file", "hello\n"),
    ),
    "COPY heredocs and files mixed": (
        "FROM busybox\nCOPY a <<X <<Y /d/\nx\nX\ny\nY\n",
        lambda d: (first(d).sources, [h.name for h in first(d).heredocs])  # type: ignore[attr-defined]
        == (("a",), ["X", "Y"]),
    ),
    "ENV key=value pairs keep their quotes until expansion": (
        'FROM busybox\nENV k=v k2="v 2" k3=a\\ b\n',
        lambda d: [(p.key, p.value) for p in first(d).pairs]  # type: ignore[attr-defined]
        == [("k", "v"), ("k2", '"v 2"'), ("k3", "a\\ b")],
    ),
    "ENV legacy form takes the rest of the line": (
        "FROM busybox\nENV k  some  value\n",
        lambda d: [(p.key, p.value, p.legacy) for p in first(d).pairs]  # type: ignore[attr-defined]
        == [("k", "some  value", True)],
    ),
    "LABEL pairs, quoted keys": (
        'FROM busybox\nLABEL "com.example.vendor"="ACME" version=1.0\n',
        lambda d: isinstance(first(d), LabelInstruction) and len(first(d).pairs) == 2,  # type: ignore[attr-defined]
    ),
    "LABEL legacy form": ("FROM busybox\nLABEL key value with spaces\n",
                          lambda d: first(d).pairs[0].value == "value with spaces"),  # type: ignore[attr-defined]
    "ARG with and without default, several per line": (
        "FROM busybox\nARG a b=2 c=\n",
        lambda d: [(a.name, a.default) for a in first(d).args] == [("a", None), ("b", "2"), ("c", "")],  # type: ignore[attr-defined]
    ),
    "ARG before FROM is a meta arg": (
        "ARG V=1\nARG W\nFROM busybox:$V\nARG V\n",
        lambda d: ([(a.name, a.default) for a in d.meta_args] == [("V", "1"), ("W", None)]
                   and isinstance(first(d), ArgInstruction)),
    ),
    "FROM AS name (case-insensitive AS, name lowered)": (
        "FROM busybox As Builder\nFROM builder\n",
        lambda d: (d.stages[0].name, d.stages[1].name, d.stages[1].base, d.stages[1].index)
        == ("builder", "", "builder", 1),
    ),
    "FROM --platform": ("FROM --platform=$BUILDPLATFORM busybox\n",
                        lambda d: d.stages[0].platform == "$BUILDPLATFORM"),
    "FROM scratch": ("FROM scratch\n", lambda d: d.stages[0].base == "scratch"),
    "COPY flags": (
        "FROM busybox\nCOPY --from=stage --chown=u:g --chmod=755 --link src /dst\n",
        lambda d: (first(d).from_, first(d).chown, first(d).chmod, first(d).link)  # type: ignore[attr-defined]
        == ("stage", "u:g", "755", True),
    ),
    "COPY quoted flag value": ('FROM busybox\nCOPY --chown="a b" x y\n',
                               lambda d: first(d).chown == "a b"),  # type: ignore[attr-defined]
    "COPY JSON form keeps spaces": ('FROM busybox\nCOPY ["a b", "/c d/"]\n',
                                    lambda d: (first(d).sources, first(d).dest) == (("a b",), "/c d/")),  # type: ignore[attr-defined]
    "ADD --checksum": (
        "FROM busybox\nADD --checksum=sha256:24454f83 https://x/a.tar /a\n",
        lambda d: isinstance(first(d), AddInstruction) and first(d).checksum == "sha256:24454f83",  # type: ignore[attr-defined]
    ),
    "RUN --mount recorded (repeatable)": (
        "FROM busybox\nRUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t make\n",
        lambda d: (first(d).mounts, first(d).command)  # type: ignore[attr-defined]
        == (("type=cache,target=/c", "type=tmpfs,target=/t"), "make"),
    ),
    "-- ends the flags": ("FROM busybox\nRUN -- --not-a-flag\n",
                          lambda d: first(d).command == "--not-a-flag"),  # type: ignore[attr-defined]
    "HEALTHCHECK NONE": ("FROM busybox\nHEALTHCHECK NONE\n", lambda d: first(d).test == ("NONE",)),  # type: ignore[attr-defined]
    "HEALTHCHECK with options, shell form": (
        "FROM busybox\nHEALTHCHECK --interval=5s --timeout=3s --start-period=1m30s --retries=3 CMD curl -f x\n",
        lambda d: (first(d).test, first(d).interval, first(d).timeout, first(d).start_period,  # type: ignore[attr-defined]
                   first(d).retries) == (("CMD-SHELL", "curl -f x"), 5 * 10**9, 3 * 10**9, 90 * 10**9, 3),  # type: ignore[attr-defined]
    ),
    "HEALTHCHECK exec form": ('FROM busybox\nHEALTHCHECK CMD ["true"]\n',
                              lambda d: first(d).test == ("CMD", "true")),  # type: ignore[attr-defined]
    "ONBUILD keeps the trigger expression": (
        "FROM busybox\nONBUILD ADD . /app/src\n",
        lambda d: (first(d).expression, first(d).trigger.kind) == ("ADD . /app/src", Kind.ADD),  # type: ignore[attr-defined]
    ),
    "ONBUILD RUN heredoc": (
        "FROM busybox\nONBUILD RUN <<EOF\necho hi\nEOF\n",
        lambda d: first(d).expression == "RUN <<EOF\necho hi\nEOF",  # type: ignore[attr-defined]
    ),
    "SHELL JSON": ('FROM busybox\nSHELL ["/bin/bash", "-c"]\n',
                   lambda d: first(d).shell == ("/bin/bash", "-c")),  # type: ignore[attr-defined]
    "EXPOSE ports, protocols and ranges": (
        "FROM busybox\nEXPOSE 80/tcp 53/udp 8000-8010\n",
        lambda d: first(d).ports == ("80/tcp", "53/udp", "8000-8010"),  # type: ignore[attr-defined]
    ),
    "VOLUME JSON and plain": (
        'FROM busybox\nVOLUME ["/data", "/b c"]\nVOLUME /x /y\n',
        lambda d: [i.paths for i in d.stages[0].instructions] == [("/data", "/b c"), ("/x", "/y")],  # type: ignore[attr-defined]
    ),
    "WORKDIR, USER u:g, STOPSIGNAL, MAINTAINER": (
        "FROM busybox\nWORKDIR /a b\nUSER u:g\nSTOPSIGNAL SIGKILL\nMAINTAINER Me <me@x>\n",
        lambda d: [i.__dict__[f] for i, f in zip(d.stages[0].instructions,
                                                  ("path", "user", "signal", "maintainer"), strict=True)]
        == ["/a b", "u:g", "SIGKILL", "Me <me@x>"],
    ),
    "multi-stage": (
        "FROM busybox AS a\nRUN x\nFROM a AS b\nCOPY --from=a /x /y\nFROM scratch\n",
        lambda d: [(s.name, len(s.instructions)) for s in d.stages] == [("a", 1), ("b", 1), ("", 0)],
    ),
}


@pytest.mark.parametrize("case", VALID)
def test_parses(case: str) -> None:
    text, check = VALID[case]
    result = check(parse_dockerfile(text))
    assert all(result) if isinstance(result, tuple) else result


# (Dockerfile text, words the message must hold, line or None)
ERRORS: dict[str, tuple[str, str, int | None]] = {
    "empty file": ("", "file with no instructions", None),
    "only comments": ("# a\n\n# b\n", "file with no instructions", None),
    "no FROM first": ("RUN x\n", "no build stage in current context", 1),
    "only meta args": ("ARG a\n", "no build stage", None),
    "unknown instruction": ("FROM busybox\n\nRUNN x\n", "line 3: unknown instruction: RUNN", 3),
    "unknown flag": ("FROM busybox\nCOPY --foo=1 a b\n", "COPY: unknown flag: --foo", 2),
    "unknown flag on RUN": ("FROM busybox\nRUN --privileged x\n", "unknown flag: --privileged", 2),
    "CMD --help is a flag": ("FROM busybox\nCMD --help\n", "unknown flag: --help", 2),
    "flag without value": ("FROM busybox\nCOPY --from a b\n", "missing a value on flag: --from", 2),
    "duplicate flag": ("FROM busybox\nCOPY --from=a --from=b x y\n", "duplicate flag specified: --from", 2),
    "bad bool flag": ("FROM busybox\nCOPY --link=maybe a b\n", "expecting boolean value", 2),
    "invalid stage name": ("FROM busybox AS 1abc\n", 'invalid name for build stage: "1abc"', 1),
    "invalid stage name symbol": ("FROM busybox AS a$b\n", "invalid name for build stage", 1),
    "duplicate stage name": ("FROM busybox AS a\nFROM busybox AS A\n", 'duplicate stage name "a"', 2),
    "FROM with two words": ("FROM busybox AS\n", "FROM requires either one or three arguments", 1),
    "FROM without image": ("FROM\n", "FROM requires either one or three arguments", 1),
    "ONBUILD ONBUILD": ("FROM busybox\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD via `ONBUILD ONBUILD`", 2),
    "ONBUILD FROM": ("FROM busybox\nONBUILD FROM x\n", "FROM isn't allowed as an ONBUILD trigger", 2),
    "ONBUILD MAINTAINER": ("FROM busybox\nONBUILD MAINTAINER x\n", "MAINTAINER isn't allowed", 2),
    "ONBUILD unknown trigger": ("FROM busybox\nONBUILD RUNN x\n", "unknown instruction: RUNN", 2),
    "SHELL not JSON": ("FROM busybox\nSHELL sh -c\n", "SHELL requires the arguments to be in JSON form", 2),
    "SHELL empty": ("FROM busybox\nSHELL []\n", "SHELL requires at least one argument", 2),
    "JSON array of non-strings": ('FROM busybox\nCMD ["echo", ["nested"]]\n', "arrays must be comprised of strings", 2),
    "ENV without value": ("FROM busybox\nENV k\n", "ENV must have two arguments", 2),
    "ENV mixed forms": ("FROM busybox\nENV a=1 b\n", "can't find = in 'b'", 2),
    "ENV blank name": ("FROM busybox\nENV =x\n", "ENV names can not be blank", 2),
    "ENV empty": ("FROM busybox\nENV\n", "ENV requires at least one argument", 2),
    "ARG empty": ("FROM busybox\nARG\n", "ARG requires at least one argument", 2),
    "COPY one argument": ("FROM busybox\nCOPY a\n", "COPY requires at least two arguments", 2),
    "COPY heredoc destination": ("FROM busybox\nCOPY a <<EOF\nx\nEOF\n", "cannot accept a heredoc as a destination", 2),
    "unterminated heredoc": ("FROM busybox\nRUN <<EOF\necho\n", "unterminated heredoc", 2),
    "HEALTHCHECK NONE with args": ("FROM busybox\nHEALTHCHECK NONE x\n", "HEALTHCHECK NONE takes no arguments", 2),
    "HEALTHCHECK bad type": ("FROM busybox\nHEALTHCHECK CMDX x\n", 'Unknown type "CMDX" in HEALTHCHECK', 2),
    "HEALTHCHECK no command": ("FROM busybox\nHEALTHCHECK CMD\n", "Missing command after HEALTHCHECK CMD", 2),
    "HEALTHCHECK bad duration": ("FROM busybox\nHEALTHCHECK --interval=5x CMD true\n", 'invalid duration "5x"', 2),
    "HEALTHCHECK too short": ("FROM busybox\nHEALTHCHECK --timeout=1us CMD true\n", "cannot be less than 1ms", 2),
    "HEALTHCHECK negative retries": ("FROM busybox\nHEALTHCHECK --retries=-1 CMD true\n", "cannot be negative", 2),
    "WORKDIR empty": ("FROM busybox\nWORKDIR\n", "WORKDIR requires exactly one argument", 2),
    "EXPOSE empty": ("FROM busybox\nEXPOSE\n", "EXPOSE requires at least one argument", 2),
    "VOLUME empty string": ('FROM busybox\nVOLUME [""]\n', "VOLUME specified can not be an empty string", 2),
    "bad escape directive": ("# escape=x\nFROM busybox\n", "invalid escape token 'x'", 1),
    "repeated directive": ("# escape=`\n# escape=\\\nFROM busybox\n", "only one escape parser directive", 2),
    "NUL byte": ("FROM busybox\nRUN a\0b\n", "NUL byte", 2),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors(case: str) -> None:
    text, words, line = ERRORS[case]
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(text)
    message = str(info.value)
    assert message.startswith("Dockerfile parse error")
    assert words in message
    assert "\n" not in message
    assert info.value.line == line
    assert isinstance(info.value, InvalidParameter)


def test_invalid_utf8_and_size_limit() -> None:
    with pytest.raises(DockerfileError, match="line 2: Dockerfile is not valid UTF-8"):
        parse_dockerfile(b"FROM busybox\nRUN \xff\n")
    with pytest.raises(DockerfileError, match="larger than the limit"):
        parse_dockerfile(b"FROM busybox\n" + b"#" * 100, max_size=50)


@pytest.mark.parametrize("line", [
    " " * (1 << 20), "\\" * (1 << 20), '"' * (1 << 20), "<<" * (1 << 19), "${" * (1 << 19), "[" * (1 << 20),
    "'" * (1 << 20), "a=" * (1 << 19), "--a" * (1 << 18) + " b", "<<" + "$" * (1 << 20),
])
@pytest.mark.parametrize("kind", ["RUN", "ENV", "COPY"])
def test_pathological_line_is_fast(kind: str, line: str) -> None:
    start = time.perf_counter()
    try:
        parse_dockerfile(f"FROM busybox\n{kind} {line}\nx\n")
    except DockerfileError as exc:
        assert len(str(exc)) < 400
    assert time.perf_counter() - start < 1.0


# --- expansion -------------------------------------------------------------------------------------------

ENV = {"PWD": "/home", "SHELL": "bash", "NULL": "", "SPACE": "abc  def", "KOREAN": "한국어"}

EXPAND = {
    "hello": "hello", "he'll'o": "hello", "he\\'llo": "he'llo", "abc\\tdef": "abctdef", '"abc\\tdef"': "abc\\tdef",
    '"abc\\\\tdef"': "abc\\tdef", "'abc\\tdef'": "abc\\tdef", "hello\\": "hello", "hello\\\\": "hello\\",
    '"hel\'lo"': "hel'lo", "'hello\\'": "hello\\", "$.": "$.", "he$1x": "hex", "he$pwd.": "he.",
    "he$PWD": "he/home", "he\\$PWD": "he$PWD", "he\\\\$PWD": "he\\/home", '"he\\$PWD"': "he$PWD",
    "\\${}": "${}", "he${hi}xx": "hexx", "he${PWD}": "he/home", "he${XXX:-000}xx": "he000xx",
    "he${PWD:-000}xx": "he/homexx", "he${XXX:-$PWD}xx": "he/homexx", "he${XXX:-${YYY:-yyy}}xx": "heyyyxx",
    "he${PWD?}": "he/home", "he${NULL?}": "he", "he${NULL-x}": "he", "he${NULL:-x}": "hex", "he${XXX-x}": "hex",
    "he${XXX:+${PWD}}xx": "hexx", "he${PWD:+${SHELL}}xx": "hebashxx", "he${NULL+set}": "heset",
    "he${NULL:+set}": "he", "'he${XX}'": "he${XX}", '"he\'$PWD\'"': "he'/home'", "'$PWD'": "$PWD",
    "he${XXX:-\\$PWD:}xx": "he$PWD:xx", "${aaa}}": "}", "${aaa:-bbb {foo}": "bbb {foo", "$KOREAN": "한국어",
    "${1:-bbb}": "bbb", "$@aaa": "aaa", "${SPACE}": "abc  def",
}


@pytest.mark.parametrize("word", EXPAND)
def test_expand(word: str) -> None:
    assert expand(word, ENV) == EXPAND[word]


@pytest.mark.parametrize("word", [
    "he'llo", '"hello', "'hello", "${}", "he${.}", "he${XXX:YYY}", "he${XXX?}", "he${NULL:?}", "he${PWD",
    "he${PWD:=000}xx", "${aaa:-bbb ${foo}", "${:}", "${PWD#x}", "${PWD/a/b}",
])
def test_expand_errors(word: str) -> None:
    with pytest.raises(ExpansionError, match="failed to process"):
        expand(word, ENV)


def test_expand_nesting_is_bounded() -> None:
    deep = "${a:-" * 100_000 + "x" + "}" * 100_000
    with pytest.raises(ExpansionError, match="nested more than"):
        expand(deep, {})
    assert expand("${a:-" * 10 + "x" + "}" * 10, {}) == "x"


@pytest.mark.parametrize(("word", "words"), [
    ("hello there", ["hello", "there"]), ("hello${SPACE}bye", ["helloabc", "defbye"]),
    ('hello"${SPACE}"bye', ["helloabc  defbye"]), ("hello\\ there", ["hello there"]),
    ('hello\\" there', ['hello"', "there"]), ("a '' b", ["a", "b"]), ("80 ${PORTS}", ["80", "443", "8080"]),
])
def test_expand_words(word: str, words: list[str]) -> None:
    assert expand_words(word, {**ENV, "PORTS": "443 8080"}) == words


def test_escape_token_backtick_in_expansion() -> None:
    assert expand("a`$PWD`\\b", ENV, escape="`") == "a$PWD\\b"


def test_which_instructions_expand() -> None:
    env = {"V": "x", "P": "80 443", "Q": '"q"'}
    df = parse_dockerfile(
        "FROM busybox\nRUN echo $V\nCMD echo $V\nENTRYPOINT echo $V\nENV A=$V B=\"$V y\" C='$V'\nLABEL l=$V\n"
        "EXPOSE $P\nWORKDIR /$V\nUSER $V:$V\nVOLUME /$V\nSTOPSIGNAL $V\nCOPY --chown=$V --from=$V /$V /${V}2\n"
        "ADD --checksum=$V $V /d\nARG a=$V\nONBUILD COPY $V /\nHEALTHCHECK CMD echo $V\nMAINTAINER $V\n")
    ins = [i.expanded(env) for i in df.stages[0].instructions]
    assert [i.command for i in ins[:3]] == ["echo $V"] * 3  # type: ignore[attr-defined]
    assert isinstance(ins[3], EnvInstruction)
    assert [(p.key, p.value) for p in ins[3].pairs] == [("A", "x"), ("B", "x y"), ("C", "$V")]
    assert ins[4].pairs[0].value == "x"  # type: ignore[attr-defined]
    assert isinstance(ins[5], ExposeInstruction) and ins[5].ports == ("80", "443")
    assert isinstance(ins[6], WorkdirInstruction) and ins[6].path == "/x"
    assert isinstance(ins[7], UserInstruction) and ins[7].user == "x:x"
    assert isinstance(ins[8], VolumeInstruction) and ins[8].paths == ("/x",)
    assert ins[9].signal == "x"  # type: ignore[attr-defined]
    copy = ins[10]
    assert isinstance(copy, CopyInstruction) and (copy.chown, copy.from_, copy.sources, copy.dest) == (
        "x", "x", ("/x",), "/x2")
    assert isinstance(ins[11], AddInstruction) and (ins[11].checksum, ins[11].sources) == ("x", ("x",))
    assert isinstance(ins[12], ArgInstruction) and ins[12].args[0].default == "x"
    assert isinstance(ins[13], OnbuildInstruction) and ins[13].expression == "COPY $V /"
    assert isinstance(ins[14], HealthcheckInstruction) and ins[14].test == ("CMD-SHELL", "echo $V")
    assert ins[15].maintainer == "$V"  # type: ignore[attr-defined]


def test_expansion_error_names_the_line() -> None:
    df = parse_dockerfile("FROM busybox\n\nWORKDIR ${V:?must be set}\n")
    with pytest.raises(DockerfileError, match=r"line 3: WORKDIR: .*V: must be set"):
        df.stages[0].instructions[0].expanded({})


def test_meta_args_only_in_from() -> None:
    df = parse_dockerfile("ARG TAG=latest\nARG IMG=busy${TAG:+box}\nFROM $IMG:$TAG AS a\nRUN echo $TAG\n")
    meta = df.meta_env({"TAG": "1.36"})
    assert meta == {"TAG": "1.36", "IMG": "busybox"}
    assert df.stages[0].expanded(meta).base == "busybox:1.36"
    assert df.meta_env({}) == {"TAG": "latest", "IMG": "busybox"}
    run = df.stages[0].instructions[0]
    assert isinstance(run, RunInstruction) and run.command == "echo $TAG"


def test_stage_lookup_for_target() -> None:
    df = parse_dockerfile("FROM busybox AS build\nFROM scratch\n")
    assert df.stage("BUILD").index == 0
    assert df.stage("1").base == "scratch"
    with pytest.raises(DockerfileError, match="could not be found"):
        df.stage("nope")


def test_kinds_have_their_classes() -> None:
    df = parse_dockerfile('FROM busybox\nCMD x\nENTRYPOINT ["y"]\nSHELL ["sh"]\nLABEL a=b\n')
    assert [type(i) for i in df.stages[0].instructions] == [
        CmdInstruction, EntrypointInstruction, ShellInstruction, LabelInstruction]
