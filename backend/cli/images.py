"""Image verbs: images, pull, push, tag, rmi, history, import, load, save, image prune.

Pull and push show the engine's progress: one bar per layer (rich) on a terminal, docker's plain
``id: status`` lines otherwise. Saved registry credentials go along as ``X-Registry-Auth``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import AsyncIterator, Iterable
from typing import IO, Any, TextIO

from backend.api.errors import APIError
from backend.cli.auth import auth_for_image
from backend.cli.context import ArgumentParser, Cli, Command, CommandError, ExitCode, UsageError, describe
from backend.cli.formatting import Formatter, ago, ellipsis, go_time, human_size, rfc3339, short_id


def parse_filters(values: Iterable[str]) -> dict[str, list[str]]:
    """``--filter k=v`` values -> the API's filters map. Raises UsageError."""
    filters: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"bad format of filter (expected name=value): {item}")
        filters.setdefault(key.strip(), []).append(value)
    return filters


def canonical(reference: str) -> str:
    """docker's full form of a reference: ``busybox`` -> ``docker.io/library/busybox:latest``."""
    name, at, digest = reference.partition("@")
    first, sep, _ = name.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + (name if sep else "library/" + name)
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + at + digest


def split_tag(reference: str) -> tuple[str, str | None]:
    """``repo[:tag]`` -> (repo, tag or None); a port in the registry is not a tag."""
    repo, sep, tag = reference.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag
    return reference, None


class ProgressView:
    """Shows a pull/push stream: rich bars per layer on a terminal, plain lines otherwise."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self._stream = stream
        self._quiet = quiet
        self._rich: Any = None
        self._tasks: dict[str, Any] = {}
        if not quiet and stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(bar_width=40), DownloadColumn(),
                                  console=Console(file=stream), transient=False)
            self._rich.start()

    def show(self, message: dict[str, Any]) -> None:
        """One progress message of the engine."""
        if self._quiet:
            return
        status = str(message.get("status") or "")
        layer = str(message.get("id") or "")
        detail = message.get("progressDetail") if isinstance(message.get("progressDetail"), dict) else {}
        assert isinstance(detail, dict)
        text = f"{layer}: {status}" if layer else status
        if self._rich is None:
            if not detail.get("current") and text:
                self._stream.write(text + "\n")
                self._stream.flush()
            return
        if not layer or "Pulling from" in status:
            self._rich.console.print(text)
            return
        task = self._tasks.get(layer)
        if task is None:
            task = self._tasks[layer] = self._rich.add_task(text, total=None)
        total = detail.get("total") if isinstance(detail.get("total"), int) else None
        current = detail.get("current") if isinstance(detail.get("current"), int) else None
        done = status in ("Pull complete", "Already exists", "Layer already exists", "Pushed", "Mounted from")
        self._rich.update(task, description=text, total=total if total else None,
                          completed=current if current is not None else (total or 0) if done else None)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()


async def pull_image(cli: Cli, reference: str, *, platform: str | None = None, quiet: bool = False,
                     stream: TextIO | None = None) -> None:
    """Pull ``reference`` showing progress on ``stream`` (stdout). Raises APIError."""
    repo, tag = split_tag(reference) if "@" not in reference else (reference, None)
    view = ProgressView(stream or sys.stdout, quiet)
    try:
        async for message in cli.client.pull(repo, tag=tag or ("latest" if "@" not in repo else None),
                                             platform=platform, auth=auth_for_image(cli, reference)):
            view.show(message)
    finally:
        view.close()


def _configure_pull(p: ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("-a", "--all-tags", action="store_true", help="Download all tagged images (not supported)")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("name", help="NAME[:TAG|@DIGEST]")


async def pull(cli: Cli, args: argparse.Namespace) -> None:
    if args.all_tags:
        raise UsageError("--all-tags is not supported by berth")
    await pull_image(cli, args.name, platform=args.platform, quiet=args.quiet)
    cli.print(canonical(args.name))


def _configure_push(p: ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("-a", "--all-tags", action="store_true", help="Push all tags of the repository")
    p.add_argument("name", help="NAME[:TAG]")


async def push(cli: Cli, args: argparse.Namespace) -> None:
    repo, tag = split_tag(args.name)
    view = ProgressView(sys.stdout, args.quiet)
    try:
        async for message in cli.client.push(repo, tag=None if args.all_tags else tag or "latest",
                                             auth=auth_for_image(cli, args.name)):
            view.show(message)
    finally:
        view.close()
    if args.quiet:
        cli.print(args.name)


_IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED",
                  "CreatedAt": "CREATED AT", "Size": "SIZE", "Digest": "DIGEST", "Containers": "CONTAINERS",
                  "VirtualSize": "SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE"}


def _configure_images(p: ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="Show all images")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("repository", nargs="?", help="REPOSITORY[:TAG]")


async def images(cli: Cli, args: argparse.Namespace) -> None:
    filters = parse_filters(args.filter)
    if args.repository:
        filters.setdefault("reference", []).append(args.repository)
    rows: list[dict[str, Any]] = []
    now = time.time()
    for image in await cli.client.list_images(all=args.all, filters=filters):
        image_id = image.id if args.no_trunc else short_id(image.id)
        digests = {d.split("@", 1)[0]: d.split("@", 1)[1] for d in image.repo_digests if "@" in d}
        tags = image.repo_tags or [f"{d.split('@', 1)[0]}:<none>" for d in image.repo_digests] or ["<none>:<none>"]
        for repo_tag in tags:
            repo, tag = split_tag(repo_tag)
            rows.append({"Repository": repo, "Tag": tag or "<none>", "Digest": digests.get(repo, "<none>"),
                         "ID": image_id, "CreatedSince": ago(image.created, now), "CreatedAt": go_time(image.created),
                         "Size": human_size(image.size, 3), "VirtualSize": human_size(image.size),
                         "SharedSize": "N/A", "UniqueSize": "N/A",
                         "Containers": "N/A" if image.containers < 0 else str(image.containers)})
    if args.quiet:
        for image_id in dict.fromkeys(r["ID"] for r in rows):
            cli.print(image_id)
        return
    digest = "\t{{.Digest}}" if args.digests else ""
    default = "table {{.Repository}}\t{{.Tag}}" + digest + "\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    cli.write(Formatter(args.format, default, _IMAGE_HEADERS).render(rows))


def _configure_tag(p: ArgumentParser) -> None:
    p.add_argument("source", help="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", help="TARGET_IMAGE[:TAG]")


async def tag(cli: Cli, args: argparse.Namespace) -> None:
    repo, tag_name = split_tag(args.target)
    await cli.client.tag_image(args.source, repo, tag_name or "latest")


def _configure_rmi(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    p.add_argument("images", nargs="+", help="IMAGE")


async def rmi(cli: Cli, args: argparse.Namespace) -> None:
    failed = False
    for name in args.images:
        try:
            items = await cli.client.remove_image(name, force=args.force, noprune=args.no_prune)
        except APIError as exc:
            cli.warn(describe(exc))
            failed = True
            continue
        for item in items:
            cli.print(f"Untagged: {item.untagged}" if item.untagged else f"Deleted: {item.deleted}")
    if failed:
        raise ExitCode(1)


def _configure_history(p: ArgumentParser) -> None:
    p.add_argument("-H", "--human", nargs="?", const="true", default="true", choices=("true", "false"),
                   help="Print sizes and dates in human readable format")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("image", help="IMAGE")


async def history(cli: Cli, args: argparse.Namespace) -> None:
    human = args.human == "true"
    rows = []
    now = time.time()
    for item in await cli.client.image_history(args.image):
        missing = not item.id or item.id == "<missing>"
        created_by = item.created_by.replace("\t", " ")
        rows.append({
            "ID": "<missing>" if missing else item.id if args.no_trunc else short_id(item.id),
            "CreatedSince": ago(item.created, now) if human else go_time(item.created),
            "CreatedAt": rfc3339(item.created),
            "CreatedBy": created_by if args.no_trunc else ellipsis(created_by, 45),
            "Size": human_size(item.size, 3) if human else str(item.size), "Comment": item.comment})
    if args.quiet:
        for row in rows:
            cli.print(row["ID"])
        return
    headers = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
               "Size": "SIZE", "Comment": "COMMENT"}
    default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    cli.write(Formatter(args.format, default, headers).render(rows))


async def file_chunks(f: IO[bytes], size: int = 1 << 20) -> AsyncIterator[bytes]:
    """The bytes of ``f`` in chunks, for a request body."""
    while chunk := f.read(size):
        yield chunk


def _open_input(name: str | None, what: str) -> IO[bytes]:
    if name is None or name == "-":
        if sys.stdin.isatty():
            raise UsageError(f"requested {what} from stdin, but stdin is a terminal")
        return sys.stdin.buffer
    try:
        return open(name, "rb")
    except OSError as exc:
        raise CommandError(f"berth: cannot open {name}: {exc.strerror}") from exc


def _configure_import(p: ArgumentParser) -> None:
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction")
    p.add_argument("-m", "--message", help="Set commit message for imported image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("file", help="file|- (a tar of a root filesystem)")
    p.add_argument("reference", nargs="?", help="REPOSITORY[:TAG]")


async def import_(cli: Cli, args: argparse.Namespace) -> None:
    repo, tag_name = split_tag(args.reference) if args.reference else (None, None)
    source = _open_input(args.file, "import")
    image_id = ""
    try:
        async for message in cli.client.import_image(file_chunks(source), repo=repo, tag=tag_name,
                                                     changes=args.change, message=args.message,
                                                     platform=args.platform):
            image_id = str(message.get("status") or image_id)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    cli.print(image_id)


def _configure_load(p: ArgumentParser) -> None:
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")


async def load(cli: Cli, args: argparse.Namespace) -> None:
    source = _open_input(args.input, "load")
    try:
        async for message in cli.client.load_images(file_chunks(source), quiet=args.quiet):
            text = message.get("stream")
            if isinstance(text, str):
                cli.write(text)
    finally:
        if source is not sys.stdin.buffer:
            source.close()


def _configure_save(p: ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("images", nargs="+", help="IMAGE")


async def save(cli: Cli, args: argparse.Namespace) -> None:
    if args.output is None and sys.stdout.isatty():
        raise CommandError("berth: cowardly refusing to save to a terminal. Use the -o flag or redirect")
    await write_stream(cli.client.save_images(args.images), args.output)


async def write_stream(chunks: AsyncIterator[bytes], output: str | None) -> None:
    """Write a binary stream to the file ``output`` (atomically: a temp file renamed at the end) or to
    stdout when it is None."""
    if output is None:
        sys.stdout.flush()
        async for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    temp = f"{output}.berth-tmp-{os.getpid()}"
    try:
        with open(temp, "wb") as f:
            async for chunk in chunks:
                f.write(chunk)
        os.replace(temp, output)
    except OSError as exc:
        raise CommandError(f"berth: cannot write {output}: {exc.strerror}") from exc
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def confirm(cli: Cli, warning: str) -> bool:
    """Ask before a destructive command; a non-terminal stdin reads one line."""
    cli.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    cli.out.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _configure_image_prune(p: ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'until=<ts>')")


async def image_prune(cli: Cli, args: argparse.Namespace) -> None:
    warning = ("WARNING! This will remove all images without at least one container associated to them."
               if args.all else "WARNING! This will remove all dangling images.")
    if not args.force and not confirm(cli, warning):
        return
    filters = parse_filters(args.filter)
    if not args.all:
        filters.setdefault("dangling", ["true"])
    report = await cli.client.prune_images(filters=filters)
    if report.deleted:
        cli.print("Deleted Images:")
        for item in report.deleted:
            cli.print(f"untagged: {item.untagged}" if item.untagged else f"deleted: {item.deleted}")
        cli.print()
    cli.print(f"Total reclaimed space: {human_size(report.space_reclaimed, 3)}")


COMMANDS = {
    "images": Command("List images", _configure_images, images),
    "pull": Command("Download an image from a registry", _configure_pull, pull),
    "push": Command("Upload an image to a registry", _configure_push, push),
    "tag": Command("Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", _configure_tag, tag),
    "rmi": Command("Remove one or more images", _configure_rmi, rmi),
    "history": Command("Show the history of an image", _configure_history, history),
    "import": Command("Import the contents from a tarball to create a filesystem image", _configure_import,
                      import_),
    "load": Command("Load an image from a tar archive or STDIN", _configure_load, load),
    "save": Command("Save one or more images to a tar archive (streamed to STDOUT by default)", _configure_save,
                    save),
    "image_prune": Command("Remove unused images", _configure_image_prune, image_prune),
}
