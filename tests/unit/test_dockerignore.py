""".dockerignore matching: cases from moby/patternmatcher's tests and Docker's documentation."""

from __future__ import annotations

import time

import pytest

from backend.engine.builder.dockerignore import (
    DockerignoreError,
    clean_path,
    is_excluded,
    must_walk_dir,
    parse_dockerignore,
)
from backend.engine.errors import InvalidParameter

# (.dockerignore text, path, excluded?)
CASES = [
    ("fileutils.go", "fileutils.go", True),
    ("*.go", "fileutils.go", True),
    ("*.go", "dir/fileutils.go", False),
    ("*/*.go", "dir/fileutils.go", True),
    ("**/*.go", "fileutils.go", True),
    ("**/*.go", "a/b/c/fileutils.go", True),
    ("**", "anything/at/all", True),
    ("dir/**", "dir/a/b", True),
    ("dir/**", "dir", False),
    ("**/foo", "foo", True),
    ("**/foo", "a/foo", True),
    ("**/foo", "afoo", False),
    ("**foo", "afoo", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("docs", "docs/sub/file.md", True),
    ("docs/", "docs/file.md", True),
    ("/docs", "docs/file.md", True),
    ("./docs", "docs/file.md", True),
    ("a//b/../c", "a/c", True),
    ("fil?utils.go", "fileutils.go", True),
    ("fil?utils.go", "fil/utils.go", False),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "dx", False),
    ("[^a-c]x", "dx", True),
    ("\\*x", "*x", True),
    ("\\*x", "ax", False),
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-public.md", False),
    ("!README.md\n*.md", "README.md", True),
    ("dir\n!dir/keep", "dir/keep", False),
    ("dir\n!dir/keep", "dir/other", True),
    ("dir\n!dir/keep", "dir/keep/inner", False),
    ("# comment\n*.log", "# comment", False),
    ("  # not a comment", "# not a comment", True),
    ("\n\n  *.tmp  \n", "x.tmp", True),
    ("\ufeff*.tmp", "x.tmp", True),
    ("*", ".", False),
    ("a.b", "aXb", False),
    ("a+(b)|{c}$", "a+(b)|{c}$", True),
    ("node_modules\n!node_modules/pkg/LICENSE", "node_modules/other/x.js", True),
]


@pytest.mark.parametrize(("text", "path", "excluded"), CASES)
def test_is_excluded(text: str, path: str, excluded: bool) -> None:
    assert is_excluded(path, parse_dockerignore(text)) is excluded


def test_patterns_are_cleaned() -> None:
    patterns = parse_dockerignore("# c\n/a/b/\n./c\n! /d\nx/../y\n")
    assert [(p.text, p.exclusion) for p in patterns] == [("a/b", False), ("c", False), ("d", True), ("y", False)]


@pytest.mark.parametrize(("path", "cleaned"), [("", "."), ("./a/", "a"), ("//a", "/a"), ("a/./b/..", "a")])
def test_clean_path(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


@pytest.mark.parametrize("text", ["!", "  !  ", "[abc", "a[", "[z-a]"])
def test_bad_patterns(text: str) -> None:
    with pytest.raises(DockerignoreError) as info:
        parse_dockerignore(text)
    assert isinstance(info.value, InvalidParameter)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "directory", "walk"), [
    ("dir", "dir", False),
    ("dir\n!dir/keep", "dir", True),
    ("dir\n!dir/sub/keep", "dir/sub", True),
    ("dir\n!dir/sub/keep", "dir/other", False),
    ("dir\n!other/keep", "dir", False),
    ("dir\n!*/keep", "dir", True),
    ("dir\n!**/keep", "dir", True),
    ("dir\n!dir", "dir/sub", True),
])
def test_must_walk_dir(text: str, directory: str, walk: bool) -> None:
    assert must_walk_dir(directory, parse_dockerignore(text)) is walk


def test_matching_is_not_exponential() -> None:
    patterns = parse_dockerignore("*a*a*a*a*a*a*a*a*a*a*a*a*b\n" + "**/" * 50 + "x\n")
    start = time.perf_counter()
    assert not is_excluded("a" * 3000, patterns)
    assert not is_excluded("/".join(["d"] * 500), patterns)
    assert time.perf_counter() - start < 1.0
