"""Context verbs: context create, ls, use, inspect, rm, show (docker's, over :mod:`backend.api.contexts`).

``create`` takes ``--host`` with ``--tlscacert/--tlscert/--tlskey/--tlsverify`` (TLS without ``--tlsverify``
does not verify the server, as docker's global flags) or docker's ``--docker "host=...,ca=...,cert=...,key=...,
skip-tls-verify=true"``. None of these verbs talk to an engine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend.api.contexts import DEFAULT_CONTEXT, ContextError, ContextStore, resolve
from backend.cli.context import ArgumentParser, Cli, Command, ExitCode, UsageError
from backend.cli.formatting import Formatter

_HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "DockerEndpoint": "DOCKER ENDPOINT", "Error": "ERROR"}
_DOCKER_KEYS = ("host", "ca", "cert", "key", "skip-tls-verify")


def _store(cli: Cli) -> ContextStore:
    return ContextStore.from_env(config_dir=cli.config)


def _docker_option(text: str) -> dict[str, str]:
    """docker's ``--docker`` value: comma-separated ``key=value``. Raises UsageError."""
    fields: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in _DOCKER_KEYS:
            raise UsageError(f"invalid --docker field {item!r}: expected {', '.join(k + '=...' for k in _DOCKER_KEYS)}")
        fields[key] = value
    return fields


def _configure_create(p: ArgumentParser) -> None:
    p.add_argument("--description", default="", help="Description of the context")
    p.add_argument("--host", help="Engine address: unix:///path, tcp://host:port or ssh://[user@]host[:port][/socket]")
    p.add_argument("--docker", help='Docker endpoint ("host=...,ca=...,cert=...,key=...,skip-tls-verify=true")')
    p.add_argument("--tlscacert", help="Trust certs signed only by this CA")
    p.add_argument("--tlscert", help="Path to TLS certificate file")
    p.add_argument("--tlskey", help="Path to TLS key file")
    p.add_argument("--tlsverify", action="store_true", help="Verify the remote engine's certificate")
    p.add_argument("name", help="CONTEXT")


async def create(cli: Cli, args: argparse.Namespace) -> None:
    fields = _docker_option(args.docker) if args.docker else {}
    host = args.host or fields.get("host")
    if not host:
        raise UsageError("--host (or --docker host=...) is required")
    if args.host and fields.get("host"):
        raise UsageError("give the address once: --host or --docker host=...")
    ca, cert, key = (getattr(args, flag) or fields.get(name) for flag, name in
                     (("tlscacert", "ca"), ("tlscert", "cert"), ("tlskey", "key")))
    has_tls = any((ca, cert, key))
    skip = fields.get("skip-tls-verify", "").lower() in ("1", "true") or (has_tls and not args.tlsverify
                                                                          and not args.docker)
    if has_tls and not host.startswith("tcp://"):
        raise UsageError("TLS files go with a tcp:// address")
    ca_path, cert_path, key_path = (Path(v).expanduser() if v else None for v in (ca, cert, key))
    _store(cli).create(args.name, host, description=args.description, ca=ca_path, cert=cert_path, key=key_path,
                       skip_verify=skip)
    cli.print(args.name)
    cli.warn(f'Successfully created context "{args.name}"')


def _configure_ls(p: ArgumentParser) -> None:
    p.add_argument("--format", help="Format output using a custom template ('json' for JSON lines)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show context names")


async def ls(cli: Cli, args: argparse.Namespace) -> None:
    store = _store(cli)
    current = _current(cli, store)
    contexts = store.contexts()
    if args.quiet:
        for context in contexts:
            cli.print(context.name)
        return
    rows = [{"Name": c.name, "Description": c.description, "DockerEndpoint": c.host, "Current": c.name == current,
             "Error": ""} for c in contexts]
    if not args.format or args.format.strip() == "table":
        rows = [{**row, "Name": f"{row['Name']} *" if row["Current"] else row["Name"]} for row in rows]
    cli.write(Formatter(args.format, "table {{.Name}}\t{{.Description}}\t{{.DockerEndpoint}}", _HEADERS).render(rows))


def _current(cli: Cli, store: ContextStore) -> str:
    """The context this invocation would use (``--context``, the variables, then the config's)."""
    if cli.host:
        return DEFAULT_CONTEXT
    try:
        return resolve(None, cli.context, config_dir=cli.config).context
    except ContextError:
        return store.current()


def _configure_use(p: ArgumentParser) -> None:
    p.add_argument("name", help="CONTEXT")


async def use(cli: Cli, args: argparse.Namespace) -> None:
    _store(cli).use(args.name)
    cli.print(args.name)
    cli.warn(f'Current context is now "{args.name}"')


def _configure_inspect(p: ArgumentParser) -> None:
    p.add_argument("-f", "--format", help="Format output using a custom template")
    p.add_argument("names", nargs="*", help="CONTEXT (default: the current one)")


async def inspect(cli: Cli, args: argparse.Namespace) -> None:
    from backend.cli.formatting import render_items

    store = _store(cli)
    docs, failed = [], False
    for name in args.names or [_current(cli, store)]:
        try:
            docs.append(store.get(name).inspect())
        except ContextError as exc:
            cli.warn(f"berth: {exc}")
            failed = True
    cli.write(render_items(args.format, docs) if args.format else json.dumps(docs, indent=4) + "\n")
    if failed:
        raise ExitCode(1)


def _configure_rm(p: ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a context in use")
    p.add_argument("names", nargs="+", help="CONTEXT")


async def rm(cli: Cli, args: argparse.Namespace) -> None:
    store = _store(cli)
    failed = False
    for name in args.names:
        try:
            store.remove(name, force=args.force)
            cli.print(name)
        except (ContextError, OSError) as exc:
            cli.warn(f"berth: {exc}")
            failed = True
    if failed:
        raise ExitCode(1)


def _configure_show(p: ArgumentParser) -> None:
    pass


async def show(cli: Cli, args: argparse.Namespace) -> None:
    cli.print(_current(cli, _store(cli)))


COMMANDS = {
    "context_create": Command("Create a context", _configure_create, create),
    "context_ls": Command("List contexts", _configure_ls, ls),
    "context_use": Command("Set the current context", _configure_use, use),
    "context_inspect": Command("Display detailed information on one or more contexts", _configure_inspect, inspect),
    "context_rm": Command("Remove one or more contexts", _configure_rm, rm),
    "context_show": Command("Print the name of the current context", _configure_show, show),
}
