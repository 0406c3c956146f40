"""``berth compose``: Compose projects (:mod:`backend.compose`) from the command line.

``berth compose [-f FILE]... [-p NAME] [--profile P]... [--env-file F] [--project-directory D] COMMAND``.
The project is loaded (interpolated, merged, validated) by :func:`backend.compose.model.load_project`; a
file it refuses is one line on stderr and exit 1, and nothing is changed. Progress lines
(``Container p-web-1  Started``) go to stderr, command output to stdout, as Docker Compose does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.api.errors import APIError, NotFoundError
from backend.api.types import ContainerSummary
from backend.cli.containers import format_ports, ps_row, run_attached
from backend.cli.context import ArgumentParser, Cli, Command, CommandError, ExitCode, UsageError, describe
from backend.cli.formatting import Formatter, go_quote, human_size, short_id, tabwrite
from backend.cli.images import ProgressView
from backend.cli.terminal import raw_terminal, relay
from backend.compose.config import project_yaml, service_names, volume_names
from backend.compose.model import ComposeError, Project, load_project
from backend.compose.project import (
    LABEL_CONFIG_FILES,
    LABEL_SERVICE,
    Orchestrator,
    UpOptions,
    container_name,
    container_number,
    list_projects,
)
from backend.version import VERSION

_COLOURS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)


def _env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (comments and blank lines skipped). Raises UsageError."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise UsageError(f"couldn't read env file {path}: {exc.strerror}") from None
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key.strip()] = value.strip().strip("\"'")
    return values


def _project(args: argparse.Namespace) -> Project:
    environment = {**_env_file(args.env_file), **os.environ} if args.env_file else None
    try:
        return load_project(args.file, project_name=args.project_name, environment=environment,
                            working_dir=args.project_directory, profiles=args.profile)
    except ComposeError as exc:
        raise CommandError(str(exc)) from None


class _Output:
    """Progress on stderr: one line per resource change, build output as it comes, pull bars (rich)."""

    def __init__(self, cli: Cli) -> None:
        self._cli = cli
        self._progress: ProgressView | None = None

    def emit(self, line: str) -> None:
        self._cli.warn(f" \u2714 {line}" if self._cli.err.isatty() else line)

    def message(self, message: dict[str, Any]) -> None:
        text = message.get("stream")
        if isinstance(text, str):
            self._cli.err.write(text)
            self._cli.err.flush()
        elif message.get("status"):
            if self._progress is None:
                self._progress = ProgressView(self._cli.err)
            self._progress.show(message)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()


async def _with_orchestrator(cli: Cli, args: argparse.Namespace) -> tuple[Orchestrator, _Output]:
    output = _Output(cli)
    project = _project(args)
    for warning in project.warnings:
        cli.warn(warning)
    names = getattr(args, "services", None)
    if isinstance(names, list) and names:
        try:
            project = project.enable(names)
        except ComposeError as exc:
            raise CommandError(str(exc)) from None
    return Orchestrator(cli.client, project, output.emit), output


async def _guarded(cli: Cli, args: argparse.Namespace, work: Any) -> None:
    """Run ``work(orchestrator, output)``; Compose's own refusals become one line and exit 1."""
    orchestrator, output = await _with_orchestrator(cli, args)
    try:
        await work(orchestrator, output)
    except ComposeError as exc:
        raise CommandError(str(exc)) from None
    finally:
        output.close()


# -- up / down ---------------------------------------------------------------------------------------


def _scale(values: Sequence[str]) -> dict[str, int]:
    scale = {}
    for item in values:
        name, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            raise UsageError(f"invalid --scale value {item!r}: expected SERVICE=NUMBER")
        scale[name] = int(count)
    return scale


def _configure_up(p: ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run containers in the background")
    p.add_argument("--build", action="store_true", help="Build images before starting containers")
    p.add_argument("--no-build", action="store_true", help="Don't build an image, even if it's missing")
    p.add_argument("--pull", choices=("always", "missing", "never"), default="missing",
                   help="Pull image before running")
    p.add_argument("--scale", action="append", default=[], help="Scale SERVICE to NUM instances")
    p.add_argument("--wait", action="store_true", help="Wait for services to be running|healthy (implies -d)")
    p.add_argument("--remove-orphans", action="store_true", help="Remove containers for services not defined")
    p.add_argument("--force-recreate", action="store_true", help="Recreate containers even if unchanged")
    p.add_argument("--no-deps", action="store_true", help="Don't start linked services")
    p.add_argument("--no-start", action="store_true", help="Don't start the services after creating them")
    p.add_argument("services", nargs="*", help="SERVICE")


async def up(cli: Cli, args: argparse.Namespace) -> None:
    if args.build and args.no_build:
        raise UsageError("--build and --no-build are incompatible")
    options = UpOptions(services=args.services, build=args.build, no_build=args.no_build, pull=args.pull,
                        force_recreate=args.force_recreate, no_deps=args.no_deps, remove_orphans=args.remove_orphans,
                        scale=_scale(args.scale), wait=args.wait, start=not args.no_start)
    names: list[str] = []

    async def work(orchestrator: Orchestrator, output: _Output) -> None:
        names.extend(await orchestrator.up(options, output.message))
        if not (args.detach or args.wait or args.no_start):
            await _attached_up(cli, orchestrator, names)

    await _guarded(cli, args, work)


async def _attached_up(cli: Cli, orchestrator: Orchestrator, names: list[str]) -> None:
    """Stream the containers' logs until they all exit; Ctrl-C stops the project (a second one aborts)."""
    loop = asyncio.get_running_loop()
    streaming = asyncio.ensure_future(_stream_logs(cli, [await cli.client.inspect_container(n) for n in names],
                                                   follow=True, tail="all", timestamps=False, colour=True))
    loop.add_signal_handler(signal.SIGINT, streaming.cancel)
    try:
        await streaming
    except asyncio.CancelledError:
        cli.warn("Gracefully stopping... (press Ctrl+C again to force)")
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    await orchestrator.each([], cli.client.stop_container, "Stopped", reverse=True, all=False)


def _configure_down(p: ArgumentParser) -> None:
    p.add_argument("-v", "--volumes", action="store_true", help="Remove named volumes declared in the file")
    p.add_argument("--rmi", choices=("local", "all"), help="Remove images used by services")
    p.add_argument("--remove-orphans", action="store_true", help="Remove containers for services not defined")


async def down(cli: Cli, args: argparse.Namespace) -> None:
    async def work(orchestrator: Orchestrator, output: _Output) -> None:
        await orchestrator.down(volumes=args.volumes, remove_orphans=args.remove_orphans, rmi=args.rmi)

    await _guarded(cli, args, work)


# -- ps / logs / ls ----------------------------------------------------------------------------------

_PS_HEADERS = {"Name": "NAME", "Image": "IMAGE", "Command": "COMMAND", "Service": "SERVICE",
               "RunningFor": "CREATED", "Status": "STATUS", "Ports": "PORTS", "ID": "CONTAINER ID",
               "State": "STATE"}


def _configure_ps(p: ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="Show all stopped containers")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display IDs")
    p.add_argument("--format", help="Format the output: table, json or a Go template")
    p.add_argument("--services", action="store_true", help="Display services")
    p.add_argument("services_", nargs="*", metavar="SERVICE", help="SERVICE")


async def ps(cli: Cli, args: argparse.Namespace) -> None:
    orchestrator, _ = await _with_orchestrator(cli, args)
    containers = await orchestrator.containers(args.services_, all=args.all)
    if args.quiet or args.services:
        for c in containers:
            cli.print(c.labels.get(LABEL_SERVICE, "") if args.services else c.id)
        return
    now = time.time()
    rows = [{**ps_row(c, no_trunc=True, now=now), "Name": container_name(c), "Service": c.labels.get(LABEL_SERVICE),
             "Command": go_quote(c.command), "Ports": format_ports(c)} for c in containers]
    default = "table {{.Name}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}"
    cli.write(Formatter(args.format, default, _PS_HEADERS).render(rows))


async def _stream_logs(cli: Cli, containers: Sequence[Any], *, follow: bool, tail: str, timestamps: bool,
                       colour: bool) -> None:
    """Print the containers' logs prefixed as Compose v2 does: the container name padded to one more than the
    longest, then `` | `` (coloured on a tty unless ``colour`` is off). Without ``follow`` the lines are merged
    in time order; with it they are printed as they come."""
    width = max((len(c.name) for c in containers), default=0) + 1
    colour = colour and cli.out.isatty()
    prefixes = {}
    for index, c in enumerate(containers):
        text = f"{c.name:<{width}} | "
        prefixes[c.id] = f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{text}\x1b[0m" if colour else text
    collected: list[tuple[str, str]] = []

    async def one(container: Any) -> None:
        pending = b""
        async for _, data in cli.client.logs(container.id, tty=container.tty, follow=follow, tail=tail,
                                             timestamps=True):
            pending += data
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                stamp, _, text = raw.decode(errors="replace").partition(" ")
                line = f"{prefixes[container.id]}{stamp + ' ' if timestamps else ''}{text}"
                if follow:
                    cli.print(line)
                    cli.out.flush()
                else:
                    collected.append((stamp, line))

    await asyncio.gather(*(one(c) for c in containers))
    for _, line in sorted(collected, key=lambda item: item[0]):
        cli.print(line)


def _configure_logs(p: ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--tail", default="all", help="Number of lines to show from the end of the logs")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--no-color", action="store_true", help="Produce monochrome output")
    p.add_argument("services_", nargs="*", metavar="SERVICE", help="SERVICE")


async def logs(cli: Cli, args: argparse.Namespace) -> None:
    if args.tail != "all" and not args.tail.isdigit():
        raise UsageError(f"invalid value for --tail: {args.tail!r} (a number or 'all')")
    orchestrator, _ = await _with_orchestrator(cli, args)
    containers = [await cli.client.inspect_container(c.id) for c in await orchestrator.containers(args.services_)]
    await _stream_logs(cli, containers, follow=args.follow, tail=args.tail, timestamps=args.timestamps,
                       colour=not args.no_color)


_LS_HEADERS = {"Name": "NAME", "Status": "STATUS", "ConfigFiles": "CONFIG FILES"}


def _configure_ls(p: ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="Show all stopped Compose projects")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display project names")
    p.add_argument("--format", help="Format the output: table, json or a Go template")


def _project_status(containers: Sequence[ContainerSummary]) -> str:
    counts: dict[str, int] = {}
    for c in containers:
        counts[c.state] = counts.get(c.state, 0) + 1
    return ", ".join(f"{state}({count})" for state, count in sorted(counts.items()))


async def ls(cli: Cli, args: argparse.Namespace) -> None:
    rows = [{"Name": name, "Status": _project_status(containers),
             "ConfigFiles": containers[0].labels.get(LABEL_CONFIG_FILES, "")}
            for name, containers in (await list_projects(cli.client)).items()
            if args.all or any(c.state == "running" for c in containers)]
    if args.quiet:
        for row in rows:
            cli.print(row["Name"])
        return
    cli.write(Formatter(args.format, "table {{.Name}}\t{{.Status}}\t{{.ConfigFiles}}", _LS_HEADERS).render(rows))


# -- images ------------------------------------------------------------------------------------------


def _configure_services(p: ArgumentParser) -> None:
    p.add_argument("services", nargs="*", metavar="SERVICE", help="SERVICE")


def _configure_build(p: ArgumentParser) -> None:
    p.add_argument("--no-cache", action="store_true", help="Do not use cache when building the image")
    p.add_argument("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    _configure_services(p)


async def build(cli: Cli, args: argparse.Namespace) -> None:
    await _guarded(cli, args, lambda o, out: o.build(args.services, on_message=out.message, no_cache=args.no_cache,
                                                     pull=args.pull))


async def pull(cli: Cli, args: argparse.Namespace) -> None:
    await _guarded(cli, args, lambda o, out: o.pull(args.services, on_message=out.message))


async def push(cli: Cli, args: argparse.Namespace) -> None:
    await _guarded(cli, args, lambda o, out: o.push(args.services, on_message=out.message))


async def images(cli: Cli, args: argparse.Namespace) -> None:
    orchestrator, _ = await _with_orchestrator(cli, args)
    lines = ["CONTAINER\tREPOSITORY\tTAG\tIMAGE ID\tSIZE"]
    for c in await orchestrator.containers(args.services):
        repo, _, tag = c.image.rpartition(":") if ":" in c.image.rsplit("/", 1)[-1] else (c.image, "", "latest")
        try:
            size = human_size((await cli.client.inspect_image(c.image_id)).raw.get("Size", 0), 3)
        except NotFoundError:
            size = ""
        lines.append(f"{container_name(c)}\t{repo}\t{tag}\t{short_id(c.image_id)}\t{size}")
    cli.write(tabwrite(lines))


# -- lifecycle ---------------------------------------------------------------------------------------


def _configure_timeout(p: ArgumentParser) -> None:
    p.add_argument("-t", "--timeout", type=int, help="Specify a shutdown timeout in seconds")
    _configure_services(p)


async def start(cli: Cli, args: argparse.Namespace) -> None:
    await _guarded(cli, args, lambda o, out: o.each(args.services, cli.client.start_container, "Started"))


async def stop(cli: Cli, args: argparse.Namespace) -> None:
    async def action(ref: str) -> None:
        await cli.client.stop_container(ref, timeout=args.timeout)

    await _guarded(cli, args, lambda o, out: o.each(args.services, action, "Stopped", reverse=True, all=False))


async def restart(cli: Cli, args: argparse.Namespace) -> None:
    async def action(ref: str) -> None:
        await cli.client.restart_container(ref, timeout=args.timeout)

    await _guarded(cli, args, lambda o, out: o.each(args.services, action, "Restarted"))


async def pause(cli: Cli, args: argparse.Namespace) -> None:
    await _guarded(cli, args, lambda o, out: o.each(args.services, cli.client.pause_container, "Paused", all=False))


async def unpause(cli: Cli, args: argparse.Namespace) -> None:
    await _guarded(cli, args, lambda o, out: o.each(args.services, cli.client.unpause_container, "Unpaused"))


def _configure_kill(p: ArgumentParser) -> None:
    p.add_argument("-s", "--signal", default="SIGKILL", help="SIGNAL to send to the container")
    _configure_services(p)


async def kill(cli: Cli, args: argparse.Namespace) -> None:
    async def action(ref: str) -> None:
        await cli.client.kill_container(ref, args.signal)

    await _guarded(cli, args, lambda o, out: o.each(args.services, action, "Killed", all=False))


def _configure_rm(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Don't ask to confirm removal")
    p.add_argument("-s", "--stop", action="store_true", help="Stop the containers, if required, before removing")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove any anonymous volumes attached")
    _configure_services(p)


async def rm(cli: Cli, args: argparse.Namespace) -> None:
    async def work(orchestrator: Orchestrator, output: _Output) -> None:
        containers = await orchestrator.containers(args.services)
        running = [c for c in containers if c.state in ("running", "paused", "restarting")]
        if running and not args.stop:
            containers = [c for c in containers if c not in running]
        if not containers:
            cli.warn("No stopped containers")
            return
        for c in containers:
            await cli.client.remove_container(c.id, force=True, volumes=args.volumes)
            output.emit(f"Container {container_name(c)}  Removed")

    await _guarded(cli, args, work)


async def top(cli: Cli, args: argparse.Namespace) -> None:
    orchestrator, _ = await _with_orchestrator(cli, args)
    for c in await orchestrator.containers(args.services, all=False):
        result = await cli.client.top(c.id)
        cli.print(container_name(c))
        cli.write(tabwrite(["\t".join(result.titles), *("\t".join(row) for row in result.processes)]))
        cli.print()


def _configure_port(p: ArgumentParser) -> None:
    p.add_argument("--index", type=int, default=1, help="Index of the container if service has multiple replicas")
    p.add_argument("--protocol", default="tcp", choices=("tcp", "udp", "sctp"), help="tcp or udp")
    p.add_argument("service", help="SERVICE")
    p.add_argument("private_port", type=int, help="PRIVATE_PORT")


async def _service_container(orchestrator: Orchestrator, service: str, index: int) -> ContainerSummary:
    orchestrator.project.service(service)
    for c in await orchestrator.containers([service], all=False):
        if container_number(c) == index:
            return c
    raise CommandError(f"service {service!r} is not running (no container with index {index})")


async def port(cli: Cli, args: argparse.Namespace) -> None:
    async def work(orchestrator: Orchestrator, output: _Output) -> None:
        container = await _service_container(orchestrator, args.service, args.index)
        for p in container.ports:
            if p.private_port == args.private_port and p.type == args.protocol and p.public_port:
                cli.print(f"{p.ip or '0.0.0.0'}:{p.public_port}")
                return
        raise CommandError(f"no port {args.private_port}/{args.protocol} published for {args.service}")

    await _guarded(cli, args, work)


# -- exec / run --------------------------------------------------------------------------------------


def _configure_exec(p: ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: Run command in the background")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true", help="Disable pseudo-TTY allocation")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("-u", "--user", default="", help="Run the command as this user")
    p.add_argument("-w", "--workdir", default="", help="Path to workdir directory for this command")
    p.add_argument("--index", type=int, default=1, help="Index of the container if service has multiple replicas")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to the process")
    p.add_argument("service", help="SERVICE")
    p.add_argument("command", nargs=argparse.REMAINDER, help="COMMAND [ARGS...]")


async def exec_(cli: Cli, args: argparse.Namespace) -> None:
    if not args.command:
        raise UsageError("exec requires a SERVICE and a COMMAND")
    tty = not args.no_tty and sys.stdin.isatty()
    container = ""

    async def find(orchestrator: Orchestrator, output: _Output) -> None:
        nonlocal container
        container = (await _service_container(orchestrator, args.service, args.index)).id

    await _guarded(cli, args, find)
    client = cli.client
    exec_id = await client.exec_create(container, args.command, tty=tty, stdin=not args.detach,
                                       stdout=not args.detach, stderr=not args.detach, env=args.env,
                                       user=args.user, workdir=args.workdir, privileged=args.privileged)
    if args.detach:
        await client.exec_start_detached(exec_id)
        return
    conn = await client.exec_attach(exec_id, tty=tty)
    try:
        with raw_terminal(sys.stdin.fileno(), tty):
            await relay(conn, tty=tty, stdin=True)
    finally:
        conn.close()
    for _ in range(50):
        result = await client.exec_inspect(exec_id)
        if not result.running:
            break
        await asyncio.sleep(0.05)
    if result.exit_code:
        raise ExitCode(result.exit_code)


def _configure_run(p: ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="Run container in background and print container ID")
    p.add_argument("--rm", action="store_true", help="Automatically remove the container when it exits")
    p.add_argument("--name", help="Assign a name to the container")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true", help="Disable pseudo-TTY allocation")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("-u", "--user", help="Run as specified username or uid")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("--entrypoint", help="Override the entrypoint of the image")
    p.add_argument("--no-deps", action="store_true", help="Don't start linked services")
    p.add_argument("--service-ports", action="store_true", help="Run with the service's ports published")
    p.add_argument("service", help="SERVICE")
    p.add_argument("command", nargs=argparse.REMAINDER, help="COMMAND [ARGS...]")


async def run(cli: Cli, args: argparse.Namespace) -> None:
    tty = not args.no_tty and sys.stdin.isatty() and not args.detach
    stdin = not args.detach
    name = ""

    async def create(orchestrator: Orchestrator, output: _Output) -> None:
        nonlocal name
        name = await orchestrator.run_oneoff(
            args.service, args.command, environment=args.env, user=args.user, workdir=args.workdir,
            entrypoint=[args.entrypoint] if args.entrypoint is not None else None, name=args.name,
            no_deps=args.no_deps, tty=tty, stdin=stdin, remove_ports=not args.service_ports, auto_remove=args.rm)

    await _guarded(cli, args, create)
    if args.detach:
        await cli.client.start_container(name)
        cli.print(name)
        return
    code = await run_attached(cli, name, tty=tty, stdin=stdin, stdout=True, stderr=True,
                           condition="removed" if args.rm else "next-exit", start=True, sig_proxy=True)
    if code:
        raise ExitCode(code)


# -- config / version --------------------------------------------------------------------------------


def _configure_config(p: ArgumentParser) -> None:
    p.add_argument("--services", action="store_true", help="Print the service names, one per line")
    p.add_argument("--volumes", action="store_true", help="Print the volume names, one per line")
    p.add_argument("-q", "--quiet", action="store_true", help="Only validate the configuration")


async def config(cli: Cli, args: argparse.Namespace) -> None:
    project = _project(args)
    if args.quiet:
        return
    if args.services or args.volumes:
        for name in (service_names(project) if args.services else volume_names(project)):
            cli.print(name)
        return
    cli.write(project_yaml(project))


def _configure_convert(p: ArgumentParser) -> None:
    _configure_config(p)
    p.add_argument("--kubernetes", action="store_true", help="Write Kubernetes manifests instead")
    p.add_argument("-o", "--output", help="With --kubernetes: a directory for one file per object")
    p.add_argument("--apply", action="store_true", help="With --kubernetes: create them in the kubeconfig's cluster")


async def convert(cli: Cli, args: argparse.Namespace) -> None:
    if not args.kubernetes:
        if args.output or args.apply:
            raise UsageError("--output and --apply go with --kubernetes")
        return await config(cli, args)
    from backend.compose import kubernetes

    try:
        objects = kubernetes.convert(_project(args))
        cli.write(kubernetes.write_manifests(objects, Path(args.output) if args.output else None))
        for created in kubernetes.apply(objects) if args.apply else []:
            cli.warn(f"{created} created")
    except ComposeError as exc:
        raise CommandError(str(exc)) from None


async def version(cli: Cli, args: argparse.Namespace) -> None:
    cli.print(f"Berth Compose version v{VERSION}")


# -- the group ---------------------------------------------------------------------------------------

_SUBCOMMANDS: dict[str, tuple[str, Any, Any]] = {
    "up": ("Create and start containers", _configure_up, up),
    "down": ("Stop and remove containers, networks", _configure_down, down),
    "ps": ("List containers", _configure_ps, ps),
    "logs": ("View output from containers", _configure_logs, logs),
    "ls": ("List running compose projects", _configure_ls, ls),
    "build": ("Build or rebuild services", _configure_build, build),
    "pull": ("Pull service images", _configure_services, pull),
    "push": ("Push service images", _configure_services, push),
    "images": ("List images used by the created containers", _configure_services, images),
    "start": ("Start services", _configure_services, start),
    "stop": ("Stop services", _configure_timeout, stop),
    "restart": ("Restart service containers", _configure_timeout, restart),
    "pause": ("Pause services", _configure_services, pause),
    "unpause": ("Unpause services", _configure_services, unpause),
    "kill": ("Force stop service containers", _configure_kill, kill),
    "rm": ("Removes stopped service containers", _configure_rm, rm),
    "top": ("Display the running processes", _configure_services, top),
    "port": ("Print the public port for a port binding", _configure_port, port),
    "exec": ("Execute a command in a running container", _configure_exec, exec_),
    "run": ("Run a one-off command on a service", _configure_run, run),
    "config": ("Parse, resolve and render compose file in canonical format", _configure_config, config),
    "convert": ("Render the project as Compose or (--kubernetes) Kubernetes manifests", _configure_convert, convert),
    "version": ("Show the Berth Compose version information", lambda p: None, version),
}


def _configure(p: ArgumentParser) -> None:
    p.add_argument("-f", "--file", action="append", default=[], help="Compose configuration files")
    p.add_argument("-p", "--project-name", help="Project name")
    p.add_argument("--profile", action="append", default=[], help="Specify a profile to enable")
    p.add_argument("--env-file", help="Specify an alternate environment file")
    p.add_argument("--project-directory", help="Specify an alternate working directory")
    commands = p.add_subparsers(dest="subcommand", metavar="COMMAND", required=True, parser_class=ArgumentParser)
    for name, (help_text, configure, _) in _SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        configure(sub)


async def compose(cli: Cli, args: argparse.Namespace) -> None:
    try:
        await _SUBCOMMANDS[args.subcommand][2](cli, args)
    except APIError as exc:
        raise CommandError(describe(exc)) from None


COMMANDS = {"compose": Command("Docker Compose: define and run multi-container applications", _configure, compose)}
