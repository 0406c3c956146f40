"""``berth-runtime``: runc's command line over ``Runtime``.

``berth-runtime [--root DIR] VERB ...`` with runc's verbs and flags, so the engine (or a person) can
swap it with runc or crun. Errors print one line, ``berth-runtime: <message>``, to stderr (and to
``--log`` when given) and exit 1; ``run`` and ``exec`` in the foreground exit with the process's code.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import signal
import sys
from collections.abc import Sequence

from backend.engine.errors import Conflict, EngineError, InvalidParameter
from backend.engine.runtime.capabilities import cap_mask
from backend.engine.runtime.defaults import DOCKER_DEFAULT_CAPABILITIES, docker_default_config
from backend.engine.runtime.operations import DEFAULT_ROOT, Runtime
from backend.engine.runtime.seccomp import default_docker_profile, oci_seccomp_from_docker_profile
from backend.engine.runtime.spec import Process, parse_process, parse_signal, read_json_file
from backend.version import VERSION

OCI_SPEC_VERSION = "1.0.2"


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The command-line parser, built once per process (parsing does not change it)."""
    p = argparse.ArgumentParser(prog="berth-runtime", description="Berth's OCI container runtime")
    p.add_argument("--root", default=DEFAULT_ROOT, help="directory for container state")
    p.add_argument("--log", default=None, help="also write errors to this file")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true", help="accepted for runc compatibility")
    p.add_argument("--rootless", default=None, help="accepted for runc compatibility")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    def bundle_flags(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("-b", "--bundle", default=".")
        cmd.add_argument("--console-socket", default=None)
        cmd.add_argument("--pid-file", default=None)
        cmd.add_argument("--preserve-fds", type=int, default=0)
        cmd.add_argument("--no-pivot", action="store_true")
        cmd.add_argument("--no-new-keyring", action="store_true")
        cmd.add_argument("id")

    bundle_flags(sub.add_parser("create", help="create a container"))
    run = sub.add_parser("run", help="create and start a container, wait for it, delete it")
    run.add_argument("-d", "--detach", action="store_true")
    run.add_argument("--keep", action="store_true")
    bundle_flags(run)
    for verb, text in (("start", "start a created container"), ("state", "print the state as JSON"),
                       ("pause", "freeze all processes"), ("resume", "thaw all processes")):
        sub.add_parser(verb, help=text).add_argument("id")
    kill = sub.add_parser("kill", help="send a signal to the init (default SIGTERM)")
    kill.add_argument("-a", "--all", action="store_true")
    kill.add_argument("id")
    kill.add_argument("signal", nargs="?", default="SIGTERM")
    delete = sub.add_parser("delete", help="delete a container")
    delete.add_argument("-f", "--force", action="store_true")
    delete.add_argument("id")
    ps = sub.add_parser("ps", help="processes of a container")
    ps.add_argument("-f", "--format", default="table", choices=["table", "json"])
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    ls = sub.add_parser("list", aliases=["ls"], help="list containers")
    ls.add_argument("-f", "--format", default="table", choices=["table", "json"])
    ls.add_argument("-q", "--quiet", action="store_true")
    events = sub.add_parser("events", help="stats and OOM events")
    events.add_argument("--stats", action="store_true", help="print one stats document and exit")
    events.add_argument("--interval", default="5s")
    events.add_argument("id")
    spec = sub.add_parser("spec", help="write a config.json with Docker's defaults (seccomp included)")
    spec.add_argument("-b", "--bundle", default=".")
    spec.add_argument("--rootfs", default="rootfs")
    ex = sub.add_parser("exec", help="run a process in a container")
    ex.add_argument("--console-socket", default=None)
    ex.add_argument("--cwd", default=None)
    ex.add_argument("-e", "--env", action="append", default=[])
    ex.add_argument("-t", "--tty", action="store_true")
    ex.add_argument("-u", "--user", default=None, help="UID[:GID]")
    ex.add_argument("-g", "--additional-gids", action="append", type=int, default=[])
    ex.add_argument("-p", "--process", default=None, help="a process.json to run")
    ex.add_argument("-d", "--detach", action="store_true")
    ex.add_argument("--pid-file", default=None)
    ex.add_argument("--no-new-privs", action="store_true")
    ex.add_argument("-c", "--cap", action="append", default=[])
    ex.add_argument("--preserve-fds", type=int, default=0)
    ex.add_argument("--process-label", default=None)
    ex.add_argument("--apparmor", default=None)
    ex.add_argument("id")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    return p


def _interval(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for suffix in ("ms", "s", "m"):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * units[suffix]
            except ValueError:
                break
    raise InvalidParameter(f'invalid interval "{text}"')


def _exec_process(rt: Runtime, args: argparse.Namespace) -> Process:
    """The process to exec: --process, or the container's own process with the flags applied."""
    if args.process:
        return parse_process(read_json_file(args.process, "process.json"), "process.json")
    if not args.command:
        raise InvalidParameter("exec: a command to run is required")
    st = rt.store.load(args.id)
    base = rt._spec(st).process
    env = dict(item.split("=", 1) for item in base.env)
    for item in args.env:
        if "=" not in item:
            raise InvalidParameter(f'exec: --env "{item}" is not NAME=value')
        name, value = item.split("=", 1)
        env[name] = value
    uid, gid = base.uid, base.gid
    if args.user:
        try:
            parts = [int(x) for x in args.user.split(":", 1)]
        except ValueError as exc:
            raise InvalidParameter(f'exec: --user "{args.user}" must be UID[:GID] as numbers') from exc
        uid, gid = parts[0], parts[1] if len(parts) > 1 else gid
    caps = base.capabilities
    if args.cap:
        extra = cap_mask(args.cap, "--cap")
        caps = type(caps)(caps.bounding | extra, caps.effective | extra, caps.inheritable | extra,
                          caps.permitted | extra, caps.ambient | extra)
    return Process(
        args=tuple(args.command), env=tuple(f"{k}={v}" for k, v in env.items()),
        cwd=args.cwd or base.cwd, uid=uid, gid=gid, umask=base.umask,
        additional_gids=tuple(args.additional_gids) or base.additional_gids, terminal=args.tty,
        capabilities=caps, rlimits=base.rlimits,
        no_new_privileges=base.no_new_privileges or args.no_new_privs,
    )


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _ps(rt: Runtime, args: argparse.Namespace) -> None:
    pids = rt.pids(args.id)
    if args.format == "json":
        print(json.dumps(pids))
        return
    import subprocess  # only this verb runs a program; keep it off the start-up path

    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False).stdout.splitlines()
    if not out:
        return
    header = out[0].split()
    column = header.index("PID") if "PID" in header else 1
    print(out[0])
    wanted = {str(p) for p in pids}
    for line in out[1:]:
        fields = line.split()
        if len(fields) > column and fields[column] in wanted:
            print(line)


def _write_spec(bundle: str, rootfs: str) -> None:
    """Write ``<bundle>/config.json`` as dockerd would for ``docker run -it IMAGE sh``."""
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise Conflict(f"{path} exists; remove it first")
    seccomp = oci_seccomp_from_docker_profile(default_docker_profile(), DOCKER_DEFAULT_CAPABILITIES)
    config = docker_default_config(["sh"], terminal=True, seccomp=seccomp, rootfs=rootfs)
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def _dispatch(rt: Runtime, args: argparse.Namespace) -> int:
    verb = args.verb
    if verb in ("create", "run"):
        if args.bundle and not os.path.isdir(args.bundle):
            raise InvalidParameter(f"bundle {args.bundle} does not exist")
        if verb == "create":
            rt.create(args.id, args.bundle, console_socket=args.console_socket, pid_file=args.pid_file,
                      preserve_fds=args.preserve_fds)
            return 0
        return rt.run(args.id, args.bundle, console_socket=args.console_socket, pid_file=args.pid_file,
                      detach=args.detach, preserve_fds=args.preserve_fds)
    if verb == "start":
        rt.start(args.id)
    elif verb == "state":
        print(json.dumps(rt.state(args.id), indent=2))
    elif verb == "kill":
        rt.kill(args.id, parse_signal(args.signal), all_processes=args.all)
    elif verb == "delete":
        rt.delete(args.id, force=args.force)
    elif verb == "pause":
        rt.pause(args.id)
    elif verb == "resume":
        rt.resume(args.id)
    elif verb == "ps":
        _ps(rt, args)
    elif verb in ("list", "ls"):
        states = rt.list()
        if args.quiet:
            for s in states:
                print(s["id"])
        elif args.format == "json":
            print(json.dumps(states))
        else:
            rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
            rows += [[s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]]
                     for s in states]
            _print_table(rows)
    elif verb == "events":
        if args.stats:
            print(json.dumps(rt.stats(args.id)))
        else:
            rt.events(args.id, _interval(args.interval), sys.stdout)
    elif verb == "spec":
        _write_spec(args.bundle, args.rootfs)
    elif verb == "exec":
        return rt.exec(args.id, _exec_process(rt, args), console_socket=args.console_socket,
                       pid_file=args.pid_file, detach=args.detach, preserve_fds=args.preserve_fds)
    return 0


def _report(args: argparse.Namespace | None, message: str) -> None:
    print(f"berth-runtime: {message}", file=sys.stderr)
    if args is not None and args.log:
        try:
            with open(args.log, "a") as f:
                if args.log_format == "json":
                    now = datetime.datetime.now(datetime.UTC).isoformat()
                    f.write(json.dumps({"level": "error", "msg": message, "time": now}) + "\n")
                else:
                    f.write(f"berth-runtime: {message}\n")
        except OSError:
            pass


def warm() -> None:
    """Build what every command needs, for a process that will fork per command."""
    _parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``berth-runtime`` console script. Returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"berth-runtime version {VERSION}\nspec: {OCI_SPEC_VERSION}")
        return 0
    if not args.verb:
        parser.print_help(sys.stderr)
        return 2
    try:
        return _dispatch(Runtime(args.root), args)
    except EngineError as exc:
        _report(args, str(exc))
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _report(args, f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        _report(args, "interrupted")
        return 128 + signal.SIGINT
    return 1


def console_main() -> None:
    """Console-script wrapper: exits with ``main``'s code."""
    sys.exit(main())
