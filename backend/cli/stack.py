"""Stack verbs: stack deploy, ls, ps, rm (a Compose file on a swarm; backend/compose/swarm.py)."""

from __future__ import annotations

import argparse

from backend.cli.context import ArgumentParser, Cli, Command, CommandError, ExitCode
from backend.cli.formatting import Formatter
from backend.cli.service import print_tasks
from backend.compose.model import ComposeError, load_project
from backend.compose.swarm import deploy_stack, list_stacks, remove_stack, stack_services


def _configure_deploy(p: ArgumentParser) -> None:
    p.add_argument("-c", "--compose-file", action="append", required=True, help="Path to a Compose file")
    p.add_argument("--prune", action="store_true", help="Prune services that are no longer referenced")
    p.add_argument("name", help="STACK")


async def deploy(cli: Cli, args: argparse.Namespace) -> None:
    try:
        project = load_project(args.compose_file, project_name=args.name)
        await deploy_stack(cli.client, project, project.name, prune=args.prune, progress=cli.print)
    except ComposeError as exc:
        raise CommandError(str(exc)) from None


def _configure_ls(p: ArgumentParser) -> None:
    p.add_argument("--format", help="Pretty-print stacks using a Go template")


async def ls(cli: Cli, args: argparse.Namespace) -> None:
    rows = [{"Name": s.name, "Services": str(s.services)} for s in await list_stacks(cli.client)]
    cli.write(Formatter(args.format, "table {{.Name}}\t{{.Services}}", {"Name": "NAME", "Services": "SERVICES"}
                        ).render(rows))


def _configure_ps(p: ArgumentParser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Pretty-print tasks using a Go template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display task IDs")
    p.add_argument("name", help="STACK")


async def ps(cli: Cli, args: argparse.Namespace) -> None:
    services = await stack_services(cli.client, args.name)
    if not services:
        raise CommandError(f"nothing found in stack: {args.name}")
    await print_tasks(cli, services, args.filter, args.format, args.quiet)


def _configure_rm(p: ArgumentParser) -> None:
    p.add_argument("names", nargs="+", help="STACK")


async def rm(cli: Cli, args: argparse.Namespace) -> None:
    failed = False
    for name in args.names:
        if not await remove_stack(cli.client, name, progress=cli.print):
            cli.warn(f"Nothing found in stack: {name}")
            failed = True
    if failed:
        raise ExitCode(1)


COMMANDS = {
    "stack_deploy": Command("Deploy a new stack or update an existing stack", _configure_deploy, deploy),
    "stack_ls": Command("List stacks", _configure_ls, ls),
    "stack_ps": Command("List the tasks in the stack", _configure_ps, ps),
    "stack_rm": Command("Remove one or more stacks", _configure_rm, rm),
}
