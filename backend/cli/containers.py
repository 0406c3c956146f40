"""Container verbs: run, create, start, stop, restart, kill, pause, unpause, rm, ps, logs, exec, attach,
cp, top, stats, rename, wait, port, diff, export, update, container prune.

``run`` in the foreground does what the docker CLI does: create (pulling the image when it is
missing), attach, send ``wait``, start, relay the streams (raw terminal and resize with ``-t``), then
exit with the container's code. Failures before the container started exit as docker's do: 127 when
the command is not found, 126 when it cannot be invoked, 125 for any other error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from backend.api.errors import APIError, NotFoundError, NotImplementedByEngineError
from backend.api.types import ContainerSummary, StatsSample
from backend.cli.context import ArgumentParser, Cli, Command, CommandError, ExitCode, UsageError, describe
from backend.cli.formatting import (
    Fields,
    Formatter,
    ago,
    bytes_size,
    ellipsis,
    go_quote,
    go_time,
    human_size,
    label_method,
    short_id,
    tabwrite,
    timestamp_arg,
)
from backend.cli.images import canonical, confirm, file_chunks, parse_filters, pull_image, split_tag, write_stream
from backend.cli.run_options import add_container_flags, build_create_body, parse_bytes, parse_cpus, parse_restart
from backend.cli.terminal import follow_size, raw_terminal, relay


async def _each(cli: Cli, refs: Sequence[str], action: Callable[[str], Awaitable[None]]) -> None:
    """Run ``action`` on every container, printing its name; errors are printed and make the exit 1."""
    failed = False
    for ref in refs:
        try:
            await action(ref)
        except APIError as exc:
            cli.warn(describe(exc))
            failed = True
        else:
            cli.print(ref)
    if failed:
        raise ExitCode(1)


# -- run / create ------------------------------------------------------------------------------------


async def _image_exists(cli: Cli, image: str) -> bool:
    try:
        await cli.client.inspect_image(image)
    except NotFoundError:
        return False
    return True


async def _create(cli: Cli, body: dict[str, Any], args: argparse.Namespace) -> str:
    """Create the container, pulling its image first as ``--pull`` says. Raises APIError."""
    image = body["Image"]
    if args.pull == "always":
        await pull_image(cli, image, platform=args.platform, stream=sys.stderr)
    try:
        created = await cli.client.create_container(body, name=args.name, platform=args.platform)
    except NotFoundError:
        if args.pull == "never" or await _image_exists(cli, image):
            raise
        cli.warn(f"Unable to find image '{canonical(image).removeprefix('docker.io/library/')}' locally")
        await pull_image(cli, image, platform=args.platform, stream=sys.stderr)
        created = await cli.client.create_container(body, name=args.name, platform=args.platform)
    for warning in created.warnings:
        cli.warn(f"WARNING: {warning}")
    return created.id


def _configure_create(p: ArgumentParser) -> None:
    add_container_flags(p)


async def create(cli: Cli, args: argparse.Namespace) -> None:
    body = build_create_body(args, detach=True)
    try:
        cid = await _create(cli, body, args)
    except APIError as exc:
        raise CommandError(describe(exc), 125) from exc
    cli.print(cid)


def _configure_run(p: ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="Run container in background and print container ID")
    p.add_argument("--sig-proxy", default="true", choices=("true", "false"),
                   help="Proxy received signals to the process")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    add_container_flags(p)


async def _quietly(work: Awaitable[None]) -> None:
    with contextlib.suppress(APIError):
        await work


@contextlib.contextmanager
def _signal_proxy(cli: Cli, cid: str, enabled: bool) -> Iterator[None]:
    """Forward SIGINT/SIGTERM/SIGHUP the CLI gets to the container (docker's --sig-proxy); a second
    SIGINT interrupts berth itself, leaving the container as it is."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) if enabled else ()
    tasks: set[asyncio.Task[None]] = set()

    def forward(sig: signal.Signals) -> None:
        task = loop.create_task(_quietly(cli.client.kill_container(cid, sig.name.removeprefix("SIG"))))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if sig == signal.SIGINT:  # a second Ctrl-C is not forwarded: it ends berth (exit 130)
            loop.remove_signal_handler(sig)

    for sig in signals:
        loop.add_signal_handler(sig, forward, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def start_error_code(message: str) -> int:
    """docker run's exit code for a create or start error (its ``runStartContainerErr``, by the engine's
    message): 127 command not found, 126 not invocable (permission denied, a directory), else 125."""
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


async def run_attached(cli: Cli, cid: str, *, tty: bool, stdin: bool, stdout: bool, stderr: bool,
                    condition: str, start: bool, sig_proxy: bool, detach_keys: str | None = None) -> int:
    """Attach, wait, (start), relay the streams; the container's exit code. Raises APIError; an error
    before the start is a CommandError with exit code 125."""
    client = cli.client
    try:
        conn = await client.attach(cid, stdin=stdin, stdout=stdout, stderr=stderr, detach_keys=detach_keys)
    except APIError as exc:
        raise CommandError(describe(exc), 125 if start else 1) from exc
    try:
        async with client.waiting(cid, condition) as pending:
            with raw_terminal(sys.stdin.fileno(), tty and stdin):
                if start:
                    try:
                        await client.start_container(cid)
                    except APIError as exc:
                        raise CommandError(describe(exc), start_error_code(exc.message)) from exc
                resize = tty and os.isatty(sys.stdout.fileno())
                size_context = (follow_size(sys.stdout.fileno(), lambda h, w: client.resize_container(cid, h, w))
                                if resize else contextlib.nullcontext())
                with size_context, _signal_proxy(cli, cid, sig_proxy and not tty):
                    await relay(conn, tty=tty, stdin=stdin)
            result = await pending.result()
    finally:
        conn.close()
    if result.error:
        cli.warn(f"berth: {result.error}")
    return result.status_code


async def run(cli: Cli, args: argparse.Namespace) -> None:
    body = build_create_body(args, detach=args.detach)
    if args.detach and args.attach:
        raise UsageError("conflicting options: cannot specify both --attach and --detach")
    try:
        cid = await _create(cli, body, args)
        if args.detach:
            await cli.client.start_container(cid)
    except APIError as exc:
        raise CommandError(describe(exc), start_error_code(exc.message)) from exc
    if args.detach:
        cli.print(cid)
        return
    code = await run_attached(cli, cid, tty=args.tty, stdin=body["AttachStdin"], stdout=body["AttachStdout"],
                           stderr=body["AttachStderr"], condition="removed" if args.rm else "next-exit",
                           start=True, sig_proxy=args.sig_proxy == "true", detach_keys=args.detach_keys)
    if code:
        raise ExitCode(code)


# -- start / attach / lifecycle ----------------------------------------------------------------------


def _configure_start(p: ArgumentParser) -> None:
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("containers", nargs="+", help="CONTAINER")


async def start(cli: Cli, args: argparse.Namespace) -> None:
    if not (args.attach or args.interactive):
        await _each(cli, args.containers, cli.client.start_container)
        return
    if len(args.containers) > 1:
        raise UsageError("you cannot start and attach multiple containers at once")
    info = await cli.client.inspect_container(args.containers[0])
    code = await run_attached(cli, info.id, tty=info.tty, stdin=args.interactive, stdout=True, stderr=True,
                           condition="next-exit", start=True, sig_proxy=not info.tty, detach_keys=args.detach_keys)
    if code:
        raise ExitCode(code)


def _configure_attach(p: ArgumentParser) -> None:
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", default="true", choices=("true", "false"), help="Proxy all received signals")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("container", help="CONTAINER")


async def attach(cli: Cli, args: argparse.Namespace) -> None:
    info = await cli.client.inspect_container(args.container)
    if not info.running:
        raise CommandError("berth: You cannot attach to a stopped container, start it first")
    stdin = not args.no_stdin and info.config.get("OpenStdin") is True
    code = await run_attached(cli, info.id, tty=info.tty, stdin=stdin, stdout=True, stderr=True,
                           condition="next-exit", start=False, sig_proxy=args.sig_proxy == "true" and not info.tty,
                           detach_keys=args.detach_keys)
    if code:
        raise ExitCode(code)


def _configure_stop(p: ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=int, help="Seconds to wait before killing the container")
    p.add_argument("-s", "--signal", help="Signal to send to the container")
    p.add_argument("containers", nargs="+", help="CONTAINER")


async def stop(cli: Cli, args: argparse.Namespace) -> None:
    await _each(cli, args.containers,
                lambda ref: cli.client.stop_container(ref, timeout=args.time, signal=args.signal))


def _configure_restart(p: ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=int, help="Seconds to wait before killing the container")
    p.add_argument("containers", nargs="+", help="CONTAINER")


async def restart(cli: Cli, args: argparse.Namespace) -> None:
    await _each(cli, args.containers, lambda ref: cli.client.restart_container(ref, timeout=args.time))


def _configure_kill(p: ArgumentParser) -> None:
    p.add_argument("-s", "--signal", default="KILL", help="Signal to send to the container")
    p.add_argument("containers", nargs="+", help="CONTAINER")


async def kill(cli: Cli, args: argparse.Namespace) -> None:
    await _each(cli, args.containers, lambda ref: cli.client.kill_container(ref, args.signal))


def _configure_many(p: ArgumentParser) -> None:
    p.add_argument("containers", nargs="+", help="CONTAINER")


async def pause(cli: Cli, args: argparse.Namespace) -> None:
    await _each(cli, args.containers, cli.client.pause_container)


async def unpause(cli: Cli, args: argparse.Namespace) -> None:
    await _each(cli, args.containers, cli.client.unpause_container)


def _configure_rm(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove anonymous volumes of the container")
    p.add_argument("-l", "--link", action="store_true", help="Remove the specified link (not supported)")
    p.add_argument("containers", nargs="+", help="CONTAINER")


async def rm(cli: Cli, args: argparse.Namespace) -> None:
    await _each(cli, args.containers,
                lambda ref: cli.client.remove_container(ref, force=args.force, volumes=args.volumes))


def _configure_rename(p: ArgumentParser) -> None:
    p.add_argument("container", help="CONTAINER")
    p.add_argument("new_name", help="NEW_NAME")


async def rename(cli: Cli, args: argparse.Namespace) -> None:
    await cli.client.rename_container(args.container, args.new_name)


async def wait(cli: Cli, args: argparse.Namespace) -> None:
    failed = False
    for ref in args.containers:
        try:
            cli.print(str((await cli.client.wait_container(ref)).status_code))
        except APIError as exc:
            cli.warn(describe(exc))
            failed = True
    if failed:
        raise ExitCode(1)


# -- ps ------------------------------------------------------------------------------------------------

_PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
               "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
               "Names": "NAMES", "Labels": "LABELS", "LocalVolumes": "LOCAL VOLUMES", "Mounts": "MOUNTS",
               "Networks": "NETWORKS"}


def format_ports(container: ContainerSummary) -> str:
    """docker's PORTS column: ``0.0.0.0:8080->80/tcp, 443/tcp``."""
    shown = []
    for port in container.ports:
        if port.public_port:
            shown.append(f"{port.ip + ':' if port.ip else ''}{port.public_port}->{port.private_port}/{port.type}")
        else:
            shown.append(f"{port.private_port}/{port.type}")
    return ", ".join(dict.fromkeys(shown))


def ps_row(container: ContainerSummary, *, no_trunc: bool, now: float) -> dict[str, Any]:
    """One ``docker ps`` row as its template sees it."""
    command = go_quote(container.command)
    names = [n.lstrip("/") for n in container.names if "/" not in n.lstrip("/")]
    networks = container.raw.get("NetworkSettings", {}).get("Networks") or {}
    size = f"{human_size(container.size_rw, 3)} (virtual {human_size(container.size_root_fs, 3)})"
    return Fields({
        "ID": container.id if no_trunc else short_id(container.id), "Image": container.image,
        "Command": command if no_trunc else ellipsis(command, 20), "CreatedAt": go_time(container.created),
        "RunningFor": ago(container.created, now), "Ports": format_ports(container), "State": container.state,
        "Status": container.status, "Size": size, "Names": ",".join(names),
        "Labels": ",".join(f"{k}={v}" for k, v in container.labels.items()),
        "Mounts": ",".join(str(m.get("Name") or m.get("Source") or "") for m in container.raw.get("Mounts") or []
                           if isinstance(m, dict)),
        "Networks": ",".join(sorted(networks)) if isinstance(networks, dict) else "",
        "LocalVolumes": str(sum(1 for m in container.raw.get("Mounts") or []
                                if isinstance(m, dict) and m.get("Driver") == "local")),
    }, methods={"Label": label_method(container.labels)})


def _configure_ps(p: ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("-n", "--last", type=int, default=0, help="Show n last created containers (includes all states)")
    p.add_argument("-l", "--latest", action="store_true", help="Show the latest created container")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output based on conditions")
    p.add_argument("--format", help="Format output using a custom template")


async def ps(cli: Cli, args: argparse.Namespace) -> None:
    limit = 1 if args.latest else args.last
    containers = await cli.client.list_containers(all=args.all or limit > 0, limit=limit or None, size=args.size,
                                                  filters=parse_filters(args.filter))
    if args.quiet:
        for c in containers:
            cli.print(c.id if args.no_trunc else short_id(c.id))
        return
    now = time.time()
    rows = [ps_row(c, no_trunc=args.no_trunc, now=now) for c in containers]
    default = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
               + ("\t{{.Size}}" if args.size else ""))
    cli.write(Formatter(args.format, default, _PS_HEADERS).render(rows))


# -- logs / exec ---------------------------------------------------------------------------------------


def _configure_logs(p: ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--tail", default="all", help="Number of lines to show from the end of the logs")
    p.add_argument("--since", help="Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)")
    p.add_argument("--until", help="Show logs before a timestamp or relative time")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--details", action="store_true", help="Show extra details provided to logs")
    p.add_argument("container", help="CONTAINER")


async def logs(cli: Cli, args: argparse.Namespace) -> None:
    if args.tail != "all" and not args.tail.lstrip("-").isdigit():
        raise UsageError(f"invalid value for --tail: {args.tail!r} (a number or 'all')")
    info = await cli.client.inspect_container(args.container)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    async for stream, data in cli.client.logs(
            info.id, tty=info.tty, follow=args.follow, tail=args.tail, timestamps=args.timestamps,
            since=timestamp_arg(args.since, "--since") if args.since else None,
            until=timestamp_arg(args.until, "--until") if args.until else None):
        target = err if stream == 2 else out
        target.write(data)
        target.flush()


def _configure_exec(p: ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("-w", "--workdir", default="", help="Working directory inside the container")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to the command")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("container", help="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, help="COMMAND [ARG...]")


async def exec_(cli: Cli, args: argparse.Namespace) -> None:
    if not args.command:
        raise UsageError("exec requires at least 2 arguments: CONTAINER COMMAND [ARG...]")
    client = cli.client
    exec_id = await client.exec_create(args.container, args.command, tty=args.tty,
                                       stdin=args.interactive and not args.detach, stdout=not args.detach,
                                       stderr=not args.detach, env=args.env, user=args.user,
                                       workdir=args.workdir, privileged=args.privileged)
    if args.detach:
        await client.exec_start_detached(exec_id)
        return
    conn = await client.exec_attach(exec_id, tty=args.tty)
    with raw_terminal(sys.stdin.fileno(), args.tty and args.interactive):
        resize = args.tty and os.isatty(sys.stdout.fileno())

        async def resize_exec(height: int, width: int) -> None:
            with contextlib.suppress(NotImplementedByEngineError):
                await client.exec_resize(exec_id, height, width)

        with follow_size(sys.stdout.fileno(), resize_exec) if resize else contextlib.nullcontext():
            await relay(conn, tty=args.tty, stdin=args.interactive)
    for _ in range(50):
        result = await client.exec_inspect(exec_id)
        if not result.running:
            break
        await asyncio.sleep(0.05)
    if result.exit_code:
        raise ExitCode(result.exit_code)


# -- inspection ------------------------------------------------------------------------------------------


def _configure_top(p: ArgumentParser) -> None:
    p.add_argument("container", help="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, help="[ps OPTIONS]")


async def top(cli: Cli, args: argparse.Namespace) -> None:
    result = await cli.client.top(args.container, " ".join(args.ps_args) or None)
    cli.write(tabwrite(["\t".join(result.titles), *("\t".join(row) for row in result.processes)]))


_STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
                  "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                  "PIDs": "PIDS"}
_STATS_DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}"
                  "\t{{.PIDs}}")


def stats_row(ref: str, sample: StatsSample, *, no_trunc: bool) -> dict[str, Any]:
    """One ``docker stats`` row as its template sees it."""
    return {
        "ID": sample.id if no_trunc else short_id(sample.id), "Container": ref, "Name": sample.name,
        "CPUPerc": f"{sample.cpu_percent:.2f}%",
        "MemUsage": f"{bytes_size(sample.memory_usage)} / {bytes_size(sample.memory_limit)}",
        "MemPerc": f"{sample.memory_percent:.2f}%",
        "NetIO": f"{human_size(sample.net_rx, 3)} / {human_size(sample.net_tx, 3)}",
        "BlockIO": f"{human_size(sample.block_read, 3)} / {human_size(sample.block_write, 3)}",
        "PIDs": str(sample.pids),
    }


def _configure_stats(p: ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("--no-stream", action="store_true", help="Disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    p.add_argument("--format", help="Format output using a custom template")
    p.add_argument("containers", nargs="*", help="CONTAINER")


async def stats(cli: Cli, args: argparse.Namespace) -> None:
    client = cli.client
    refs = args.containers or [short_id(c.id) for c in await client.list_containers(all=args.all)]
    formatter = Formatter(args.format, _STATS_DEFAULT, _STATS_HEADERS)
    if args.no_stream:
        async def one(ref: str) -> StatsSample:
            async for sample in client.stats(ref, stream=False):
                return sample
            raise CommandError(f"berth: no stats for {ref}")

        samples = await asyncio.gather(*(one(ref) for ref in refs))
        rows = [stats_row(r, s, no_trunc=args.no_trunc) for r, s in zip(refs, samples, strict=True)]
        cli.write(formatter.render(rows))
        return
    latest: dict[str, StatsSample] = {}

    async def follow(ref: str) -> None:
        with contextlib.suppress(APIError):
            async for sample in client.stats(ref, stream=True):
                latest[ref] = sample

    followers = [asyncio.ensure_future(follow(ref)) for ref in refs]

    def table() -> str:
        return formatter.render([stats_row(r, latest[r], no_trunc=args.no_trunc) for r in refs if r in latest])

    try:
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            with Live(Text(table()), console=Console(), auto_refresh=False) as live:
                while not all(f.done() for f in followers):
                    await asyncio.sleep(1)
                    live.update(Text(table().rstrip("\n")), refresh=True)
        else:
            while not all(f.done() for f in followers):
                await asyncio.sleep(1)
                cli.write(table())
                cli.out.flush()
    finally:
        for f in followers:
            f.cancel()


def _configure_port(p: ArgumentParser) -> None:
    p.add_argument("container", help="CONTAINER")
    p.add_argument("port", nargs="?", help="PRIVATE_PORT[/PROTO]")


async def port(cli: Cli, args: argparse.Namespace) -> None:
    """docker's ``port``: every mapping (``80/tcp -> 0.0.0.0:8080``) or one port's host addresses, in natural
    order. Raises CommandError (docker's wording) for a bad or unpublished port."""
    wanted = None
    if args.port:
        number, _, proto = args.port.partition("/")
        if not number.isdigit() or int(number) > 65535:
            raise CommandError(f"Error: invalid port ({number})")
        wanted = f"{number}/{proto or 'tcp'}"
    info = await cli.client.inspect_container(args.container)
    ports = info.network_settings.get("Ports") or {}
    lines = []
    for key, bindings in ports.items():
        if wanted is not None and key != wanted:
            continue
        for binding in bindings or []:
            ip = binding.get("HostIp") or ""
            address = f"[{ip}]:{binding.get('HostPort', '')}" if ":" in ip else f"{ip}:{binding.get('HostPort', '')}"
            lines.append(address if wanted else f"{key} -> {address}")
    if wanted is not None and not lines:
        raise CommandError(f"Error: No public port '{args.port}' published for {args.container}")
    for line in sorted(lines, key=lambda text: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]):
        cli.print(line)


def _configure_one(p: ArgumentParser) -> None:
    p.add_argument("container", help="CONTAINER")


async def diff(cli: Cli, args: argparse.Namespace) -> None:
    for change in await cli.client.container_changes(args.container):
        cli.print(f"{change.kind.letter} {change.path}")


def _configure_commit(p: ArgumentParser) -> None:
    p.add_argument("-a", "--author", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Commit message")
    p.add_argument("-p", "--pause", "--pause=true", action="store_true", default=True,
                   help="Pause container during commit (default true; --pause=false not to)")
    p.add_argument("--pause=false", dest="pause", action="store_false", help=argparse.SUPPRESS)
    p.add_argument("container", help="CONTAINER")
    p.add_argument("reference", nargs="?", help="[REPOSITORY[:TAG]]")


async def commit(cli: Cli, args: argparse.Namespace) -> None:
    repo, tag_name = split_tag(args.reference) if args.reference else (None, None)
    cli.print(await cli.client.commit_container(args.container, repo=repo, tag=tag_name, comment=args.message,
                                                author=args.author, changes=args.change, pause=args.pause))


def _configure_export(p: ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("container", help="CONTAINER")


async def export(cli: Cli, args: argparse.Namespace) -> None:
    if args.output is None and sys.stdout.isatty():
        raise CommandError("berth: cowardly refusing to save to a terminal. Use the -o flag or redirect")
    await write_stream(cli.client.export_container(args.container), args.output)


def _configure_update(p: ArgumentParser) -> None:
    p.add_argument("-m", "--memory", help="Memory limit")
    p.add_argument("--memory-swap", help="Swap limit equal to memory plus swap: -1 to enable unlimited swap")
    p.add_argument("--cpus", help="Number of CPUs")
    p.add_argument("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    p.add_argument("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    p.add_argument("--restart", help="Restart policy to apply when a container exits")
    p.add_argument("containers", nargs="+", help="CONTAINER")


async def update(cli: Cli, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {}
    if args.memory:
        body["Memory"] = parse_bytes(args.memory, "--memory")
    if args.memory_swap:
        body["MemorySwap"] = -1 if args.memory_swap == "-1" else parse_bytes(args.memory_swap, "--memory-swap")
    if args.cpus:
        body["NanoCpus"] = parse_cpus(args.cpus)
    if args.cpu_shares is not None:
        body["CpuShares"] = args.cpu_shares
    if args.pids_limit is not None:
        body["PidsLimit"] = args.pids_limit
    if args.restart:
        body["RestartPolicy"] = parse_restart(args.restart)
    if not body:
        raise UsageError("you must provide one or more flags when using this command")

    async def apply(ref: str) -> None:
        for warning in await cli.client.update_container(ref, body):
            cli.warn(f"WARNING: {warning}")

    await _each(cli, args.containers, apply)


def _configure_prune(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'until=<ts>')")


async def container_prune(cli: Cli, args: argparse.Namespace) -> None:
    if not args.force and not confirm(cli, "WARNING! This will remove all stopped containers."):
        return
    report = await cli.client.prune_containers(filters=parse_filters(args.filter))
    if report.deleted:
        cli.print("Deleted Containers:")
        for cid in report.deleted:
            cli.print(cid)
        cli.print()
    cli.print(f"Total reclaimed space: {human_size(report.space_reclaimed, 3)}")


# -- cp ----------------------------------------------------------------------------------------------------


def _split_container_path(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` -> (container, path); a local path (``./a:b``, ``/x``) -> (None, path)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path


def _configure_cp(p: ArgumentParser) -> None:
    p.add_argument("-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true", help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress progress output")
    p.add_argument("source", help="CONTAINER:SRC_PATH | SRC_PATH | -")
    p.add_argument("dest", help="CONTAINER:DEST_PATH | DEST_PATH | -")


async def cp(cli: Cli, args: argparse.Namespace) -> None:
    src_container, src = _split_container_path(args.source)
    dst_container, dst = _split_container_path(args.dest)
    if (src_container is None) == (dst_container is None):
        raise UsageError("copying between containers or between local paths is not supported: "
                         "one of SRC and DEST must be CONTAINER:PATH")
    if src_container is not None:
        await _copy_from(cli, src_container, src, dst)
    else:
        assert dst_container is not None
        await _copy_to(cli, src, dst_container, dst, copy_uid_gid=args.archive, follow=args.follow_link)


async def _copy_from(cli: Cli, container: str, src: str, dst: str) -> None:
    async with cli.client.get_archive(container, src) as (stat, chunks):
        if dst == "-":
            await write_stream(chunks, None)
            return
        with tempfile.TemporaryFile() as spool:
            async for chunk in chunks:
                spool.write(chunk)
            spool.seek(0)
            _extract(spool, stat.name, Path(dst))


def _extract(archive: IO[bytes], name: str, dst: Path) -> None:
    """Unpack a tar whose top entry is ``name``: into ``dst`` when it is a directory, else as ``dst``."""
    into, rename_to = (dst, None) if dst.is_dir() else (dst.parent, dst.name)
    if not into.is_dir():
        raise CommandError(f"berth: destination directory {into} does not exist")
    try:
        with tarfile.open(fileobj=archive, mode="r|*") as tar:
            for member in tar:
                if rename_to is not None:
                    head, sep, rest = member.name.partition("/")
                    if head == name:
                        member.name = rename_to + sep + rest
                tar.extract(member, into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise CommandError(f"berth: cannot copy to {dst}: {exc}") from exc


async def _copy_to(cli: Cli, src: str, container: str, dst: str, *, copy_uid_gid: bool, follow: bool) -> None:
    client = cli.client
    if src == "-":
        await client.put_archive(container, dst, file_chunks(sys.stdin.buffer), copy_uid_gid=copy_uid_gid)
        return
    source = Path(src)
    if not (source.exists() or source.is_symlink()):
        raise CommandError(f"berth: no such file or directory: {src}")
    try:
        target = await client.stat_path(container, dst)
        into, name = (dst, source.name) if target.is_dir else (os.path.dirname(dst) or "/", os.path.basename(dst))
    except NotFoundError:
        if dst.endswith("/"):
            raise CommandError(f"berth: destination directory {dst} does not exist in {container}") from None
        into, name = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst.rstrip("/"))
    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w", dereference=follow) as tar:
            tar.add(str(source), arcname=name)
        spool.seek(0)
        await client.put_archive(container, into, file_chunks(spool), no_overwrite_dir_non_dir=True,
                                 copy_uid_gid=copy_uid_gid)


COMMANDS = {
    "run": Command("Create and run a new container from an image", _configure_run, run, help_flag=False),
    "create": Command("Create a new container", _configure_create, create, help_flag=False),
    "start": Command("Start one or more stopped containers", _configure_start, start),
    "attach": Command("Attach local standard input, output, and error streams to a running container",
                      _configure_attach, attach),
    "stop": Command("Stop one or more running containers", _configure_stop, stop),
    "restart": Command("Restart one or more containers", _configure_restart, restart),
    "kill": Command("Kill one or more running containers", _configure_kill, kill),
    "pause": Command("Pause all processes within one or more containers", _configure_many, pause),
    "unpause": Command("Unpause all processes within one or more containers", _configure_many, unpause),
    "rm": Command("Remove one or more containers", _configure_rm, rm),
    "rename": Command("Rename a container", _configure_rename, rename),
    "wait": Command("Block until one or more containers stop, then print their exit codes", _configure_many, wait),
    "ps": Command("List containers", _configure_ps, ps),
    "logs": Command("Fetch the logs of a container", _configure_logs, logs),
    "exec": Command("Execute a command in a running container", _configure_exec, exec_),
    "top": Command("Display the running processes of a container", _configure_top, top),
    "stats": Command("Display a live stream of container(s) resource usage statistics", _configure_stats, stats),
    "port": Command("List port mappings or a specific mapping for the container", _configure_port, port),
    "diff": Command("Inspect changes to files or directories on a container's filesystem", _configure_one, diff),
    "export": Command("Export a container's filesystem as a tar archive", _configure_export, export),
    "commit": Command("Create a new image from a container's changes", _configure_commit, commit),
    "update": Command("Update configuration of one or more containers", _configure_update, update),
    "container_prune": Command("Remove all stopped containers", _configure_prune, container_prune),
    "cp": Command("Copy files/folders between a container and the local filesystem", _configure_cp, cp),
}
