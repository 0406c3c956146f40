"""berthd: the composition root of the backend service.

Reads ``/etc/berth/daemon.yaml`` (``--config-file``; flags override it), takes an exclusive lock on
the data root so two daemons never share one, builds the engine's services, and serves the Docker
Engine API on a unix socket created safely: bound with mode 0 while it is prepared, owned by
root:<group> when that group exists, then mode 0660 before it listens. A stale socket file is
replaced. SIGTERM/SIGINT stop it gracefully without waiting for open event streams. TCP is opt-in
(``-H tcp://HOST:PORT``): on a loopback address as it is, elsewhere only with mutual TLS
(``--tlsverify --tlscacert --tlscert --tlskey``, client certificates required), as dockerd advises.
``-H fd://`` serves the sockets systemd passes (socket activation: ``berthd.socket``), ``fd://N`` one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import grp
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from backend.engine.builder.service import BuildService
from backend.engine.containers.service import ContainerService
from backend.engine.errors import EngineError, InvalidParameter, Unavailable
from backend.engine.events import EventBus
from backend.engine.images.service import ImageService
from backend.engine.networks.service import NetworkService, default_bridge_name
from backend.engine.registry.auth import CredentialSource
from backend.engine.system import SystemService
from backend.engine.volumes.service import VolumeService
from backend.server.app import create_app, make_runner
from backend.server.context import ServerContext
from backend.server.routes_archive import routes as archive_routes
from backend.server.routes_build import routes as build_routes
from backend.server.routes_commit import routes as commit_routes
from backend.server.routes_containers import routes as container_routes
from backend.server.routes_containers import rows_with_size
from backend.server.routes_networks import routes as network_routes
from backend.server.routes_volumes import routes as volume_routes
from backend.server.routes_volumes import volume_rows
from backend.version import VERSION, build_stamp

if TYPE_CHECKING:
    from backend.engine.registry.client import RegistryClient

DEFAULT_CONFIG = "/etc/berth/daemon.yaml"
DEFAULT_SOCKET = "unix:///run/berth/berth.sock"

log = logging.getLogger("berthd")


@dataclass
class DaemonConfig:
    """berthd's settings: the config file's keys, overridden by flags."""

    hosts: list[str] = field(default_factory=lambda: [DEFAULT_SOCKET])
    data_root: str = "/var/lib/berth"
    exec_root: str = "/run/berth"
    group: str = "berth"
    pidfile: str | None = None
    log_level: str = "info"
    insecure_registries: list[str] = field(default_factory=list)
    registry_timeout: float = 60.0
    """Seconds a registry may stay silent (and the limit for a whole manifest or token answer)."""
    default_runtime: str | None = None
    cgroup_parent: str = "/berth"
    bridge_name: str = ""
    default_subnet: str = ""
    runtimes: dict[str, str] = field(default_factory=dict)
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berthd", description="Berth's container engine (Docker Engine API)")
    p.add_argument("-H", "--host", action="append", dest="hosts",
                   help="unix:///path/to.sock or tcp://HOST:PORT (repeatable; TCP off loopback needs --tlsverify)")
    p.add_argument("-v", "--version", action="store_true", help="print the version and quit")
    p.add_argument("--tlsverify", action="store_true", help="serve TCP with TLS and require client certificates")
    p.add_argument("--tlscacert", help="CA that signs the clients' certificates")
    p.add_argument("--tlscert", help="the server's certificate")
    p.add_argument("--tlskey", help="the server's key")
    p.add_argument("--data-root")
    p.add_argument("--exec-root")
    p.add_argument("--config-file", default=DEFAULT_CONFIG)
    p.add_argument("-G", "--group")
    p.add_argument("-p", "--pidfile")
    p.add_argument("-l", "--log-level", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    p.add_argument("--default-runtime", help="path of the OCI runtime (default: berth-runtime)")
    p.add_argument("--cgroup-parent", help="parent cgroup of every container (default /berth)")
    p.add_argument("--bridge-name", help="device of the default bridge network (default berth0 for the default "
                   "data root, else one derived from the data root)")
    p.add_argument("--default-subnet", help="subnet of the default bridge (default: a free private one)")
    p.add_argument("--add-runtime", action="append", default=[], metavar="NAME=PATH",
                   help="another OCI runtime, chosen per container with --runtime NAME (repeatable)")
    return p


def load_config(argv: Sequence[str] | None = None) -> DaemonConfig:
    """Config file then flags. Raises InvalidParameter naming the bad key or file."""
    args = _parser().parse_args(argv)
    config = DaemonConfig()
    path = args.config_file
    if os.path.exists(path):
        try:
            with open(path) as f:
                doc: Any = yaml.safe_load(f.read(1 << 20)) or {}
        except OSError as exc:
            raise InvalidParameter(f"config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise InvalidParameter(f"config file {path}: invalid YAML{where}: {problem}") from exc
        if not isinstance(doc, dict):
            raise InvalidParameter(f"config file {path}: expected a mapping of settings")
        for key, value in doc.items():
            name = str(key).replace("-", "_")
            if name not in DaemonConfig.__dataclass_fields__:
                raise InvalidParameter(f"config file {path}: unknown setting {key!r}")
            setattr(config, name, value)
    elif path != DEFAULT_CONFIG:
        raise InvalidParameter(f"config file {path} does not exist")
    for name in ("hosts", "data_root", "exec_root", "group", "pidfile", "log_level", "insecure_registries",
                 "default_runtime", "cgroup_parent", "bridge_name", "default_subnet", "tlsverify", "tlscacert",
                 "tlscert", "tlskey"):
        value = getattr(args, name)
        if value:
            setattr(config, name, value)
    for host in config.hosts:
        if str(host).startswith("tcp://"):
            address, _ = tcp_address(str(host))
            if not config.tlsverify and not _loopback(address):
                raise InvalidParameter(f"-H {host}: TCP off the loopback interface needs mutual TLS "
                                       "(--tlsverify --tlscacert --tlscert --tlskey)")
        elif not str(host).startswith(("unix://", "fd://")):
            raise InvalidParameter(f"-H {host}: expected unix:///path, tcp://HOST:PORT or fd://")
    for item in args.add_runtime:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InvalidParameter(f"--add-runtime {item}: expected NAME=PATH")
        config.runtimes[name] = path
    if isinstance(config.registry_timeout, bool) or not isinstance(config.registry_timeout, int | float) \
            or config.registry_timeout <= 0:
        raise InvalidParameter(f"registry-timeout {config.registry_timeout!r}: expected a number of seconds above 0")
    if config.tlsverify and not (config.tlscacert and config.tlscert and config.tlskey):
        raise InvalidParameter("--tlsverify needs --tlscacert, --tlscert and --tlskey")
    return config


def named_runtimes(config: DaemonConfig) -> tuple[str, dict[str, str]]:
    """(default runtime path, every runtime by name): berth-runtime next to this Python, runc and crun when
    installed, and ``runtimes`` (``--add-runtime NAME=PATH``, or the config file's dockerd-style
    ``runtimes: {NAME: {path: PATH}}``). ``default_runtime`` may be a name or a path. Raises
    InvalidParameter for a malformed entry."""
    found = {name: shutil.which(name) for name in ("runc", "crun")}
    runtimes = {"berth-runtime": os.path.join(os.path.dirname(sys.executable), "berth-runtime")}
    runtimes |= {name: path for name, path in found.items() if path}
    configured: Any = config.runtimes or {}  # from the config file: any YAML
    if not isinstance(configured, dict):
        raise InvalidParameter("runtimes: expected a mapping of names to paths")
    for name, entry in configured.items():
        path = entry.get("path") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not isinstance(path, str) or not path:
            raise InvalidParameter(f"runtime {name!r}: expected a path")
        runtimes[name] = path
    choice = config.default_runtime or "berth-runtime"
    return runtimes.get(choice, choice), runtimes


def tcp_address(host: str) -> tuple[str, int]:
    """(address, port) of ``tcp://HOST:PORT`` (``[::1]`` for IPv6). Raises InvalidParameter."""
    rest = host.removeprefix("tcp://").rstrip("/")
    address, _, port = rest.rpartition(":")
    address = address.strip("[]")
    if not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidParameter(f"-H {host}: expected tcp://HOST:PORT")
    return address, int(port)


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def tls_context(config: DaemonConfig) -> ssl.SSLContext | None:
    """Mutual TLS for TCP when ``tlsverify``: the server's certificate, client certificates required and
    checked against ``tlscacert``. Raises InvalidParameter for unreadable files."""
    if not config.tlsverify:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=config.tlscacert)
        context.load_cert_chain(config.tlscert, config.tlskey)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidParameter(f"TLS: {exc}") from exc
    context.verify_mode = ssl.CERT_REQUIRED
    return context


SD_LISTEN_FDS_START = 3


def activation_sockets(host: str, environ: dict[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets systemd passed for ``fd://`` (all of them) or ``fd://N`` (that one), following
    sd_listen_fds(3): ``LISTEN_PID`` must be this process and ``LISTEN_FDS`` counts descriptors from 3.
    Raises InvalidParameter when none were passed or N is not among them."""
    env = os.environ if environ is None else environ
    count = int(env.get("LISTEN_FDS", "0") or 0) if env.get("LISTEN_PID") == str(os.getpid()) else 0
    fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
    wanted = host.removeprefix("fd://")
    if wanted:
        if not wanted.isdigit() or int(wanted) not in fds:
            raise InvalidParameter(f"-H {host}: descriptor {wanted} was not passed by systemd")
        fds = [int(wanted)]
    if not fds:
        raise InvalidParameter(f"-H {host}: no sockets were passed by systemd (start berthd through berthd.socket)")
    sockets = []
    for fd in fds:
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


PRIVATE_DATA_DIRS = ("image", "builder", "containers", "network")
"""Top-level data-root directories only root may enter (volumes/ is 0701, as dockerd's)."""


def lock_data_root(data_root: str) -> int:
    """Hold an exclusive lock on ``<data_root>/berthd.lock`` for the daemon's life. Raises Unavailable.

    The data root is made 0711 or tighter and :data:`PRIVATE_DATA_DIRS` 0700 or tighter (older data roots
    are tightened), so no other user reads image content, build contexts or container files."""
    for path, mask in ((data_root, 0o711), *((os.path.join(data_root, name), 0o700) for name in PRIVATE_DATA_DIRS)):
        os.makedirs(path, mode=mask, exist_ok=True)
        os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & mask)
    fd = os.open(os.path.join(data_root, "berthd.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise Unavailable(f"another berthd is using the data root {data_root}") from exc
    return fd


def open_socket(path: str, group: str) -> socket.socket:
    """Bind ``path`` safely (see the module docstring) and listen."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not os.path.isdir(path):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0)
    gid = 0
    with contextlib.suppress(KeyError):
        gid = grp.getgrnam(group).gr_gid
    os.chown(path, 0 if os.geteuid() == 0 else -1, gid if os.geteuid() == 0 else -1)
    os.chmod(path, 0o660)
    sock.listen(128)
    return sock


async def serve(config: DaemonConfig) -> None:
    """Run until SIGTERM/SIGINT."""
    def registry_for(credentials: CredentialSource | None = None) -> RegistryClient:
        from backend.engine.registry.client import RegistryClient  # loaded on the first registry request

        return RegistryClient(credentials=credentials, insecure_registries=config.insecure_registries,
                              timeout=config.registry_timeout)

    images = ImageService(os.path.join(config.data_root, "image"), registry_for)
    images.recover()
    events = EventBus()

    runtime, runtimes = named_runtimes(config)
    volumes = VolumeService(os.path.join(config.data_root, "volumes"), events,
                            users=lambda name: containers.mounts.users(name))
    networks = NetworkService(os.path.join(config.data_root, "network"), config.exec_root, events,
                              bridge_name=config.bridge_name or default_bridge_name(config.data_root),
                              default_subnet=config.default_subnet)
    await networks.start()
    containers = ContainerService(os.path.join(config.data_root, "containers"), images, events,
                                  runtime=runtime, runtime_root=os.path.join(config.exec_root, "runtime"),
                                  cgroup_parent=config.cgroup_parent, volumes=volumes, networks=networks,
                                  runtimes=runtimes)
    networks.containers = containers.store.get
    containers.recover()
    await containers.recover_running()
    system = SystemService(config.data_root, images, events, containers=containers.counts,
                           runtimes=containers.runtimes, default_runtime=containers.default_runtime)
    builder = BuildService(os.path.join(config.data_root, "builder"), images, containers, registry_for=registry_for)
    context = ServerContext(images=images, system=system, events=events, registry_for=registry_for,
                            image_in_use=containers.in_use(), container_rows=lambda: rows_with_size(containers),
                            volume_rows=lambda: volume_rows(volumes))
    app: web.Application = create_app(context, extra_routes=[container_routes(containers), archive_routes(containers),
                                                                  volume_routes(volumes), network_routes(networks),
                                                                  commit_routes(containers), build_routes(builder)])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = make_runner(app)
    await runner.setup()
    tls = tls_context(config)
    for host in config.hosts:
        if host.startswith("fd://"):
            for sock in activation_sockets(host):
                await web.SockSite(runner, sock).start()
                log.info(json.dumps({"msg": "API listening", "systemd socket": str(sock.getsockname())}))
            continue
        if host.startswith("tcp://"):
            address, port = tcp_address(host)
            await web.TCPSite(runner, address, port, ssl_context=tls).start()
            log.info(json.dumps({"msg": "API listening", "tcp": f"{address}:{port}", "tls": tls is not None}))
            continue
        path = host.removeprefix("unix://")
        await web.SockSite(runner, open_socket(path, config.group)).start()
        log.info(json.dumps({"msg": "API listening", "socket": path}))
    await stop.wait()
    log.info(json.dumps({"msg": "shutting down"}))
    events.close()  # open /events streams end now; other open streams get make_runner's grace
    await runner.shutdown()
    await runner.cleanup()
    await containers.close()
    await networks.close()
    for host in config.hosts:
        if host.startswith("unix://"):
            with contextlib.suppress(OSError):
                os.unlink(host.removeprefix("unix://"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``berthd``."""
    try:
        if _parser().parse_args(argv).version:
            stamp = build_stamp()
            print(f"Berth version {VERSION}" + (f", build {stamp}" if stamp else ""))
            return 0
        config = load_config(argv)
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                            level=getattr(logging, config.log_level.upper().replace("FATAL", "CRITICAL")
                                          .replace("WARN", "WARNING")))
        lock = lock_data_root(config.data_root)
        if config.pidfile:
            with open(config.pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
        try:
            asyncio.run(serve(config))
        finally:
            os.close(lock)
            if config.pidfile:
                with contextlib.suppress(OSError):
                    os.unlink(config.pidfile)
    except EngineError as exc:
        print(f"berthd: {exc}", file=sys.stderr)
        return 1
    return 0


def console_main() -> None:
    sys.exit(main())
