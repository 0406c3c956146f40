"""Swarm verbs: swarm init, join, join-token, leave; service ls, ps, logs, scale, rm, inspect; node ls (docker's
output), over backend.api."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from backend.api.client import EngineClient
from backend.api.errors import APIError
from backend.api.swarm_types import Service, Task
from backend.cli.context import ArgumentParser, Cli, Command, ExitCode, UsageError, describe
from backend.cli.formatting import Formatter
from backend.cli.images import parse_filters
from backend.cli.system import inspect_all

_SERVICE_HEADERS = {"ID": "ID", "Name": "NAME", "Mode": "MODE", "Replicas": "REPLICAS", "Image": "IMAGE",
                    "Ports": "PORTS"}
_TASK_HEADERS = {"ID": "ID", "Name": "NAME", "Image": "IMAGE", "Node": "NODE", "DesiredState": "DESIRED STATE",
                 "CurrentState": "CURRENT STATE", "Error": "ERROR", "Ports": "PORTS"}
_NODE_HEADERS = {"ID": "ID", "Hostname": "HOSTNAME", "Status": "STATUS", "Availability": "AVAILABILITY",
                 "ManagerStatus": "MANAGER STATUS", "EngineVersion": "ENGINE VERSION"}


def _ports(service: Service) -> str:
    ports = (service.raw.get("Endpoint") or {}).get("Ports") or []
    return ", ".join(f"*:{p.get('PublishedPort')}->{p.get('TargetPort')}/{p.get('Protocol', 'tcp')}" for p in ports)


def service_rows(services: Sequence[Service]) -> list[dict[str, Any]]:
    """``service ls`` rows."""
    return [{"ID": s.id[:12], "Name": s.name, "Mode": s.mode,
             "Replicas": f"{s.running}/{s.desired}",
             "Image": s.image, "Ports": _ports(s)} for s in sorted(services, key=lambda s: s.name)]


async def task_rows(client: EngineClient, tasks: Sequence[Task], services: Sequence[Service]) -> list[dict[str, Any]]:
    """``service ps`` / ``stack ps`` rows: tasks by service name and slot, newest first within a slot."""
    names = {s.id: s.name for s in services}
    nodes = {n.id: n.hostname for n in await client.list_nodes()}
    rows = []
    for task in sorted(tasks, key=lambda t: (names.get(t.service_id, ""), t.slot or t.node_id, t.updated_at)):
        slot = str(task.slot) if task.slot else task.node_id
        rows.append({"ID": task.id[:12], "Name": f"{names.get(task.service_id, task.service_id)}.{slot}",
                     "Image": task.image, "Node": nodes.get(task.node_id, task.node_id[:12]),
                     "DesiredState": task.desired_state.capitalize(), "CurrentState": task.state.capitalize(),
                     "Error": task.error, "Ports": ""})
    return rows


async def _services(client: EngineClient, names: Sequence[str]) -> list[Service]:
    """The services ``names`` (by name or ID). Raises the engine's NotFound."""
    return [await client.inspect_service(name) for name in names]


def _configure_ls(p: ArgumentParser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Pretty-print services using a Go template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display IDs")


async def ls(cli: Cli, args: argparse.Namespace) -> None:
    services = await cli.client.list_services(filters=parse_filters(args.filter))
    if args.quiet:
        for service in services:
            cli.print(service.id)
        return
    cli.write(Formatter(args.format, "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}",
                        _SERVICE_HEADERS).render(service_rows(services)))


def _configure_ps(p: ArgumentParser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Pretty-print tasks using a Go template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display task IDs")
    p.add_argument("services", nargs="+", help="SERVICE")


TASK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}"


async def print_tasks(cli: Cli, services: Sequence[Service], filters: list[str], template: str | None,
                      quiet: bool) -> None:
    """The tasks of ``services`` as ``service ps`` prints them."""
    client = cli.client
    wanted = parse_filters(filters) or {}
    tasks = [t for s in services for t in await client.list_tasks(filters={**wanted, "service": [s.id]})]
    if quiet:
        for task in tasks:
            cli.print(task.id)
        return
    cli.write(Formatter(template, TASK_TABLE, _TASK_HEADERS).render(await task_rows(client, tasks, services)))


async def ps(cli: Cli, args: argparse.Namespace) -> None:
    await print_tasks(cli, await _services(cli.client, args.services), args.filter, args.format, args.quiet)


def _configure_logs(p: ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--tail", default="all", help="Number of lines to show from the end of the logs")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("service", help="SERVICE")


async def logs(cli: Cli, args: argparse.Namespace) -> None:
    cli.out.flush()
    async for stream, data in cli.client.service_logs(args.service, follow=args.follow, tail=args.tail,
                                                      timestamps=args.timestamps):
        target = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
        target.write(data)
        target.flush()


def _configure_scale(p: ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="Exit immediately (the only behaviour here)")
    p.add_argument("pairs", nargs="+", help="SERVICE=REPLICAS")


async def scale(cli: Cli, args: argparse.Namespace) -> None:
    failed = False
    for pair in args.pairs:
        name, sep, count = pair.partition("=")
        if not sep or not name or not count.isdigit():
            raise UsageError(f"invalid scale specifier '{pair}': expected SERVICE=REPLICAS")
        try:
            service = await cli.client.inspect_service(name)
            if service.mode != "replicated":
                raise UsageError(f"scale can only be used with replicated mode ({name} is {service.mode})")
            spec = {**service.spec, "Mode": {"Replicated": {"Replicas": int(count)}}}
            await cli.client.update_service(service.id, service.version, spec)
            cli.print(f"{name} scaled to {int(count)}")
        except APIError as exc:
            cli.warn(describe(exc))
            failed = True
    if failed:
        raise ExitCode(1)


def _configure_rm(p: ArgumentParser) -> None:
    p.add_argument("services", nargs="+", help="SERVICE")


async def rm(cli: Cli, args: argparse.Namespace) -> None:
    failed = False
    for name in args.services:
        try:
            await cli.client.remove_service(name)
            cli.print(name)
        except APIError as exc:
            cli.warn(describe(exc))
            failed = True
    if failed:
        raise ExitCode(1)


def _configure_inspect(p: ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("services", nargs="+", help="SERVICE")


async def inspect(cli: Cli, args: argparse.Namespace) -> None:
    async def fetch(name: str) -> dict[str, Any]:
        return (await cli.client.inspect_service(name)).raw

    await inspect_all(cli, args.services, fetch, args.format)


def _configure_node_ls(p: ArgumentParser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions provided")
    p.add_argument("--format", help="Pretty-print nodes using a Go template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display IDs")


async def node_ls(cli: Cli, args: argparse.Namespace) -> None:
    nodes = await cli.client.list_nodes(filters=parse_filters(args.filter))
    if args.quiet:
        for node in nodes:
            cli.print(node.id)
        return
    me = ((await cli.client.info()).raw.get("Swarm") or {}).get("NodeID", "")
    rows = [{"ID": f"{n.id} *" if n.id == me else n.id, "Hostname": n.hostname, "Status": n.state.capitalize(),
             "Availability": n.availability.capitalize(),
             "ManagerStatus": "Leader" if n.leader else n.manager_reachability.capitalize(),
             "EngineVersion": n.engine_version} for n in sorted(nodes, key=lambda n: n.hostname)]
    cli.write(Formatter(args.format, "table {{.ID}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t"
                        "{{.ManagerStatus}}\t{{.EngineVersion}}", _NODE_HEADERS).render(rows))


def _configure_swarm_init(p: ArgumentParser) -> None:
    p.add_argument("--advertise-addr", required=True, help="Advertised address (format: <ip>[:port])")
    p.add_argument("--listen-addr", default="0.0.0.0:2377", help="Listen address (format: <ip>[:port])")
    p.add_argument("--default-addr-pool", action="append", default=[], help="Address pools of overlay networks")


async def swarm_init(cli: Cli, args: argparse.Namespace) -> None:
    node = await cli.client.swarm_init(args.advertise_addr, listen_addr=args.listen_addr,
                                       default_addr_pool=args.default_addr_pool)
    cli.print(f"Swarm initialized: current node ({node}) is now a manager.")
    cli.print(f"To add a worker: berth swarm join --token {(await cli.client.swarm_inspect()).worker_token} "
              f"{args.advertise_addr.split(':')[0]}:2377")


def _configure_swarm_join(p: ArgumentParser) -> None:
    p.add_argument("--token", required=True, help="Token for entry into the swarm")
    p.add_argument("--advertise-addr", default="", help="Advertised address (format: <ip>[:port])")
    p.add_argument("--listen-addr", default="0.0.0.0:2377", help="Listen address (format: <ip>[:port])")
    p.add_argument("remote", help="HOST:PORT of a manager")


async def swarm_join(cli: Cli, args: argparse.Namespace) -> None:
    await cli.client.swarm_join(args.remote, args.token, advertise_addr=args.advertise_addr,
                                listen_addr=args.listen_addr)
    cli.print("This node joined a swarm.")


def _configure_join_token(p: ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="Only display token")
    p.add_argument("role", choices=("worker", "manager"), help="worker or manager")


async def join_token(cli: Cli, args: argparse.Namespace) -> None:
    swarm = await cli.client.swarm_inspect()
    token = swarm.worker_token if args.role == "worker" else swarm.manager_token
    cli.print(token if args.quiet else f"To add a {args.role} to this swarm: berth swarm join --token {token}")


def _configure_swarm_leave(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Leave even as the last manager")


async def swarm_leave(cli: Cli, args: argparse.Namespace) -> None:
    await cli.client.swarm_leave(force=args.force)
    cli.print("Node left the swarm.")


COMMANDS = {
    "swarm_init": Command("Initialize a swarm", _configure_swarm_init, swarm_init),
    "swarm_join": Command("Join a swarm as a node and/or manager", _configure_swarm_join, swarm_join),
    "swarm_join-token": Command("Manage join tokens", _configure_join_token, join_token),
    "swarm_leave": Command("Leave the swarm", _configure_swarm_leave, swarm_leave),
    "service_ls": Command("List services", _configure_ls, ls),
    "service_ps": Command("List the tasks of one or more services", _configure_ps, ps),
    "service_logs": Command("Fetch the logs of a service", _configure_logs, logs),
    "service_scale": Command("Scale one or multiple replicated services", _configure_scale, scale),
    "service_rm": Command("Remove one or more services", _configure_rm, rm),
    "service_inspect": Command("Display detailed information on one or more services", _configure_inspect, inspect),
    "node_ls": Command("List nodes in the swarm", _configure_node_ls, node_ls),
}
