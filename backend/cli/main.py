"""``berth``: the command line. Global flags, then a verb (``berth ps``) or a group and a verb
(``berth container ls``), dispatched to the one module that implements it.

Exit codes: 0; 1 for an error (one line on stderr: ``Error response from daemon: ...`` or
``berth: ...``); 125 for bad flags (and ``run`` failing before its container started); a container's
own exit code for ``run``, ``start -a``, ``exec`` and ``wait``-like verbs; 130 on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Sequence

from backend.cli.context import Cli, Command, CommandError, ExitCode, UsageError, config_dir, describe, new_parser
from backend.version import VERSION

_NETWORK_VERBS = ("create", "ls", "inspect", "rm", "connect", "disconnect", "prune")
_MACHINE_VERBS = ("init", "start", "stop", "restart", "rm", "ls", "inspect", "ssh", "set", "logs")
_CONTEXT_VERBS = ("create", "ls", "use", "inspect", "rm", "show")
_STACK_VERBS = ("deploy", "ls", "ps", "rm")
_SERVICE_VERBS = ("ls", "ps", "logs", "scale", "rm", "inspect")
# verb -> module under backend.cli
_VERBS: dict[str, str] = {
    **dict.fromkeys(("run", "create", "start", "stop", "restart", "kill", "pause", "unpause", "rm", "ps", "logs",
                     "exec", "cp", "top", "stats", "rename", "wait", "port", "diff", "export", "update", "attach",
                     "commit", "container_prune"), "containers"),
    **dict.fromkeys(("images", "pull", "push", "tag", "rmi", "import", "load", "save", "history", "image_prune"),
                    "images"),
    **dict.fromkeys(("version", "info", "events", "inspect", "container_inspect", "image_inspect", "system_df",
                     "system_prune"), "system"),
    **dict.fromkeys(("login", "logout"), "auth"),
    **dict.fromkeys(("build", "builder_prune"), "build"),
    **dict.fromkeys(("volume_create", "volume_ls", "volume_inspect", "volume_rm", "volume_prune"), "volumes"),
    **dict.fromkeys((f"network_{v}" for v in _NETWORK_VERBS), "networks"),
    "compose": "compose",
    **dict.fromkeys((f"machine_{v}" for v in _MACHINE_VERBS), "machine"),
    **dict.fromkeys((f"context_{v}" for v in _CONTEXT_VERBS), "contexts"),
    **dict.fromkeys((f"stack_{v}" for v in _STACK_VERBS), "stack"),
    **dict.fromkeys((*(f"service_{v}" for v in _SERVICE_VERBS), "node_ls",
                     *(f"swarm_{v}" for v in ("init", "join", "join-token", "leave"))), "service"),
}
_GROUPS: dict[str, dict[str, str]] = {
    "container": {**{v: v for v in ("run", "create", "start", "stop", "restart", "kill", "pause", "unpause", "rm",
                                    "ps", "logs", "exec", "cp", "top", "stats", "rename", "wait", "port", "diff",
                                    "export", "update", "attach", "commit")},
                  "ls": "ps", "list": "ps", "remove": "rm", "prune": "container_prune",
                  "inspect": "container_inspect"},
    "image": {**{v: v for v in ("pull", "push", "tag", "import", "load", "save", "history")},
              "ls": "images", "list": "images", "rm": "rmi", "remove": "rmi", "prune": "image_prune",
              "inspect": "image_inspect"},
    "builder": {"build": "build", "prune": "builder_prune"},
    "system": {"info": "info", "events": "events", "df": "system_df", "prune": "system_prune"},
    "volume": {**{v: f"volume_{v}" for v in ("create", "ls", "inspect", "rm", "prune")},
               "list": "volume_ls", "remove": "volume_rm"},
    "network": {**{v: f"network_{v}" for v in _NETWORK_VERBS}, "list": "network_ls", "remove": "network_rm"},
    "machine": {v: f"machine_{v}" for v in _MACHINE_VERBS},
    "context": {**{v: f"context_{v}" for v in _CONTEXT_VERBS}, "list": "context_ls", "remove": "context_rm"},
    "stack": {**{v: f"stack_{v}" for v in _STACK_VERBS}, "list": "stack_ls", "remove": "stack_rm",
              "up": "stack_deploy"},
    "service": {**{v: f"service_{v}" for v in _SERVICE_VERBS}, "list": "service_ls", "remove": "service_rm"},
    "node": {"ls": "node_ls", "list": "node_ls"},
    "swarm": {v: f"swarm_{v}" for v in ("init", "join", "join-token", "leave")},
}
_HELP = """Usage:  berth [OPTIONS] COMMAND

A Docker-compatible command line for Berth

Options:
      --config string   Location of client config files (default $BERTH_CONFIG, $DOCKER_CONFIG, ~/.docker)
  -c, --context string  Name of the context to use (default $BERTH_CONTEXT, $DOCKER_CONTEXT, "berth context use")
  -D, --debug           Enable debug mode
  -H, --host string     Daemon socket to connect to
  -v, --version         Print version information and quit

Common Commands:
  run, exec, ps, images, pull, push, login, logout, version, info

Management Commands:
  builder     Manage builds
  container   Manage containers
  context     Manage contexts (engines on this machine or remote, over SSH or TCP)
  image       Manage images
  machine     Manage the Linux VM that runs the engine (macOS, Windows; optional on Linux)
  network     Manage networks
  node        Manage swarm nodes
  service     Manage swarm services
  stack       Manage swarm stacks (a Compose file on a swarm)
  swarm       Manage the swarm (init, join, join-token, leave)
  system      Manage Berth
  volume      Manage volumes

Commands:
  attach build commit cp create diff events export history import inspect kill load logs pause port rename restart rm
  rmi save start stats stop tag top unpause update wait

Run 'berth COMMAND --help' for more information on a command.
"""


def _lookup(args: Sequence[str]) -> tuple[str, str, list[str]]:
    """(internal verb name, prog, remaining args). Raises UsageError."""
    if not args:
        raise UsageError("a command is required (see 'berth --help')")
    first, rest = args[0], list(args[1:])
    if first in _GROUPS:
        verbs = _GROUPS[first]
        if not rest or rest[0] in ("-h", "--help"):
            raise CommandError(f"Usage:  berth {first} COMMAND\n\nCommands:\n  " + ", ".join(sorted(verbs)), 0)
        if rest[0] not in verbs:
            raise UsageError(f"unknown command: berth {first} {rest[0]} (see 'berth {first} --help')")
        return verbs[rest[0]], f"berth {first} {rest[0]}", rest[1:]
    if first not in _VERBS or "_" in first:
        raise UsageError(f"unknown command: berth {first} (see 'berth --help')")
    return first, f"berth {first}", rest


def _global_flags(argv: list[str]) -> tuple[Cli, list[str]]:
    """Global flags up to the verb. Raises UsageError; CommandError(code 0) for --help/--version."""
    host: str | None = None
    config: str | None = None
    context: str | None = None
    debug = False
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        flag, _, inline = argv[index].partition("=")
        if flag in ("-H", "--host", "--config", "-l", "--log-level", "--context", "-c"):
            if inline:
                value = inline
            elif index + 1 < len(argv):
                index += 1
                value = argv[index]
            else:
                raise UsageError(f"flag needs an argument: {flag}")
            if flag in ("-H", "--host"):
                host = value
            elif flag == "--config":
                config = value
            elif flag in ("-c", "--context"):
                context = value
        elif flag in ("-D", "--debug"):
            debug = True
        elif flag in ("-v", "--version"):
            raise CommandError(f"Berth version {VERSION}", 0)
        elif flag in ("-h", "--help"):
            raise CommandError(_HELP.rstrip("\n"), 0)
        else:
            raise UsageError(f"unknown flag: {flag} (see 'berth --help')" if flag.startswith("--")
                             else f"unknown shorthand flag: '{flag[1:2]}' in {flag} (see 'berth --help')")
        index += 1
    return Cli(host, config_dir(config), debug, context), argv[index:]


async def _run(cli: Cli, command: Command, args: object) -> None:
    try:
        await command.run(cli, args)  # type: ignore[arg-type]
    finally:
        await cli.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one berth command line; the process's exit code."""
    from backend.api.errors import APIError
    from backend.api.host import HostError
    from backend.cli.formatting import TemplateError

    argv = list(sys.argv[1:] if argv is None else argv)
    cli: Cli | None = None
    try:
        cli, rest = _global_flags(argv)
        verb, prog, rest = _lookup(rest)
        module = importlib.import_module(f"backend.cli.{_VERBS[verb]}")
        command: Command = module.COMMANDS[verb]
        parser = new_parser(prog, command.help, add_help=command.help_flag)
        command.configure(parser)
        args = parser.parse_args(rest)
        asyncio.run(_run(cli, command, args))
        cli.out.flush()
        return 0
    except ExitCode as exc:
        return exc.code
    except CommandError as exc:
        (sys.stdout if exc.code == 0 else sys.stderr).write(exc.message + "\n")
        return exc.code
    except UsageError as exc:
        sys.stderr.write(f"berth: {exc}\n")
        return 125
    except TemplateError as exc:
        sys.stderr.write(f"berth: template parsing error: {exc}\n")
        return 1
    except (APIError, HostError) as exc:
        sys.stderr.write(describe(exc) + "\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except SystemExit as exc:  # argparse's --help
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:
        if cli is not None and cli.debug:
            raise
        sys.stderr.write(f"berth: {type(exc).__name__}: {exc}\n")
        return 1


def console_main() -> None:
    """The ``berth`` console script."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    sys.exit(code)
