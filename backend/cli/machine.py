"""``berth machine ...``: the Linux VM that runs the engine on macOS and Windows (and on Linux by choice).

Verbs: init, start, stop, restart, rm, ls, inspect, ssh, set, logs. Every one takes the machine's name
(default ``default``). Errors are one line (``berth: ...``, exit 1). After ``start`` the engine is at
``unix://<machine dir>/berth.sock`` (on Windows ``tcp://127.0.0.1:2375``, or ``--api-port``), which ``start``
prints (use it as ``-H`` or ``DOCKER_HOST``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from backend.cli.context import ArgumentParser, Cli, Command, CommandError, ExitCode, Runner
from backend.cli.run_options import parse_bytes
from backend.machine.errors import MachineError
from backend.machine.manager import MachineManager
from backend.machine.state import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_NAME,
    MachineConfig,
    MachineFiles,
    MachineRecord,
    MachineStore,
    engine_address,
    machine_home,
)

WINDOWS_API_PORT = 2375
"""The engine's port on Windows' loopback unless ``--api-port`` says otherwise (Docker's conventional port)."""


def _manager() -> MachineManager:
    return MachineManager(MachineStore(machine_home()))


def _name(parser: ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default=DEFAULT_NAME, help="machine name (default: default)")


def _mib(value: str) -> int:
    """``--memory``: ``2048`` (MiB) or a size with a unit (``2g``). Raises UsageError."""
    return int(value) if value.isdigit() else parse_bytes(value, "--memory") >> 20


def _gib(value: str) -> int:
    """``--disk-size``: ``20`` (GiB) or a size with a unit (``20g``). Raises UsageError."""
    return int(value) if value.isdigit() else parse_bytes(value, "--disk-size") >> 30


def _resources(parser: ArgumentParser) -> None:
    parser.add_argument("--cpus", type=int, help="virtual CPUs")
    parser.add_argument("--memory", help="memory in MiB, or with a unit (2g)")
    parser.add_argument("--disk-size", help="disk size in GiB, or with a unit (20g)")
    parser.add_argument("--idle-timeout", type=int, metavar="SECONDS",
                        help=f"pause the machine after this long without running containers or API requests "
                             f"(0: never; default {DEFAULT_IDLE_TIMEOUT})")
    parser.add_argument("--api-port", type=int, metavar="PORT",
                        help="also serve the engine on tcp://127.0.0.1:PORT (0: only the unix socket)")


def _wrap(action: Callable[[Cli, argparse.Namespace], None]) -> Runner:
    """The verb as the CLI's coroutine, with machine errors as one line and exit code 1."""
    async def run(cli: Cli, args: argparse.Namespace) -> None:
        try:
            action(cli, args)
        except MachineError as exc:
            raise CommandError(f"berth: {exc}") from exc
    return run


def _configure_init(parser: ArgumentParser) -> None:
    _name(parser)
    _resources(parser)
    parser.add_argument("--image", required=True, help="base image URL (http, https or a path)")
    parser.add_argument("--image-sha256", required=True, help="the image's SHA-256 (checked before use)")
    parser.add_argument("--share", help="host directory mounted at the same path in the machine (default: $HOME)")
    parser.add_argument("--no-share", action="store_true", help="share no host directory")
    parser.add_argument("--accel", choices=["kvm", "hvf", "whpx", "tcg"], help="accelerator (default: per host)")
    parser.add_argument("--restrict-network", action="store_true",
                        help="the machine reaches nothing outside (published ports still work)")


def _init(cli: Cli, args: argparse.Namespace) -> None:
    share = None if args.no_share else str(Path(args.share or Path.home()).absolute())
    config = MachineConfig(cpus=2 if args.cpus is None else args.cpus,
                           memory_mib=_mib(args.memory) if args.memory else 2048,
                           disk_gib=_gib(args.disk_size) if args.disk_size else 20, image_url=args.image,
                           image_sha256=args.image_sha256, share=share, accel=args.accel,
                           restrict_network=args.restrict_network,
                           idle_timeout=DEFAULT_IDLE_TIMEOUT if args.idle_timeout is None else args.idle_timeout,
                           api_port=WINDOWS_API_PORT if args.api_port is None and sys.platform == "win32"
                           else args.api_port or 0)
    shown = [-1]

    def progress(done: int, total: int | None) -> None:
        percent = done * 100 // total if total else -1
        if sys.stderr.isatty() and percent != shown[0]:
            shown[0] = percent
            cli.err.write(f"\rDownloading image: {percent}%" if total else f"\rDownloading image: {done >> 20} MiB")
            cli.err.flush()

    _manager().init(args.name, config, progress)
    if shown[0] != -1:
        cli.err.write("\n")
    cli.print(f"Machine {args.name} created")


def _start(cli: Cli, args: argparse.Namespace) -> None:
    manager = _manager()
    record = manager.start(args.name, timeout=args.timeout)
    address = engine_address(record, manager.files(args.name), unix=sys.platform != "win32")
    cli.print(f"Machine {args.name} running (ready in {record.boot_seconds:.1f}s); engine at {address}")


def _configure_start(parser: ArgumentParser) -> None:
    _name(parser)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the machine")


def _stop(cli: Cli, args: argparse.Namespace) -> None:
    _manager().stop(args.name, timeout=args.time)
    cli.print(f"Machine {args.name} stopped")


def _configure_stop(parser: ArgumentParser) -> None:
    _name(parser)
    parser.add_argument("-t", "--time", type=float, default=60.0, help="seconds to wait for a clean power-off")


def _restart(cli: Cli, args: argparse.Namespace) -> None:
    _manager().restart(args.name)
    cli.print(f"Machine {args.name} restarted")


def _rm(cli: Cli, args: argparse.Namespace) -> None:
    _manager().rm(args.name, force=args.force)
    cli.print(f"Machine {args.name} removed")


def _configure_rm(parser: ArgumentParser) -> None:
    _name(parser)
    parser.add_argument("-f", "--force", action="store_true", help="stop it first if it runs")


def _ls(cli: Cli, args: argparse.Namespace) -> None:
    manager = _manager()
    if args.format == "json":
        cli.print(json.dumps([_as_json(r, manager.files(r.name)) for r in manager.ls()], indent=4))
        return
    rows = [("NAME", "STATE", "CPUS", "MEMORY", "DISK", "PORTS")]
    for r in manager.ls():
        rows.append((r.name, r.status, str(r.config.cpus), f"{r.config.memory_mib}MiB", f"{r.config.disk_gib}GiB",
                     ", ".join(r.ports)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cli.print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _as_json(record: MachineRecord, files: MachineFiles) -> dict[str, object]:
    doc = record.to_json()
    doc["config"] = asdict(record.config)
    doc["status"] = record.status
    doc["socket"] = f"unix://{files.api_socket}"
    doc["tcp"] = f"tcp://127.0.0.1:{record.config.api_port}" if record.config.api_port else ""
    doc["dir"] = str(files.dir)
    return doc


def _configure_ls(parser: ArgumentParser) -> None:
    parser.add_argument("--format", choices=["table", "json"], default="table", help="output format")


def _inspect(cli: Cli, args: argparse.Namespace) -> None:
    manager = _manager()
    cli.print(json.dumps(_as_json(manager.inspect(args.name), manager.files(args.name)), indent=4))


def _ssh(cli: Cli, args: argparse.Namespace) -> None:
    ssh = _manager().ssh(args.name)
    try:
        if args.command:
            cli.write(ssh.run(" ".join(args.command)))
            return
        code = ssh.interactive()
    finally:
        ssh.close()
    if code:
        raise ExitCode(code)


def _configure_ssh(parser: ArgumentParser) -> None:
    _name(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to run instead of a shell")


def _set(cli: Cli, args: argparse.Namespace) -> None:
    _manager().set(args.name, cpus=args.cpus, memory_mib=_mib(args.memory) if args.memory else None,
                   disk_gib=_gib(args.disk_size) if args.disk_size else None, idle_timeout=args.idle_timeout,
                   api_port=args.api_port)
    cli.print(f"Machine {args.name} updated")


def _configure_set(parser: ArgumentParser) -> None:
    _name(parser)
    _resources(parser)


def _logs(cli: Cli, args: argparse.Namespace) -> None:
    cli.write(_manager().logs(args.name))


COMMANDS = {
    "machine_init": Command("Create a machine from a base image", _configure_init, _wrap(_init)),
    "machine_start": Command("Boot a machine and forward its engine", _configure_start, _wrap(_start)),
    "machine_stop": Command("Power a machine down", _configure_stop, _wrap(_stop)),
    "machine_restart": Command("Restart a machine", _name, _wrap(_restart)),
    "machine_rm": Command("Remove a machine", _configure_rm, _wrap(_rm)),
    "machine_ls": Command("List machines", _configure_ls, _wrap(_ls)),
    "machine_inspect": Command("Display a machine's details", _name, _wrap(_inspect)),
    "machine_ssh": Command("Open a shell (or run a command) in a machine", _configure_ssh, _wrap(_ssh)),
    "machine_set": Command("Change a stopped machine's resources", _configure_set, _wrap(_set)),
    "machine_logs": Command("Show a machine's serial console", _name, _wrap(_logs)),
}
