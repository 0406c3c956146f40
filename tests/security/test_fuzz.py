"""Property tests (hypothesis): every parser of untrusted text fails only with its documented error type,
and the tar extractor never writes outside its destination nor fails with anything but ``LayerError``.

Example counts come from the profile loaded in conftest.py (``--long`` for soak runs).
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.api.ports import PortSpecError, parse_port_spec
from backend.compose.interpolation import InterpolationError, parse_env_file
from backend.compose.loader import parse_yaml
from backend.compose.model import ComposeError, load_project
from backend.engine.builder.dockerfile import DockerfileError, parse_dockerfile
from backend.engine.errors import InvalidParameter
from backend.engine.images.layers import LayerError, apply_layer
from backend.engine.images.reference import parse_reference
from backend.engine.volumes.specs import parse_bind, parse_mount

# Text that leans on the characters these grammars care about.
_SYNTAX = st.sampled_from([*":/@.-_+=,\\$'\"#{}[]!&*|>%\t\n 0123456789aZ", "sha256:", "..", "\r\n", "\x00", "é",
                           "\ud7ff"])
GRAMMAR_TEXT = st.lists(st.one_of(_SYNTAX, st.text(max_size=4)), max_size=40).map("".join)


@given(st.one_of(GRAMMAR_TEXT, st.text()))
def test_reference_parser(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidParameter:
        return
    assert parse_reference(str(ref)) == ref  # what it accepts, it prints back to itself


@given(st.one_of(GRAMMAR_TEXT, st.text()))
def test_port_spec_parser(text: str) -> None:
    try:
        specs = parse_port_spec(text)
    except PortSpecError:
        return
    assert all(0 < spec.container_port <= 65535 for spec in specs)


@given(st.one_of(GRAMMAR_TEXT, st.text()))
def test_bind_spec_parser(text: str) -> None:
    try:
        parse_bind(text)
    except InvalidParameter:
        pass


MOUNT_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | GRAMMAR_TEXT,
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(GRAMMAR_TEXT, inner,
                                                                                      max_size=3), max_leaves=4)


@given(st.dictionaries(st.sampled_from(["Type", "Source", "Target", "ReadOnly", "BindOptions", "VolumeOptions",
                                        "TmpfsOptions", "Consistency"]), MOUNT_VALUES, max_size=6))
def test_mount_object_parser(doc: dict[str, object]) -> None:
    try:
        parse_mount(doc, exists=lambda _: True)
    except InvalidParameter:
        pass


@given(st.one_of(GRAMMAR_TEXT, st.text()), st.dictionaries(GRAMMAR_TEXT, GRAMMAR_TEXT, max_size=3))
def test_env_file_parser(text: str, lookup: dict[str, str]) -> None:
    try:
        parse_env_file(text, ".env", lookup)
    except InterpolationError:
        pass


_INSTRUCTIONS = st.sampled_from(["FROM", "RUN", "CMD", "COPY", "ADD", "ENV", "ARG", "LABEL", "EXPOSE", "USER",
                                 "WORKDIR", "VOLUME", "ENTRYPOINT", "HEALTHCHECK", "ONBUILD", "SHELL",
                                 "STOPSIGNAL", "# escape=`", "# syntax=x", "<<EOF", "EOF", "--from=", "AS", "\\"])
DOCKERFILE = st.lists(st.lists(st.one_of(_INSTRUCTIONS, GRAMMAR_TEXT), max_size=5).map(" ".join),
                      max_size=8).map("\n".join)


@given(st.one_of(DOCKERFILE, st.text(), st.binary(max_size=200)))
def test_dockerfile_parser(data: str | bytes) -> None:
    try:
        parse_dockerfile(data)
    except DockerfileError:
        pass


_YAML = st.sampled_from(["services:", "  web:", "    image: x", "    ports:", "      - 22:22", "&a [*a]",
                         "!!python/object:os.system", "<<: *b", "b: &b {x: 1}", "extends:", "  service: web",
                         "{", "[", "- ", ": ", "${X:-", "$$", "\t", "volumes:", "    volumes: [../x:/y]",
                         "    environment: [A=1]", "    build: .", "x-a: &x", "version: 3"])
COMPOSE = st.lists(st.one_of(_YAML, GRAMMAR_TEXT), max_size=12).map("\n".join)


@given(st.one_of(COMPOSE, st.text()))
def test_compose_yaml_loader(text: str) -> None:
    try:
        parse_yaml(text, "compose.yaml")
    except ComposeError:
        pass


@given(COMPOSE)
def test_compose_project_loader(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "compose.yaml")
        with open(path, "w") as f:
            f.write(text)
        try:
            load_project([path], project_name="fuzz", environment={}, working_dir=tmp)
        except ComposeError:
            pass


_NAMES = st.sampled_from(["a", "a/b", "../x", "/abs", "./c", ".wh.a", ".wh..wh..opq", "a/.wh.b", "l", "l/x",
                          "d/", "..", ".", "", "x" * 300])
_KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
                          tarfile.CHRTYPE])
_ENTRIES = st.lists(st.tuples(_NAMES, _KINDS, st.sampled_from(["/", "..", "a", "l", "/tmp", "../../.."]),
                              st.binary(max_size=64)), max_size=10)


def _tar(entries: list[tuple[str, bytes, str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, link, data in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return buf.getvalue()


@pytest.mark.root
@given(_ENTRIES, st.integers(min_value=0, max_value=4096), st.binary(max_size=64))
def test_tar_extractor(entries: list[tuple[str, bytes, str, bytes]], cut: int, garbage: bytes) -> None:
    """Random entries (traversal, links, whiteouts), cut short or with garbage appended: the extractor
    accepts or raises LayerError; nothing appears outside the destination; a failure leaves it empty."""
    data = _tar(entries)
    data = data[:cut] + garbage if cut < len(data) else data
    with tempfile.TemporaryDirectory() as outer:
        dest = os.path.join(outer, "dest")
        os.mkdir(dest)
        try:
            apply_layer(io.BytesIO(data), dest)
        except LayerError:
            assert os.listdir(dest) == []
        assert os.listdir(outer) == ["dest"]
