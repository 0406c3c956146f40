"""Output as the docker CLI prints it: ``--format`` templates, tables, sizes and durations.

Templates are the subset of Go's text/template that docker users write: text with ``{{ pipeline }}``
actions; a pipeline is commands joined by ``|`` (the value on the left becomes the last argument on
the right); a command is a field path (``.``, ``.Name``, ``.State.Status``), a quoted string, a number,
or a function and its arguments (``json``, ``index``, ``join``, ``lower``, ``upper``, ``title``,
``split``, ``len``, ``truncate``, ``println``). A field missing from the data is an error, as docker's
``map has no entry for key``; control actions (``range``, ``if``) are not supported.

The data are JSON documents; :class:`Fields` adds the names docker's templates see but its JSON does not:
the Go field names of its structs where they differ from the JSON keys (``.APIVersion`` for ``ApiVersion``,
``.ID`` for ``Id``) and methods that take arguments (``{{.Label "com.example.key"}}``).

``--format`` values: ``json`` (one compact JSON document per line), ``table`` (the command's default
columns), ``table <template>`` (a header row, then the rows, aligned as Go's tabwriter with docker's
settings), or a template (one line per item). ``\\t`` and ``\\n`` in a format are a tab and a newline.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.api.units import bytes_size, go_duration_seconds, human_duration, human_size
from backend.cli.context import UsageError

__all__ = ["bytes_size", "human_duration", "human_size"]  # re-exported for the verbs' modules


class TemplateError(ValueError):
    """A template that does not parse or cannot be executed on the data (one line, docker's wording)."""


NO_VALUE = "<no value>"
_ACTION = re.compile(r"\{\{(?:(-)\s)?(.*?)(?:\s(-))?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<raw>`[^`]*`)|(?P<pipe>\|)|(?P<word>[^\s|"`]+))')


class Fields(dict[str, Any]):
    """A JSON object as a template sees it: its items, plus ``aliases`` (a Go field name -> the JSON key it
    reads) and ``methods`` (a name -> a function of the template's arguments). Neither is an item, so
    ``json``, ``dict()`` and iteration show the JSON object alone."""

    def __init__(self, items: Mapping[str, Any], *, aliases: Mapping[str, str] | None = None,
                 methods: Mapping[str, Callable[..., Any]] | None = None) -> None:
        super().__init__(items)
        self.aliases = dict(aliases or {})
        self.methods = dict(methods or {})

    def __contains__(self, key: object) -> bool:
        alias = self.aliases.get(str(key))
        return super().__contains__(key) or key in self.methods or (alias is not None and super().__contains__(alias))

    def __getitem__(self, key: str) -> Any:
        if super().__contains__(key):
            return super().__getitem__(key)
        if key in self.methods:
            return self.methods[key]
        return super().__getitem__(self.aliases.get(key, key))


def label_method(labels: Mapping[str, str]) -> Callable[[str], str]:
    """docker's ``.Label "key"``: the label's value, empty when the label is not set."""
    return lambda key: labels.get(key, "")


@dataclass(frozen=True)
class _Arg:
    kind: str  # "field", "literal", "func"
    value: Any


_Command = list[_Arg]


def _parse_action(text: str, position: int) -> list[_Command]:
    pipeline: list[_Command] = [[]]
    index = 0
    while index < len(text):
        match = _TOKEN.match(text, index)
        if match is None or match.end() == index:
            if text[index:].strip():
                raise TemplateError(f"template: :1:{position}: unexpected {text[index:].strip()!r} in command")
            break
        index = match.end()
        if match["pipe"]:
            pipeline.append([])
        elif match["str"]:
            pipeline[-1].append(_Arg("literal", json.loads(match["str"])))
        elif match["raw"]:
            pipeline[-1].append(_Arg("literal", match["raw"][1:-1]))
        elif match["word"]:
            pipeline[-1].append(_word(match["word"], position))
    if not all(pipeline):
        raise TemplateError(f"template: :1:{position}: missing value for command")
    head = pipeline[0][0]
    if head.kind == "func" and head.value in ("range", "if", "with", "end", "else", "define", "template", "block"):
        raise TemplateError(f"template: :1:{position}: '{head.value}' is not supported in berth's templates")
    return pipeline


def _word(word: str, position: int) -> _Arg:
    if word.startswith("."):
        return _Arg("field", [p for p in word.split(".") if p] if word != "." else [])
    if re.fullmatch(r"-?\d+", word):
        return _Arg("literal", int(word))
    if word in ("true", "false"):
        return _Arg("literal", word == "true")
    if word in FUNCTIONS or word in ("range", "if", "with", "end", "else", "define", "template", "block"):
        return _Arg("func", word)
    raise TemplateError(f'template: :1:{position}: function "{word}" not defined')


def go_value(value: Any) -> str:
    """Go's ``%v`` of a JSON value: ``<no value>`` for null, ``[a b]`` lists, ``map[k:v]`` objects."""
    if value is None:
        return NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def to_json(value: Any) -> str:
    """Compact JSON with sorted keys, as Go's json.Marshal of a map writes it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int):
            if not 0 <= key < len(value):
                raise TemplateError(f"error calling index: index out of range: {key}")
            value = value[key]
        elif value is None:
            return None
        else:
            raise TemplateError(f"error calling index: cannot index {go_value(value)} with {key!r}")
    return value


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, list):
        raise TemplateError("error calling join: expected a list")
    return sep.join(go_value(i) for i in items)


def _truncate(value: Any, length: int) -> str:
    text = go_value(value)
    return text[:length]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": to_json,
    "index": _index,
    "join": _join,
    "lower": lambda s: go_value(s).lower(),
    "upper": lambda s: go_value(s).upper(),
    "title": lambda s: go_value(s).title(),
    "split": lambda s, sep: go_value(s).split(sep),
    "len": lambda v: len(v) if isinstance(v, (list, dict, str)) else 0,
    "truncate": _truncate,
    "println": lambda *v: " ".join(go_value(x) for x in v) + "\n",
}


class Template:
    """A parsed template. :meth:`render` executes it on one item (raises TemplateError)."""

    def __init__(self, source: str) -> None:
        self.source = source.replace("\\t", "\t").replace("\\n", "\n")
        self._parts: list[str | tuple[int, list[_Command]]] = []
        text, last, trim = self.source, 0, False
        for match in _ACTION.finditer(text):
            before = text[last:match.start()]
            before = before.lstrip() if trim else before
            self._parts.append(before.rstrip() if match.group(1) else before)
            self._parts.append((match.start() + 3, _parse_action(match.group(2), match.start() + 3)))
            last, trim = match.end(), bool(match.group(3))
        tail = text[last:].lstrip() if trim else text[last:]
        if "{{" in tail:
            raise TemplateError("template: :1: unclosed action")
        self._parts.append(tail)

    @property
    def fields(self) -> list[str]:
        """The first name of every field path used (for table headers)."""
        names: list[str] = []
        for part in self._parts:
            if isinstance(part, tuple):
                names += [a.value[0] for cmd in part[1] for a in cmd if a.kind == "field" and a.value]
        return names

    def render(self, data: Any) -> str:
        """The template executed on ``data``. Raises TemplateError (docker's message, one line)."""
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            position, pipeline = part
            value: Any = None
            for i, command in enumerate(pipeline):
                args = [self._eval(a, data, position) for a in command[1:]] if command[0].kind == "func" else []
                if i:
                    args.append(value)
                if command[0].kind == "func":
                    try:
                        value = FUNCTIONS[command[0].value](*args)
                    except TemplateError as exc:
                        raise TemplateError(f"template: :1:{position}: executing \"\" at <{command[0].value}>: "
                                            f"{exc}") from exc
                    except (TypeError, ValueError) as exc:
                        raise TemplateError(f"template: :1:{position}: executing \"\" at <{command[0].value}>: "
                                            f"wrong arguments") from exc
                else:
                    field = self._eval(command[0], data, position)
                    if callable(field):
                        args = [self._eval(a, data, position) for a in command[1:]] + args
                        try:
                            value = field(*args)
                        except TypeError as exc:
                            raise TemplateError(f"template: :1:{position}: executing \"\" at "
                                                f"<.{'.'.join(command[0].value)}>: wrong number of args") from exc
                    elif len(command) > 1 or i:
                        raise TemplateError(f"template: :1:{position}: can't give argument to non-function")
                    else:
                        value = field
            out.append(value if isinstance(value, str) else go_value(value))
        return "".join(out)

    @staticmethod
    def _eval(arg: _Arg, data: Any, position: int) -> Any:
        if arg.kind == "literal":
            return arg.value
        if arg.kind == "func":
            return FUNCTIONS[arg.value]()
        value = data
        for name in arg.value:
            if isinstance(value, Mapping):
                if name not in value:
                    raise TemplateError(f"template: :1:{position}: executing \"\" at <.{'.'.join(arg.value)}>: "
                                        f"map has no entry for key \"{name}\"")
                value = value[name]
            elif value is None:
                return None
            else:
                raise TemplateError(f"template: :1:{position}: executing \"\" at <.{'.'.join(arg.value)}>: "
                                    f"can't evaluate field {name} in type {type(value).__name__}")
        return value


# -- tables --------------------------------------------------------------------------------------------

MIN_WIDTH, PADDING = 10, 3


def tabwrite(lines: Iterable[str]) -> str:
    """Align tab-separated cells as docker's tabwriter does (min width 10, padding 3; the last cell of a
    line is not padded)."""
    rows = [line.split("\t") for line in lines]
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            width = max(MIN_WIDTH, len(cell) + PADDING)
            if i < len(widths):
                widths[i] = max(widths[i], width)
            else:
                widths.append(width)
    out = []
    for row in rows:
        out.append("".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + row[-1])
    return "".join(line + "\n" for line in out)


class _Header(dict[str, Any]):
    """A row whose every field is its column's header (how docker renders a ``table`` template's header)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__()
        self._headers = headers

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Any:
        return _HeaderCell(self._headers.get(key) or key.upper())


class _HeaderCell(str):
    """A column header. Called as ``.Label "com.example.some-key"`` it is docker's header for that label:
    the last dotted part, ``-`` and ``_`` as spaces (``some key``)."""

    def __call__(self, *args: Any) -> str:
        if not args:
            return str(self)
        return go_value(args[0]).rsplit(".", 1)[-1].replace("-", " ").replace("_", " ")


@dataclass(frozen=True)
class Formatter:
    """A ``--format`` value applied to rows. ``default`` is the ``table`` template of the command;
    ``headers`` names the columns of a table."""

    format: str | None
    default: str
    headers: Mapping[str, str]

    def render(self, rows: Sequence[Mapping[str, Any]]) -> str:
        """The output for ``rows``. Raises TemplateError."""
        spec = (self.format or "").strip() or "table"
        if spec == "json":
            return "".join(to_json(dict(row)) + "\n" for row in rows)
        if spec == "table":
            spec = self.default
        if spec.startswith("table"):
            template = Template(spec[len("table"):].lstrip(" "))
            lines = [template.render(_Header(self.headers))]
            lines += [template.render(row) for row in rows]
            return tabwrite("\n".join(lines).split("\n"))
        template = Template(spec)
        return "".join(template.render(row) + "\n" for row in rows)


def render_items(format: str, items: Iterable[Any]) -> str:
    """``--format`` for documents (inspect): ``json`` or a template, one line per item. Raises TemplateError."""
    if format.strip() == "json":
        return "".join(to_json(item) + "\n" for item in items)
    template = Template(format)
    return "".join(template.render(item) + "\n" for item in items)


# -- sizes, durations, names ---------------------------------------------------------------------------

def timestamp_arg(text: str, flag: str, now: float | None = None) -> str:
    """docker's ``--since``/``--until`` value as the API wants it (Unix seconds): a Unix time, a Go
    duration before now (``10m``, ``1h30m``) or an RFC 3339 date/time. Raises UsageError."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return text
    seconds = go_duration_seconds(text)
    if seconds is not None:
        return f"{(time.time() if now is None else now) - seconds:.9f}"
    import datetime

    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid value for {flag}: {text!r} (a Unix time, a duration such as 10m, "
                           "or a date such as 2024-01-02T15:04:05Z)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return f"{moment.timestamp():.9f}"


def ago(unix_time: float, now: float | None = None) -> str:
    """``2 minutes ago`` for a Unix time."""
    return human_duration((time.time() if now is None else now) - unix_time) + " ago"


def go_time(unix_time: float) -> str:
    """Go's ``time.Time.String()`` in local time, seconds only: ``2024-05-01 12:00:00 +0200 CEST``."""
    local = time.localtime(unix_time)
    return time.strftime("%Y-%m-%d %H:%M:%S %z ", local) + (local.tm_zone or "")


def rfc3339(unix_time: float) -> str:
    """Go's ``time.RFC3339`` in local time: ``2024-05-01T12:00:00+02:00``, ``Z`` for UTC."""
    local = time.localtime(unix_time)
    offset = time.strftime("%z", local)
    zone = "Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + zone


def ellipsis(text: str, width: int) -> str:
    """docker's ``Ellipsis``: cut to ``width`` characters, the last one ``…``."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[:width - 1] + "…"


def short_id(identifier: str) -> str:
    """The 12-character form of an ID (``sha256:`` dropped)."""
    return identifier.removeprefix("sha256:")[:12]


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` for printable text (``"echo hi"``)."""
    return json.dumps(text, ensure_ascii=False)
