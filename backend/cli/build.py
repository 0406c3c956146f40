"""``berth build`` and ``berth builder prune``.

The context is tarred here, as the docker CLI does: files under PATH (symlinks kept as symlinks, owners
0:0) minus what ``.dockerignore`` excludes (``backend.api.dockerignore``, the engine's own matcher), the
Dockerfile and ``.dockerignore`` always sent. A Dockerfile outside PATH, or ``-f -``, goes into the tar's
root under a generated name. ``PATH`` ``-`` reads a context tar (or a bare Dockerfile) from stdin. Step
output is printed as it comes (step lines bold on a terminal), pull progress as for ``berth pull``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import tempfile
from typing import IO, Any

from backend.api.build_context import write_context
from backend.api.dockerignore import PatternError
from backend.cli.context import ArgumentParser, Cli, Command, UsageError
from backend.cli.formatting import human_size
from backend.cli.images import ProgressView, confirm, file_chunks

_TAR_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def context_tar(path: str, dockerfile: str | None, out: IO[bytes]) -> str:
    """Write the context tar of directory ``path`` to ``out``; returns the Dockerfile's name in it.
    ``dockerfile`` is a path (relative to the current directory), ``-`` for stdin, or None for
    ``PATH/Dockerfile``. Raises UsageError for a missing context or Dockerfile, a bad pattern."""
    if not os.path.isdir(path):
        raise UsageError(f'unable to prepare context: path "{path}" not found')
    inline = sys.stdin.buffer.read() if dockerfile == "-" else None
    if inline is None:
        file_path = os.path.abspath(dockerfile or os.path.join(path, "Dockerfile"))
        if not os.path.isfile(file_path):
            raise UsageError(f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                             f"lstat {file_path}: no such file or directory")
    try:
        return write_context(path, out, None if inline is not None else dockerfile, inline)
    except PatternError as exc:
        raise UsageError(f"error checking context: {exc}") from None


def _stdin_context(out: IO[bytes]) -> None:
    """``berth build -``: stdin is a context tar (sent as it is) or a Dockerfile (wrapped into a tar)."""
    data = sys.stdin.buffer.read()
    if data.startswith(_TAR_MAGICS) or data[257:262] == b"ustar":
        out.write(data)
        return
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode = len(data), 0o600
        tar.addfile(info, io.BytesIO(data))


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f'invalid argument "{item}" for "{flag}" flag')
        out[key] = value if sep else os.environ.get(key, "")
    return out


class _StepView:
    """Prints the build's messages: step lines bold (rich) on a terminal, everything else as it comes."""

    def __init__(self, cli: Cli, quiet: bool) -> None:
        self._cli = cli
        self._quiet = quiet
        self._console: Any = None
        self._progress = ProgressView(cli.out, quiet)
        if not quiet and cli.out.isatty():
            from rich.console import Console

            self._console = Console(file=cli.out, highlight=False)

    def show(self, message: dict[str, Any]) -> None:
        if self._quiet:
            return
        text = message.get("stream")
        if isinstance(text, str):
            if self._console is not None and text.startswith("Step "):
                self._console.print(text, style="bold", end="", markup=False)
            else:
                self._cli.write(text)
                self._cli.out.flush()
        elif message.get("status"):
            self._progress.show(message)

    def close(self) -> None:
        self._progress.close()


def _configure_build(p: ArgumentParser) -> None:
    p.add_argument("-t", "--tag", action="append", default=[], help="Name and optionally a tag (name:tag)")
    p.add_argument("-f", "--file", help="Name of the Dockerfile (default: PATH/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], help="Set build-time variables")
    p.add_argument("--target", help="Set the target build stage to build")
    p.add_argument("--no-cache", action="store_true", help="Do not use cache when building the image")
    p.add_argument("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    p.add_argument("--label", action="append", default=[], help="Set metadata for an image")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the build output and print image ID on success")
    p.add_argument("path", help="PATH | -")


async def build(cli: Cli, args: argparse.Namespace) -> None:
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
        dockerfile: str | None = None
        if args.path == "-":
            if args.file == "-":
                raise UsageError("invalid argument: can't use stdin for both build context and dockerfile")
            _stdin_context(spool)
            dockerfile = args.file
        else:
            dockerfile = context_tar(args.path, args.file, spool)
        spool.seek(0)
        view = _StepView(cli, args.quiet)
        image_id = ""
        try:
            async for message in cli.client.build(
                    file_chunks(spool), tags=args.tag, dockerfile=dockerfile,
                    build_args=_pairs(args.build_arg, "--build-arg"), target=args.target, nocache=args.no_cache,
                    pull=args.pull, labels=_pairs(args.label, "--label"), quiet=args.quiet):
                aux = message.get("aux")
                if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
                    image_id = aux["ID"]
                view.show(message)
        finally:
            view.close()
    if args.quiet:
        cli.print(image_id)


def _configure_prune(p: ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused build cache, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")


async def prune(cli: Cli, args: argparse.Namespace) -> None:
    if not args.force and not confirm(cli, "WARNING! This will remove all dangling build cache."):
        return
    report = await cli.client.prune_build_cache()
    if report.caches_deleted:
        cli.print("Deleted build cache objects:")
        for item in report.caches_deleted:
            cli.print(item.removeprefix("sha256:"))
        cli.print()
    cli.print(f"Total reclaimed space: {human_size(report.space_reclaimed, 3)}")


COMMANDS = {
    "build": Command("Build an image from a Dockerfile", _configure_build, build),
    "builder_prune": Command("Remove build cache", _configure_prune, prune),
}
