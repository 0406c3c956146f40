"""Safe YAML reading for Compose files: pyyaml's SafeLoader, hardened.

Guarantees of :func:`parse_yaml`: the text is at most :data:`MAX_BYTES`; only YAML's standard tags and Compose's
``!reset``/``!override`` are accepted (Python and other custom tags are refused); duplicate keys are refused;
aliases expand to at most :data:`MAX_NODES` nodes (an alias bomb or a recursive alias is refused); YAML 1.1
sexagesimal numbers (``22:22``) come back as :class:`Sexagesimal` so the validator can say "quote it".
Every error is a one-line :class:`ComposeError` naming the file and the key path.
"""

from __future__ import annotations

from typing import Any

import yaml

from backend.compose.model import ComposeError

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 100
_STANDARD_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq",
                                                               "merge", "timestamp", "binary", "omap", "set"))


class Sexagesimal(int):
    """An int YAML 1.1 read from ``a:b`` (base 60); ``text`` is what the file said."""

    text: str

    def __new__(cls, value: int, text: str) -> Sexagesimal:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj


class Reset:
    """``!reset``: the key is removed when files are merged."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reset)

    def __hash__(self) -> int:
        return hash(Reset)


class Override:
    """``!override value``: the value replaces the earlier file's value instead of being merged."""

    def __init__(self, value: Any) -> None:
        self.value = value


def key_path(path: tuple[str | int, ...]) -> str:
    """``("services", "web", "ports", 0)`` as ``services.web.ports[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def where(filename: str, path: tuple[str | int, ...]) -> str:
    """``compose.yaml: services.web.ports[0]``, the prefix of every error about a value."""
    return f"{filename}: {key_path(path)}" if path else filename


class _ComposeLoader(yaml.SafeLoader):
    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = super().construct_yaml_int(node)
        return Sexagesimal(value, node.value) if ":" in node.value else value

    def construct_reset(self, node: yaml.Node) -> Reset:
        return Reset()

    def construct_override(self, node: yaml.Node) -> Override:
        if isinstance(node, yaml.MappingNode):
            return Override(self.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return Override(self.construct_sequence(node, deep=True))
        return Override(self.construct_scalar(node))  # type: ignore[arg-type]


_ComposeLoader.add_constructor("tag:yaml.org,2002:int", _ComposeLoader.construct_yaml_int)
_ComposeLoader.add_constructor("!reset", _ComposeLoader.construct_reset)
_ComposeLoader.add_constructor("!override", _ComposeLoader.construct_override)


def _check_nodes(root: yaml.Node, filename: str) -> None:
    """Walk the node graph as it would expand: refuse foreign tags, duplicate keys and too many nodes."""
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    seen = 0
    while stack:
        node, path = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise ComposeError(f"{filename}: too many YAML nodes after expanding aliases (more than {MAX_NODES}; "
                               "an alias bomb or a recursive alias?)")
        where = f"{filename}: {key_path(path) or '<root>'}"
        if len(path) > MAX_DEPTH:
            raise ComposeError(f"{where[:200]}...: nested more than {MAX_DEPTH} levels deep (a recursive alias?)")
        if node.tag not in _STANDARD_TAGS and node.tag not in ("!reset", "!override"):
            raise ComposeError(f"{where}: unsupported YAML tag {node.tag!r} (line {node.start_mark.line + 1})")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*path, i)) for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            keys: set[object] = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is None:
                    raise ComposeError(f"{where}: keys must be strings (line {key_node.start_mark.line + 1})")
                if key != "<<" and key in keys:
                    raise ComposeError(f"{where}: duplicate key {key!r} (line {key_node.start_mark.line + 1})")
                keys.add(key)
                stack.append((value_node, (*path, key) if key != "<<" else path))


def parse_yaml(text: str | bytes, filename: str) -> dict[str, Any]:
    """The top-level mapping of one Compose file (empty for an empty file). Raises ComposeError."""
    if len(text) > MAX_BYTES:
        raise ComposeError(f"{filename}: file too large ({len(text)} bytes; at most {MAX_BYTES})")
    try:
        loader = _ComposeLoader(text)  # the reader refuses control characters here
    except yaml.YAMLError as exc:
        raise ComposeError(f"{filename}: invalid YAML: {str(exc).splitlines()[0]}") from None
    try:
        root = loader.get_single_node()
        if root is None:
            return {}
        _check_nodes(root, filename)
        data = loader.construct_document(root)
    except ComposeError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ComposeError(f"{filename}: invalid YAML: {exc.problem or exc.context}{where}") from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise ComposeError(f"{filename}: invalid YAML: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ComposeError(f"{filename}: the top level must be a mapping, not {type(data).__name__}")
    return data


def read_yaml(path: str) -> dict[str, Any]:
    """:func:`parse_yaml` of the file at ``path``. Raises ComposeError when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ComposeError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return parse_yaml(raw.decode("utf-8"), path)
    except UnicodeDecodeError:
        raise ComposeError(f"{path}: not UTF-8 text") from None
