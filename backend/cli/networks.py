"""Network verbs: network create, ls, inspect, rm, connect, disconnect, prune (docker's flags and output)."""

from __future__ import annotations

import argparse
from typing import Any

from backend.api.errors import APIError, NotFoundError
from backend.cli.context import ArgumentParser, Cli, Command, ExitCode, UsageError, describe
from backend.cli.formatting import Fields, Formatter, label_method, short_id
from backend.cli.images import confirm, parse_filters
from backend.cli.system import inspect_all
from backend.cli.volumes import parse_pairs

_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
            "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED"}


def _configure_create(p: ArgumentParser) -> None:
    p.add_argument("-d", "--driver", default="bridge", help="Driver to manage the Network")
    p.add_argument("--subnet", default="", help="Subnet in CIDR format that represents a network segment")
    p.add_argument("--gateway", default="", help="IPv4 Gateway for the master subnet")
    p.add_argument("--ip-range", default="", help="Allocate container ip from a sub-range")
    p.add_argument("--internal", action="store_true", help="Restrict external access to the network")
    p.add_argument("--attachable", action="store_true", help="Enable manual container attachment")
    p.add_argument("--label", action="append", default=[], help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    p.add_argument("name", help="NETWORK")


async def create(cli: Cli, args: argparse.Namespace) -> None:
    if (args.gateway or args.ip_range) and not args.subnet:
        raise UsageError("every ip-range or gateway must have a corresponding subnet")
    cli.print(await cli.client.create_network(
        args.name, driver=args.driver, subnet=args.subnet, gateway=args.gateway, ip_range=args.ip_range,
        internal=args.internal, attachable=args.attachable, labels=parse_pairs(args.label, "--label", False),
        options=parse_pairs(args.opt, "--opt", False)))


def _configure_ls(p: ArgumentParser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values (e.g. 'driver=bridge')")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")


async def ls(cli: Cli, args: argparse.Namespace) -> None:
    networks = await cli.client.list_networks(filters=parse_filters(args.filter))
    rows = [Fields({"ID": n.id if args.no_trunc else short_id(n.id), "Name": n.name, "Driver": n.driver,
                    "Scope": n.scope, "IPv6": str(n.enable_ipv6).lower(), "Internal": str(n.internal).lower(),
                    "CreatedAt": n.created, "Labels": ",".join(f"{k}={v}" for k, v in n.labels.items())},
                   methods={"Label": label_method(n.labels)}) for n in networks]
    if args.quiet:
        for row in rows:
            cli.print(row["ID"])
        return
    cli.write(Formatter(args.format, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", _HEADERS).render(rows))


def _configure_inspect(p: ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("names", nargs="+", help="NETWORK")


async def inspect(cli: Cli, args: argparse.Namespace) -> None:
    async def fetch(name: str) -> dict[str, Any]:
        return (await cli.client.inspect_network(name)).raw

    await inspect_all(cli, args.names, fetch, args.format)


def _configure_rm(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Do not error if the network does not exist")
    p.add_argument("names", nargs="+", help="NETWORK")


async def rm(cli: Cli, args: argparse.Namespace) -> None:
    failed = False
    for name in args.names:
        try:
            await cli.client.remove_network(name)
            cli.print(name)
        except NotFoundError as exc:
            if not args.force:
                cli.warn(describe(exc))
                failed = True
        except APIError as exc:
            cli.warn(describe(exc))
            failed = True
    if failed:
        raise ExitCode(1)


def _configure_connect(p: ArgumentParser) -> None:
    p.add_argument("--alias", action="append", default=[], help="Add network-scoped alias for the container")
    p.add_argument("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
    p.add_argument("network", help="NETWORK")
    p.add_argument("container", help="CONTAINER")


async def connect(cli: Cli, args: argparse.Namespace) -> None:
    await cli.client.connect_network(args.network, args.container, aliases=args.alias, ipv4=args.ip)


def _configure_disconnect(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Force the container to disconnect from a network")
    p.add_argument("network", help="NETWORK")
    p.add_argument("container", help="CONTAINER")


async def disconnect(cli: Cli, args: argparse.Namespace) -> None:
    await cli.client.disconnect_network(args.network, args.container, force=args.force)


def _configure_prune(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'until=<timestamp>')")


async def prune(cli: Cli, args: argparse.Namespace) -> None:
    if not args.force and not confirm(cli, "WARNING! This will remove all custom networks not used by at least one "
                                           "container."):
        return
    report = await cli.client.prune_networks(filters=parse_filters(args.filter))
    if report.deleted:
        cli.print("Deleted Networks:\n" + "".join(name + "\n" for name in report.deleted))


COMMANDS = {
    "network_create": Command("Create a network", _configure_create, create),
    "network_ls": Command("List networks", _configure_ls, ls),
    "network_inspect": Command("Display detailed information on one or more networks", _configure_inspect, inspect),
    "network_rm": Command("Remove one or more networks", _configure_rm, rm),
    "network_connect": Command("Connect a container to a network", _configure_connect, connect),
    "network_disconnect": Command("Disconnect a container from a network", _configure_disconnect, disconnect),
    "network_prune": Command("Remove all unused networks", _configure_prune, prune),
}
