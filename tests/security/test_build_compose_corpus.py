"""Hostile Dockerfiles and build contexts through ``docker build``, and hostile Compose files through
``berth compose``: each fails with one clear line (no traceback) and leaves nothing behind.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd
from tests.security.hostile import MARKER, SENTINEL, Tar, clear_error

pytestmark = [pytest.mark.root, pytest.mark.network]


def _build(daemon: Berthd, context: bytes, tag: str = "sec-build") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=context,
                            capture_output=True, env={**daemon.env, "DOCKER_BUILDKIT": "0"}, timeout=120)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))


def _context(dockerfile: bytes, extra: Tar | None = None) -> bytes:
    tar = extra or Tar()
    return tar.file("Dockerfile", dockerfile).bytes()


DOCKERFILES: list[tuple[str, bytes, str | None]] = [
    ("huge-line", b"FROM busybox\nRUN echo " + b"a" * (2 << 20) + b"\n", "The command"),
    ("huge-continuation", b"FROM busybox\nRUN echo \\\n" * 1 + b"a \\\n" * 200_000 + b"b\n", "The command"),
    ("unknown-instruction", b"FROM busybox\nEXPLODE now\n", "unknown instruction"),
    ("no-from", b"RUN true\n", "FROM"),
    ("empty", b"", "no instructions"),
    ("nul-bytes", b"FROM busybox\nRUN \x00\x00\n", ""),
    ("bad-utf8", b"FROM busybox\nLABEL a=\xff\xfe\n", ""),
    ("copy-dotdot", b"FROM busybox\nCOPY ../../../../etc/passwd /x\n", "outside"),
    ("copy-abs-host", f"FROM busybox\nCOPY {MARKER} /x\n".encode(), "not found"),
    ("add-host-path", f"FROM busybox\nADD {SENTINEL}/dir /x\n".encode(), "not found"),
    ("add-file-url", b"FROM busybox\nADD file:///etc/shadow /x\n", ""),
    ("copy-from-dotdot", b"FROM busybox\nCOPY --from=busybox ../../../../etc/shadow /x\n", ""),
    ("bad-flag", b"FROM busybox\nCOPY --chmod=999999 Dockerfile /x\n", "chmod"),
    ("bad-json", b'FROM busybox\nCMD ["unclosed\n', None),  # not JSON: the shell form, as Docker reads it
    ("arg-cycle", b"ARG A=${B}\nARG B=${A}\nFROM busybox${A}\n", None),
    ("bad-from-ref", b"FROM ../../etc\n", "invalid reference format"),
    ("healthcheck-bad-duration", b"FROM busybox\nHEALTHCHECK --interval=forever CMD true\n", "invalid duration"),
    ("stopsignal-bad", b"FROM busybox\nSTOPSIGNAL SIGNOPE\n", "signal"),
    ("escape-directive-bad", b"# escape=xx\nFROM busybox\n", "escape"),
    ("heredoc-unterminated", b"FROM busybox\nRUN <<EOF\necho hi\n", ""),
]


@pytest.mark.parametrize("case", DOCKERFILES, ids=lambda c: c[0])
def test_hostile_dockerfiles(berthd_with_busybox: Berthd, case: tuple[str, bytes, str | None]) -> None:
    _, dockerfile, message = case
    tag = f"sec-build-{uuid.uuid4().hex[:6]}"
    result = _build(berthd_with_busybox, _context(dockerfile), tag)
    if message is None:
        assert result.returncode == 0, result.stderr
        berthd_with_busybox.docker("rmi", tag)
    else:
        clear_error(result, message)


@pytest.mark.parametrize("extra, copy", [
    (Tar().symlink("link", SENTINEL), "link/dir/sub/file"),
    (Tar().symlink("link", MARKER), "link"),
    (Tar().symlink("up", "../../../../.."), f"up{SENTINEL}/dir"),
    (Tar().dir("d").symlink("d/loop", "../d/loop"), "d/loop/x"),
], ids=["symlinked-dir-to-host", "symlink-to-marker", "relative-climb", "loop"])
def test_symlinked_context_entries_stay_in_the_context(berthd_with_busybox: Berthd, extra: Tar, copy: str) -> None:
    """A symlink in the context resolves inside the context as in a chroot: the host's file is never read."""
    tag = f"sec-build-{uuid.uuid4().hex[:6]}"
    result = _build(berthd_with_busybox, _context(f"FROM busybox\nCOPY {copy} /x\n".encode(), extra), tag)
    assert "Traceback" not in result.stderr
    if result.returncode == 0:  # a symlink copied as a symlink: its target was never read
        out = berthd_with_busybox.docker("run", "--rm", tag, "sh", "-c", "cat /x 2>/dev/null; true").stdout
        assert "host secret" not in out and "sentinel" not in out
        berthd_with_busybox.docker("rmi", tag)
    else:
        assert any(word in result.stderr for word in ("not found", "symbolic links", "no such file")), result.stderr


COMPOSE_FILES: list[tuple[str, str, str]] = [
    ("alias-bomb", "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
        f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8))
     + "services: {}\n", "alias"),
    ("python-object", "services:\n  web:\n    image: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
     "tag"),
    ("python-name", "x: !!python/name:os.system\nservices: {}\n", "tag"),
    ("deep-nesting", "services: " + "[" * 5000 + "]" * 5000 + "\n", "recursion"),
    ("duplicate-keys", "services:\n  web:\n    image: busybox\n  web:\n    image: evil\n", "duplicate"),
    ("extends-cycle", "services:\n  a:\n    image: busybox\n    extends: b\n  b:\n    extends: a\n", "extends"),
    ("extends-file-escape", f"services:\n  a:\n    extends:\n      file: {MARKER}\n      service: x\n", ""),
    ("sexagesimal-port", "services:\n  web:\n    image: busybox\n    ports:\n      - 22:22\n", "base 60"),
    ("ports-float", "services:\n  web:\n    image: busybox\n    ports: [1.5]\n", "port"),
    ("not-a-mapping", "- just\n- a list\n", "mapping"),
    ("merge-key-loop", "a: &a\n  <<: *a\nservices: {}\n", ""),
    ("huge-file", "services: {}\n#" + "x" * (20 << 20) + "\n", "too large"),
    ("bad-interpolation", "services:\n  web:\n    image: ${X:?boom}\n", "boom"),
    ("unclosed-interpolation", "services:\n  web:\n    image: ${X\n", "interpolation"),
    ("control-char", "services:\n  web:\n    image: \x1b[31m\n", "invalid YAML"),
]


@pytest.mark.parametrize("case", COMPOSE_FILES, ids=lambda c: c[0])
def test_hostile_compose_files(berthd_with_busybox: Berthd, tmp_path: Path, case: tuple[str, str, str]) -> None:
    _, text, message = case
    (tmp_path / "compose.yaml").write_text(text)
    result = berthd_with_busybox.berth("compose", "-f", str(tmp_path / "compose.yaml"), "-p", "sec", "config",
                                       check=False)
    clear_error(result, message)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize("env_file, message", [
    ("A=${B:?missing}\n", "missing"),
    ('A="unclosed\n', "quote"),
    ("A=${\n", "interpolation"),
    ("=novar\n", ""),
], ids=["required-var", "unclosed-quote", "bad-interpolation", "empty-key"])
def test_hostile_env_files(berthd_with_busybox: Berthd, tmp_path: Path, env_file: str, message: str) -> None:
    (tmp_path / "hostile.env").write_text(env_file)
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n    env_file: hostile.env\n")
    result = berthd_with_busybox.berth("compose", "-f", str(tmp_path / "compose.yaml"), "-p", "sec", "config",
                                       check=False)
    clear_error(result, message)
