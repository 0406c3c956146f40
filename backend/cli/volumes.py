"""Volume verbs: volume create, ls, inspect, rm, prune (docker's flags and output)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from backend.api.errors import APIError
from backend.cli.context import ArgumentParser, Cli, Command, ExitCode, UsageError, describe
from backend.cli.formatting import Fields, Formatter, human_size, label_method
from backend.cli.images import confirm, parse_filters
from backend.cli.system import inspect_all

_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Labels": "LABELS",
            "Scope": "SCOPE", "CreatedAt": "CREATED AT", "Links": "LINKS", "Size": "SIZE",
            "Availability": "AVAILABILITY", "Group": "GROUP", "Status": "STATUS"}


def parse_pairs(values: Iterable[str], flag: str, need_value: bool) -> dict[str, str]:
    """``key=value`` flag values (``--label key`` alone means an empty value). Raises UsageError."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key or (need_value and not sep):
            raise UsageError(f"invalid argument \"{item}\" for \"{flag}\" flag: expected key=value")
        out[key] = value
    return out


def _configure_create(p: ArgumentParser) -> None:
    p.add_argument("-d", "--driver", default="local", help="Specify volume driver name")
    p.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    p.add_argument("name", nargs="?", help="VOLUME")


async def create(cli: Cli, args: argparse.Namespace) -> None:
    volume = await cli.client.create_volume(args.name, driver=args.driver,
                                            labels=parse_pairs(args.label, "--label", False),
                                            options=parse_pairs(args.opt, "--opt", True))
    cli.print(volume.name)


def _configure_ls(p: ArgumentParser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values (e.g. 'dangling=true')")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")


async def ls(cli: Cli, args: argparse.Namespace) -> None:
    volumes = await cli.client.list_volumes(filters=parse_filters(args.filter))
    if args.quiet:
        for volume in volumes:
            cli.print(volume.name)
        return
    rows = [Fields({"Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint, "Scope": "local",
                    "CreatedAt": v.created_at, "Labels": ",".join(f"{k}={val}" for k, val in v.labels.items()),
                    "Links": "N/A", "Size": "N/A", "Availability": "N/A", "Group": "N/A", "Status": "N/A"},
                   methods={"Label": label_method(v.labels)})
            for v in volumes]
    cli.write(Formatter(args.format, "table {{.Driver}}\t{{.Name}}", _HEADERS).render(rows))


def _configure_inspect(p: ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("names", nargs="+", help="VOLUME")


async def inspect(cli: Cli, args: argparse.Namespace) -> None:
    async def fetch(name: str) -> dict[str, Any]:
        return (await cli.client.inspect_volume(name)).raw

    await inspect_all(cli, args.names, fetch, args.format)


def _configure_rm(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of one or more volumes")
    p.add_argument("names", nargs="+", help="VOLUME")


async def rm(cli: Cli, args: argparse.Namespace) -> None:
    failed = False
    for name in args.names:
        try:
            await cli.client.remove_volume(name, force=args.force)
            cli.print(name)
        except APIError as exc:
            cli.warn(describe(exc))
            failed = True
    if failed:
        raise ExitCode(1)


def _configure_prune(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'label=<label>')")


async def prune(cli: Cli, args: argparse.Namespace) -> None:
    if not args.force and not confirm(cli, "WARNING! This will remove all local volumes not used by at least one "
                                           "container."):
        return
    report = await cli.client.prune_volumes(filters=parse_filters(args.filter))
    if report.deleted:
        cli.print("Deleted Volumes:")
        for name in report.deleted:
            cli.print(name)
        cli.print()
    cli.print(f"Total reclaimed space: {human_size(report.space_reclaimed, 3)}")


COMMANDS = {
    "volume_create": Command("Create a volume", _configure_create, create),
    "volume_ls": Command("List volumes", _configure_ls, ls),
    "volume_inspect": Command("Display detailed information on one or more volumes", _configure_inspect, inspect),
    "volume_rm": Command("Remove one or more volumes", _configure_rm, rm),
    "volume_prune": Command("Remove all unused local volumes", _configure_prune, prune),
}
