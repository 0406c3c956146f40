"""The runnable shell blocks of docs/getting-started.md and docs/guides/*.md, run in order against a real berthd.

A runnable block is fenced ```` ```sh {run} ```` (``{run exit=N}`` when its last command fails with status N, as
an error the page shows). It runs with ``bash -e`` in a temp directory of the page's own (a ``cd`` carries over to
the next block), with DOCKER_HOST and BERTH_HOST at the daemon and REGISTRY, REGISTRY_USER and REGISTRY_PASSWORD
naming a private registry (a local one with basic auth). Its stdout and stderr together are compared with the
```` ```text {output} ```` block right after it, if there is one: line by line, trailing spaces ignored; ``...``
inside a line matches any text in it, a line that is only ``...`` any number of lines.
Pages use only ``busybox:latest`` and images they build themselves; containers a page leaves are removed.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.berthd import BIN, Berthd
from tests.fixtures.registry import AUTH_PASSWORD, AUTH_USER, LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "docs" / "getting-started.md", *sorted((REPO / "docs" / "guides").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)?[ \t]*(\{[^}\n]*\})?[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One runnable block: its script, the exit status it ends with, the output it shows (None: not checked)."""

    line: int
    script: str
    exit: int
    output: str | None


def blocks(text: str) -> list[Block]:
    """The runnable blocks of a page, in order. Raises ValueError for an output block with nothing to run."""
    result: list[Block] = []
    last_end = -1
    for match in FENCE.finditer(text):
        attrs = (match.group(2) or "").strip("{}").split()
        line = text.count("\n", 0, match.start()) + 1
        if attrs[:1] == ["run"]:
            status = next((int(a.removeprefix("exit=")) for a in attrs if a.startswith("exit=")), 0)
            result.append(Block(line, match.group(3), status, None))
        elif attrs[:1] == ["output"]:
            if not result or result[-1].output is not None or text[last_end:match.start()].strip():
                raise ValueError(f"line {line}: an output block must follow a runnable block")
            result[-1] = Block(result[-1].line, result[-1].script, result[-1].exit, match.group(3))
        last_end = match.end()
    return result


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is what ``expected`` shows (see the module docstring for ``...``)."""
    pattern = "".join(r"(?:[^\n]*\n)*?" if line == "..." else
                      r"[^\n]*?".join(map(re.escape, line.split("..."))) + r"\n"
                      for line in (raw.rstrip() for raw in expected.splitlines()))
    normal = "".join(line.rstrip() + "\n" for line in actual.splitlines())
    return re.fullmatch(pattern, normal) is not None


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> tuple[int, str, Path]:
    """Run one block; (status, output, the directory it ended in)."""
    state = cwd / ".." / f".cwd-{os.getpid()}"
    script = f"{block.script}\npwd > {state.resolve()}\n"
    result = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120)
    ended = Path(state.read_text().strip()) if result.returncode == 0 and state.exists() else cwd
    return result.returncode, result.stdout, ended


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_page_runs(page: Path, berthd_with_busybox: Berthd, auth_registry: LocalRegistry) -> None:
    runnable = blocks(page.read_text())
    if not runnable:
        pytest.skip("no runnable blocks")
    env = berthd_with_busybox.env | {"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                                     "REGISTRY": auth_registry.domain, "REGISTRY_USER": AUTH_USER,
                                     "REGISTRY_PASSWORD": AUTH_PASSWORD}
    name = page.relative_to(REPO)
    with tempfile.TemporaryDirectory(prefix="berth-docs-") as tmp:
        cwd = Path(tmp) / "work"
        cwd.mkdir()
        before = set(berthd_with_busybox.docker("ps", "-aq").stdout.split())
        try:
            for block in runnable:
                status, output, cwd = run_block(block, cwd, env)
                where = f"{name}:{block.line}"
                assert status == block.exit, f"{where}: exit status {status}, not {block.exit}:\n{output}"
                assert block.output is None or matches(block.output, output), \
                    f"{where}: the output differs from the page's.\nShown:\n{block.output}\nGot:\n{output}"
        finally:
            leftovers = set(berthd_with_busybox.docker("ps", "-aq").stdout.split()) - before
            if leftovers:
                berthd_with_busybox.docker("rm", "-f", *leftovers, check=False)


def test_matcher() -> None:
    assert matches("a\n...\nz\n", "a\nb\nc\nz\n") and matches("a\n...\nz\n", "a\nz\n")
    assert matches("id ... done\n", "id 1234 done  \n") and not matches("id ... done\n", "id 1\n2 done\n")
    assert not matches("a\n", "a\nb\n")
    assert blocks("```sh {run exit=1}\nfalse\n```\n\n```text {output}\nx\n```\n") == [Block(1, "false\n", 1, "x\n")]
