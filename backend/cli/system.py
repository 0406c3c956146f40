"""System verbs: version, info, events, inspect (containers and images), system df, system prune."""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from backend.api.errors import APIError, NotFoundError
from backend.cli.context import ArgumentParser, Cli, Command, CommandError, ExitCode, UsageError, describe
from backend.cli.formatting import Fields, Formatter, bytes_size, human_size, render_items, rfc3339, timestamp_arg
from backend.cli.images import confirm, parse_filters
from backend.version import VERSION, build_stamp, platform_name

_VERSION_ALIASES = {"APIVersion": "ApiVersion"}
"""The Go field names of docker's version documents that differ from their JSON keys."""
_INSPECT_ALIASES = {"ID": "Id"}
"""The same for inspect documents (containers, images, networks)."""


def _configure_version(p: ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="Format output using a custom template")


async def version(cli: Cli, args: argparse.Namespace) -> None:
    """Client facts (version, build, API, Python, platform), then the engine's (version, API range, platform,
    kernel, default runtime), as the About dialog shows them. Raises CommandError when the engine does not
    answer (after printing the client's facts)."""
    os_name, _, arch = platform_name().partition("/")
    client_doc = {"Platform": {"Name": "Berth"}, "Version": VERSION, "ApiVersion": "", "GitCommit": build_stamp(),
                  "GoVersion": f"python{platform.python_version()}", "Os": os_name, "Arch": arch, "BuildTime": "",
                  "PythonVersion": platform.python_version()}
    try:
        server = await cli.client.version()
        runtime = str((await cli.client.info()).raw.get("DefaultRuntime") or "")
    except APIError as exc:
        server = None
        error = exc
    client_doc["ApiVersion"] = cli.client.api_version or "1.41"
    if args.format:
        doc = {"Client": Fields(client_doc, aliases=_VERSION_ALIASES),
               "Server": Fields(server.raw, aliases=_VERSION_ALIASES) if server else None}
        cli.write(render_items(args.format, [doc]))
    else:
        cli.print("Client:")
        for key, value in (("Version", VERSION), ("API version", client_doc["ApiVersion"]),
                           ("Python version", client_doc["PythonVersion"]),
                           ("Git commit", client_doc["GitCommit"] or "(from source)"),
                           ("OS/Arch", platform_name())):
            cli.print(f" {key + ':':<19}{value}")
        if server is not None:
            cli.print()
            cli.print(f"Server: {server.raw.get('Platform', {}).get('Name') or 'Berth Engine'}")
            cli.print(" Engine:")
            for key, value in (("Version", server.version),
                               ("API version", f"{server.api_version} (minimum version {server.min_api_version})"),
                               ("OS/Arch", f"{server.os}/{server.arch}"), ("Kernel Version", server.kernel_version),
                               ("Default Runtime", runtime)):
                cli.print(f"  {key + ':':<18}{value}")
    if server is None:
        cli.out.flush()
        raise CommandError(describe(error))


def _configure_info(p: ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="Format output using a custom template")


async def info(cli: Cli, args: argparse.Namespace) -> None:
    facts = await cli.client.info()
    if args.format:
        cli.write(render_items(args.format, [facts.raw]))
        return
    lines = [
        "Client:", f" Version:    {VERSION}", f" Debug Mode: {str(cli.debug).lower()}", "", "Server:",
        f" Containers: {facts.containers}", f"  Running: {facts.containers_running}",
        f"  Paused: {facts.containers_paused}", f"  Stopped: {facts.containers_stopped}",
        f" Images: {facts.images}", f" Server Version: {facts.server_version}", f" Storage Driver: {facts.driver}",
        f" Cgroup Version: {facts.cgroup_version}", f" Kernel Version: {facts.kernel_version}",
        f" Operating System: {facts.operating_system}", f" OSType: {facts.os_type}",
        f" Architecture: {facts.architecture}", f" CPUs: {facts.ncpu}",
        f" Total Memory: {bytes_size(facts.mem_total)}", f" Name: {facts.name}", f" ID: {facts.id}",
        f" Docker Root Dir: {facts.docker_root_dir}",
    ]
    cli.write("".join(line + "\n" for line in lines))


def _configure_events(p: ArgumentParser) -> None:
    p.add_argument("--since", help="Show all events created since timestamp")
    p.add_argument("--until", help="Stream events until this timestamp")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions")
    p.add_argument("--format", help="Format output using a custom template")


def _rfc3339_nano(time_nano: int) -> str:
    seconds, nanos = divmod(time_nano, 1_000_000_000)
    stamp = rfc3339(seconds)
    return f"{stamp[:19]}.{nanos:09d}{stamp[19:]}"


async def events(cli: Cli, args: argparse.Namespace) -> None:
    since = float(timestamp_arg(args.since, "--since")) if args.since else None
    until = float(timestamp_arg(args.until, "--until")) if args.until else None
    template = Formatter(args.format, "", {}) if args.format else None
    async for event in cli.client.events(since=since, until=until, filters=parse_filters(args.filter)):
        if template is not None:
            doc = {"Type": event.type, "Action": event.action, "Status": event.action, "ID": event.actor.id,
                   "From": event.actor.attributes.get("image", ""), "Scope": event.scope, "Time": event.time,
                   "TimeNano": event.time_nano,
                   "Actor": {"ID": event.actor.id, "Attributes": event.actor.attributes}}
            cli.write(template.render([doc]))
        else:
            attributes = ", ".join(f"{k}={v}" for k, v in sorted(event.actor.attributes.items()))
            when = _rfc3339_nano(event.time_nano or event.time * 1_000_000_000)
            cli.print(f"{when} {event.type} {event.action} {event.actor.id}"
                      + (f" ({attributes})" if attributes else ""))
        cli.out.flush()


def _configure_inspect(p: ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes if the type is container")
    p.add_argument("--type", choices=("container", "image"), help="Return JSON for specified type")
    p.add_argument("names", nargs="+", help="NAME|ID")


async def _inspect_one(cli: Cli, name: str, kind: str | None, size: bool) -> dict[str, Any]:
    if kind in (None, "container"):
        try:
            return (await cli.client.inspect_container(name, size=size)).raw
        except NotFoundError:
            if kind == "container":
                raise CommandError(f"Error: No such container: {name}") from None
    try:
        return (await cli.client.inspect_image(name)).raw
    except NotFoundError:
        raise CommandError(f"Error: No such {'image' if kind else 'object'}: {name}") from None


async def inspect_all(cli: Cli, names: Sequence[str], fetch: Callable[[str], Awaitable[dict[str, Any]]],
                      template: str | None) -> None:
    """docker's ``inspect`` output for every name: a JSON array, or ``template`` per document; a name that
    fails is one line on stderr and the exit code 1, after the others are printed."""
    docs = []
    failed = False
    for name in names:
        try:
            docs.append(await fetch(name))
        except CommandError as exc:
            cli.warn(exc.message)
            failed = True
        except APIError as exc:
            cli.warn(describe(exc))
            failed = True
    if template:
        cli.write(render_items(template, [Fields(doc, aliases=_INSPECT_ALIASES) for doc in docs]))
    else:
        cli.print(json.dumps(docs, indent=4, ensure_ascii=False))
    if failed:
        raise ExitCode(1)


async def _inspect(cli: Cli, args: argparse.Namespace, kind: str | None) -> None:
    await inspect_all(cli, args.names, lambda name: _inspect_one(cli, name, kind, getattr(args, "size", False)),
                      args.format)


async def inspect(cli: Cli, args: argparse.Namespace) -> None:
    await _inspect(cli, args, args.type)


async def container_inspect(cli: Cli, args: argparse.Namespace) -> None:
    await _inspect(cli, args, "container")


async def image_inspect(cli: Cli, args: argparse.Namespace) -> None:
    await _inspect(cli, args, "image")


def _configure_typed_inspect(p: ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("names", nargs="+", help="NAME|ID")


def _configure_df(p: ArgumentParser) -> None:
    p.add_argument("--format", help="Format output using a custom template")


def _reclaimable(size: int, total: int) -> str:
    percent = int(size * 100 / total) if total else 0
    return f"{human_size(size, 3)} ({percent}%)"


async def system_df(cli: Cli, args: argparse.Namespace) -> None:
    doc = await cli.client.disk_usage()
    images = [i for i in doc.get("Images") or [] if isinstance(i, dict)]
    containers = [c for c in doc.get("Containers") or [] if isinstance(c, dict)]
    volumes = [v for v in doc.get("Volumes") or [] if isinstance(v, dict)]
    cache = [b for b in doc.get("BuildCache") or [] if isinstance(b, dict)]
    image_size = sum(int(i.get("Size") or 0) for i in images)
    unused_images = sum(int(i.get("Size") or 0) for i in images if not i.get("Containers"))
    container_size = sum(int(c.get("SizeRw") or 0) for c in containers)
    stopped_size = sum(int(c.get("SizeRw") or 0) for c in containers if c.get("State") != "running")
    volume_size = sum(int((v.get("UsageData") or {}).get("Size") or 0) for v in volumes)
    unused_volumes = sum(int((v.get("UsageData") or {}).get("Size") or 0) for v in volumes
                         if not (v.get("UsageData") or {}).get("RefCount"))
    cache_size = sum(int(b.get("Size") or 0) for b in cache)
    rows = [
        {"Type": "Images", "TotalCount": str(len(images)),
         "Active": str(sum(1 for i in images if i.get("Containers"))), "Size": human_size(image_size, 3),
         "Reclaimable": _reclaimable(unused_images, image_size)},
        {"Type": "Containers", "TotalCount": str(len(containers)),
         "Active": str(sum(1 for c in containers if c.get("State") == "running")),
         "Size": human_size(container_size, 3), "Reclaimable": _reclaimable(stopped_size, container_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(volumes)),
         "Active": str(sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount"))),
         "Size": human_size(volume_size, 3), "Reclaimable": _reclaimable(unused_volumes, volume_size)},
        {"Type": "Build Cache", "TotalCount": str(len(cache)), "Active": "0", "Size": human_size(cache_size, 3),
         "Reclaimable": human_size(cache_size, 3)},
    ]
    headers = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}
    default = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    cli.write(Formatter(args.format, default, headers).render(rows))


def _configure_system_prune(p: ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes (none in berth yet)")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'label=<key>=<value>')")


async def system_prune(cli: Cli, args: argparse.Namespace) -> None:
    warning = ("WARNING! This will remove:\n  - all stopped containers\n"
               + ("  - all images without at least one container associated to them"
                  if args.all else "  - all dangling images"))
    if not args.force and not confirm(cli, warning):
        return
    filters = parse_filters(args.filter)
    if "until" in filters and len(filters) > 1 and "label" not in filters:
        raise UsageError("system prune accepts only the until and label filters")
    containers = await cli.client.prune_containers(filters=filters)
    image_filters = {**filters, **({} if args.all else {"dangling": ["true"]})}
    images = await cli.client.prune_images(filters=image_filters)
    if containers.deleted:
        cli.print("Deleted Containers:")
        for cid in containers.deleted:
            cli.print(cid)
        cli.print()
    if images.deleted:
        cli.print("Deleted Images:")
        for item in images.deleted:
            cli.print(f"untagged: {item.untagged}" if item.untagged else f"deleted: {item.deleted}")
        cli.print()
    cli.print(f"Total reclaimed space: {human_size(containers.space_reclaimed + images.space_reclaimed, 3)}")


COMMANDS = {
    "version": Command("Show the Berth version information", _configure_version, version),
    "info": Command("Display system-wide information", _configure_info, info),
    "events": Command("Get real time events from the server", _configure_events, events),
    "inspect": Command("Return low-level information on Berth objects", _configure_inspect, inspect),
    "container_inspect": Command("Display detailed information on one or more containers", _configure_inspect,
                                 container_inspect),
    "image_inspect": Command("Display detailed information on one or more images", _configure_typed_inspect,
                             image_inspect),
    "system_df": Command("Show Berth disk usage", _configure_df, system_df),
    "system_prune": Command("Remove unused data", _configure_system_prune, system_prune),
}
