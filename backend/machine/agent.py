"""The host side of a running machine: ``python -m backend.machine.agent NAME`` (started detached by
``berth machine start``; ``BERTH_MACHINE_HOME`` says where machines live).

It guarantees, in order: QEMU runs with the machine's argv (:mod:`backend.machine.qemu`); the guest's
``BOOTED`` (sshd runs) and ``READY`` (berthd answers) arrive on the virtio-serial socket, never by polling
SSH; on the first boot, and whenever the host's build of berthd differs from the guest's, berthd's wheels are
copied over SFTP and installed; one SSH connection with the pinned host key carries the guest API to
``<machine>/berth.sock`` (and to ``127.0.0.1:<api_port>`` when set) and every published port to the host's
``127.0.0.1`` (TCP through direct-tcpip channels; UDP through QMP ``hostfwd_add``), bound when a container
with fixed host ports is created (so they answer as soon as its start returns) or when it starts, and released
when it dies or is removed. On Windows (no unix sockets in CPython) the API is served only on the TCP port,
and QEMU's QMP and ready ports are TCP on the loopback. The resource saver (:mod:`backend.machine.saver`)
pauses an idle machine. The record becomes ``running`` once the socket serves. When QEMU exits (``stop``),
forwards are closed, the socket removed and the record set ``stopped``; when the boot fails it is set
``error`` with the reason. SIGTERM ends QEMU and the agent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from backend.api.client import EngineClient
from backend.api.errors import APIError
from backend.machine.errors import HostKeyChanged, MachineError
from backend.machine.forward import SocketForwarder
from backend.machine.image import BaseImage
from backend.machine.qemu import (
    Accel,
    Arch,
    HostOS,
    QemuPaths,
    QemuSpec,
    Resources,
    choose_accel,
    host_os,
    kvm_runs_guests,
    qemu_argv,
)
from backend.machine.qmp import QMP
from backend.machine.saver import ResourceSaver
from backend.machine.seed import GUEST_SOCKET, GUEST_WHEELS
from backend.machine.ssh import GuestSSH
from backend.machine.state import (
    TRANSITIONS,
    MachineFiles,
    MachineRecord,
    MachineState,
    MachineStore,
    engine_address,
    machine_home,
    qmp_address,
)
from backend.machine.wheels import guest_wheels

log = logging.getLogger("berth.machine.agent")
BOOT_TIMEOUT = 900.0
"""Seconds from QEMU's start to READY (a first boot under TCG installs berthd too)."""
KVM_GRACE = 45.0
"""Seconds an automatically chosen KVM gets to report BOOTED; nested KVM that creates VMs but crawls through
the kernel's start fails this, and the machine boots again under TCG (remembered in ``_cache/kvm-stalled``)."""
KVM_STALLED = "kvm-stalled"
SSH_TIMEOUT = 60.0
SSH_ATTEMPTS = 3


class _KvmStalled(Exception):
    """KVM was chosen automatically and the guest said nothing within :data:`KVM_GRACE`."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def base_image(store: MachineStore, sha256: str) -> BaseImage:
    directory = store.home / "_cache" / "images" / sha256
    return BaseImage(sha256, directory / "disk.qcow2", directory / "vmlinuz", directory / "initrd.img")


def pick_accel(store: MachineStore, record: MachineRecord) -> Accel:
    """The machine's ``--accel``, else the host's (KVM only when it runs guests and never stalled a boot here).
    Raises MachineError for an unknown name."""
    if record.config.accel:
        try:
            return Accel(record.config.accel)
        except ValueError as exc:
            raise MachineError(f"unknown accelerator {record.config.accel!r}") from exc
    host = host_os()
    kvm = host is HostOS.LINUX and not (store.home / "_cache" / KVM_STALLED).exists() and kvm_runs_guests()
    return choose_accel(host, kvm)


def machine_argv(store: MachineStore, record: MachineRecord, accel: Accel, ssh_port: int, ready_port: int = 0,
                 qmp_port: int = 0) -> list[str]:
    """QEMU's argv for ``record`` on this host (``ready_port`` and ``qmp_port``: Windows' TCP control ports).
    Raises MachineError for a combination QEMU cannot run."""
    files = MachineFiles(store.dir(record.name))
    config = record.config
    host = host_os()
    arch = Arch.AARCH64 if platform.machine().lower() in ("arm64", "aarch64") else Arch.X86_64
    image = base_image(store, config.image_sha256)
    share = Path(config.share) if config.share else None
    paths = QemuPaths(disk=files.disk, seed=files.seed, serial_log=files.serial_log, ready_socket=files.ready_socket,
                      qmp_socket=files.qmp_socket, kernel=image.kernel, initrd=image.initrd, share=share,
                      qmp_port=qmp_port, ready_port=ready_port)
    try:
        return qemu_argv(QemuSpec(host, arch, accel, Resources(config.cpus, config.memory_mib), paths, ssh_port,
                                  restrict_network=config.restrict_network))
    except ValueError as exc:
        raise MachineError(str(exc)) from exc


def fixed_bindings(host_config: dict[str, Any]) -> dict[str, object] | None:
    """A created container's port bindings when every host port is fixed (None when some are chosen at start:
    ``-P``, port 0, a range)."""
    bindings: dict[str, object] = host_config.get("PortBindings") or {}
    fixed = all(isinstance(b, dict) and str(b.get("HostPort", "")).isdigit() and b["HostPort"] != "0"
                for entries in bindings.values() if isinstance(entries, list) for b in entries)
    return bindings if fixed and not host_config.get("PublishAllPorts") else None


@dataclass
class Forward:
    """One host port forwarded into the guest (``forwarder`` None for UDP, which QEMU forwards itself) and the
    containers it is published for (a port stays while one of them needs it)."""

    forwarder: SocketForwarder | None
    owners: set[str] = field(default_factory=set)


class Agent:
    """One machine's host side (see the module docstring)."""

    def __init__(self, store: MachineStore, name: str) -> None:
        self.store = store
        self.name = name
        self.files = MachineFiles(store.dir(name))
        self.qemu: subprocess.Popen[bytes] | None = None
        self.ssh: GuestSSH | None = None
        self.api: list[SocketForwarder] = []
        self.saver: ResourceSaver | None = None
        self.running: set[str] | None = None
        """IDs of the guest's running containers (None until listed)."""
        self.forwards: dict[tuple[int, str], Forward] = {}
        """By (host port, protocol)."""
        self.accel = Accel.TCG
        self.ready_port: socket.socket | None = None
        """Kept open while the machine runs, so the guest's writes to the ready port never block."""
        self.unix = host_os() is not HostOS.WINDOWS
        """Whether this host has unix sockets for QEMU's control ports and the API (CPython on Windows has not)."""

    # -- boot ---------------------------------------------------------------------------------------

    def _launch(self) -> socket.socket:
        record = self.store.load(self.name)
        ssh_port = free_port()
        ready_port = qmp_port = 0
        if self.unix:
            ready = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.files.ready_socket.unlink(missing_ok=True)
            ready.bind(str(self.files.ready_socket))
            ready.listen(1)
        else:
            ready = socket.create_server(("127.0.0.1", 0), backlog=1)
            ready_port, qmp_port = ready.getsockname()[1], free_port()
        self.files.serial_log.unlink(missing_ok=True)
        argv = machine_argv(self.store, record, self.accel, ssh_port, ready_port, qmp_port)
        log.info("starting %s", " ".join(argv))
        with open(self.files.dir / "qemu.log", "wb") as out:
            self.qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.store.update(self.name, ssh_port=ssh_port, qmp_port=qmp_port, qemu_pid=self.qemu.pid,
                          accel=self.accel.value)
        ready.settimeout(30)
        try:
            conn, _ = ready.accept()
        except OSError as exc:
            raise MachineError(f"QEMU did not open the ready port: {self._qemu_tail()}") from exc
        finally:
            ready.close()
        return conn

    def _qemu_tail(self) -> str:
        text = (self.files.dir / "qemu.log").read_text(errors="replace").strip()
        return text.splitlines()[-1] if text else "see qemu.log"

    def _boot(self) -> None:
        """Launch QEMU and wait for READY, provisioning berthd on the first boot. Raises MachineError;
        _KvmStalled when an automatically chosen KVM stays silent for :data:`KVM_GRACE` seconds."""
        started = time.monotonic()
        grace = KVM_GRACE if self.accel is Accel.KVM and not self.store.load(self.name).config.accel else None
        conn = self._launch()
        conn.settimeout(1.0)
        buffer = b""
        while True:
            if self.qemu is not None and self.qemu.poll() is not None:
                raise MachineError(f"QEMU exited ({self.qemu.returncode}) during boot: {self._qemu_tail()}")
            if time.monotonic() - started > BOOT_TIMEOUT:
                raise MachineError(f"the machine was not ready after {BOOT_TIMEOUT:.0f}s (see serial.log)")
            try:
                chunk = conn.recv(256)
            except TimeoutError:
                if grace is not None and time.monotonic() - started > grace:
                    conn.close()
                    raise _KvmStalled from None
                continue
            if not chunk:
                raise MachineError("the ready port closed during boot")
            buffer += chunk
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                word = line.strip().decode(errors="replace")
                log.info("guest: %s after %.1fs", word, time.monotonic() - started)
                grace = None
                if word == "BOOTED":
                    if self.ssh is None:
                        self._connect()
                    self._provision_if_needed()
                elif word == "READY":
                    if self.ssh is None:
                        self._connect()
                    self.store.update(self.name, boot_seconds=round(time.monotonic() - started, 2))
                    self.ready_port = conn
                    return

    def _connect(self) -> None:
        """SSH to the guest; a slow guest (TCG on a busy host) gets :data:`SSH_ATTEMPTS` tries of
        :data:`SSH_TIMEOUT` seconds. A changed host key fails at once."""
        record = self.store.load(self.name)
        for attempt in range(SSH_ATTEMPTS):
            try:
                self.ssh = GuestSSH(record.ssh_port, self.files.user_key, self.files.host_key, timeout=SSH_TIMEOUT)
                return
            except HostKeyChanged:
                raise
            except MachineError as exc:
                if attempt == SSH_ATTEMPTS - 1:
                    raise
                log.warning("%s; trying again", exc)

    def _provision_if_needed(self) -> None:
        """Install berthd in the guest on the first boot, and again when the host's build differs from the
        guest's (a provisioned machine keeps its berthd when this host has no source tree to build from)."""
        record = self.store.load(self.name)
        try:
            wheels = guest_wheels(self.store.home / "_cache")
        except MachineError as exc:
            if not record.provisioned:
                raise
            log.warning("keeping the machine's berthd %s: %s", record.guest_version, exc)
            return
        version = wheels[0].parent.name
        if record.provisioned and record.guest_version == version:
            return
        assert self.ssh is not None
        self.ssh.run(f"rm -rf {GUEST_WHEELS} && mkdir -p {GUEST_WHEELS}")
        for wheel in wheels:
            self.ssh.put(wheel, f"{GUEST_WHEELS}/{wheel.name}")
        log.info("installing berthd %s in the guest (%d wheels; it had %s)", version, len(wheels),
                 record.guest_version or "none")
        self.ssh.run("/usr/local/sbin/berth-guest-install")  # returns once the new berthd answers
        self.store.update(self.name, provisioned=True, guest_version=version)

    # -- forwarding ---------------------------------------------------------------------------------

    def _publish(self, container: str, ports: dict[str, object]) -> None:
        """Forward ``ports`` (a container's ``Ports`` or ``PortBindings``) for ``container``; a port already
        forwarded gains it as an owner. A port taken on the host is logged and skipped."""
        assert self.ssh is not None
        ssh = self.ssh
        for spec, bindings in ports.items():
            if not isinstance(bindings, list):
                continue
            _, _, proto = spec.partition("/")
            proto = proto or "tcp"
            for port in sorted({int(b["HostPort"]) for b in bindings if isinstance(b, dict) and b.get("HostPort")}):
                forward = self.forwards.get((port, proto))
                if forward is None:
                    try:
                        if proto == "udp":
                            self._hostfwd("add", port)
                            forward = Forward(None)
                        else:
                            forward = Forward(SocketForwarder.tcp(port, functools.partial(ssh.open_tcp, port)))
                    except MachineError as exc:
                        log.warning("%s", exc)
                        continue
                    self.forwards[(port, proto)] = forward
                forward.owners.add(container)
        self._save_ports()

    def _unpublish(self, container: str) -> None:
        """Drop ``container`` from every forward; forwards nobody needs any more are closed."""
        for key, forward in list(self.forwards.items()):
            forward.owners.discard(container)
            if forward.owners:
                continue
            del self.forwards[key]
            if forward.forwarder is not None:
                forward.forwarder.close()
            else:
                with suppress(MachineError):
                    self._hostfwd("remove", key[0])
        self._save_ports()

    def _hostfwd(self, verb: str, port: int) -> None:
        rule = f"udp:127.0.0.1:{port}-:{port}" if verb == "add" else f"udp:127.0.0.1:{port}"
        with QMP(qmp_address(self.store.load(self.name), self.files)) as qmp:
            out = qmp.execute("human-monitor-command", **{"command-line": f"hostfwd_{verb} net0 {rule}"})
        if any(word in str(out).lower() for word in ("invalid", "could not")):
            raise MachineError(f"QEMU: {str(out).strip()}")

    def _save_ports(self) -> None:
        ports = [f"127.0.0.1:{port}/{proto}" for port, proto in sorted(self.forwards, key=lambda k: (k[1], k[0]))]
        if ports != self.store.load(self.name).ports:
            self.store.update(self.name, ports=ports)

    async def _watch_containers(self) -> None:
        """Publish the ports of running containers, then follow events until QEMU exits. A container's fixed
        port bindings are read and bound on the host at ``create``, so they answer the moment its ``start``
        returns (random host ports are read from the started container); ``die`` releases them (a later
        ``start`` binds them again) and so does ``destroy`` of a container that never ran."""
        planned: dict[str, dict[str, object]] = {}
        address = engine_address(self.store.load(self.name), self.files, self.unix)
        async with EngineClient(address, timeout=30) as client:
            since = time.time()
            running: set[str] = set()
            for summary in await client.list_containers():
                details = await client.inspect_container(summary.id)
                running.add(details.id)
                self._publish(details.id, details.network_settings.get("Ports") or {})
            self.running = running
            async for event in client.events(since=since, filters={"type": ["container"], "event": [
                    "create", "start", "die", "destroy"]}):
                container = event.actor.id
                if event.action == "create":
                    with suppress(APIError):
                        fixed = fixed_bindings((await client.inspect_container(container)).host_config)
                        if fixed is not None:
                            planned[container] = fixed
                            self._publish(container, fixed)
                elif event.action == "start":
                    running.add(container)
                    ports = planned.get(container)
                    if ports is None:
                        try:
                            ports = (await client.inspect_container(container)).network_settings.get("Ports") or {}
                        except APIError:
                            continue
                    self._publish(container, ports)
                elif event.action == "die":
                    running.discard(container)
                    self._unpublish(container)
                elif event.action == "destroy":
                    planned.pop(container, None)
                    self._unpublish(container)

    # -- lifecycle ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Boot, serve until QEMU exits; the process's exit code."""
        try:
            self.accel = pick_accel(self.store, self.store.load(self.name))
            try:
                self._boot()
            except _KvmStalled:
                log.warning("KVM did not boot the guest within %.0fs: booting under TCG (and from now on)", KVM_GRACE)
                (self.store.home / "_cache" / KVM_STALLED).touch()
                self._stop_qemu()
                self.accel = Accel.TCG
                self._boot()
            self._serve_api()
            self.store.transition(self.name, MachineState.RUNNING, error="", resting=False)
        except MachineError as exc:
            log.error("%s", exc)
            self._shutdown(MachineState.ERROR, str(exc))
            return 1
        assert self.qemu is not None
        threading.Thread(target=self._watch_events, daemon=True).start()
        if self.saver is not None:
            threading.Thread(target=self.saver.watch, daemon=True).start()
        self.qemu.wait()
        log.info("QEMU exited (%s)", self.qemu.returncode)
        self._shutdown(MachineState.STOPPED, "")
        return 0

    def _serve_api(self) -> None:
        """The guest API on the host: the unix socket, and ``127.0.0.1:<api_port>`` when configured, both
        behind the resource saver. Raises MachineError when the port is taken."""
        assert self.ssh is not None
        ssh = self.ssh
        config = self.store.load(self.name).config

        def open_api() -> paramiko.Channel:
            return ssh.open_unix(GUEST_SOCKET)

        def set_clock() -> None:
            ssh.run(f"date -u -s @{time.time():.3f} >/dev/null", timeout=30)

        def running() -> int | None:
            return None if self.running is None else len(self.running)

        def record(resting: bool) -> None:
            self.store.update(self.name, resting=resting)

        saver = ResourceSaver(qmp_address(self.store.load(self.name), self.files), open_api, running,
                              lambda: self.store.load(self.name).config.idle_timeout, set_clock, record)
        self.saver = saver
        if self.unix:
            self.api.append(SocketForwarder.unix(self.files.api_socket, open_api, saver.gate, saver.conversation))
        elif not config.api_port:
            raise MachineError("this host has no unix sockets: give the machine an --api-port")
        if config.api_port:
            self.api.append(SocketForwarder.tcp(config.api_port, open_api, saver.gate, saver.conversation))

    def _watch_events(self) -> None:
        while self.qemu is not None and self.qemu.poll() is None:
            try:
                asyncio.run(self._watch_containers())
            except (APIError, OSError, MachineError) as exc:
                log.info("event stream ended: %s", exc)
            time.sleep(0.5)

    def _stop_qemu(self) -> None:
        if self.qemu is not None and self.qemu.poll() is None:
            self.qemu.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.qemu.wait(10)
            if self.qemu.poll() is None:
                self.qemu.kill()
                self.qemu.wait()

    def _shutdown(self, state: MachineState, error: str) -> None:
        if self.saver is not None:
            self.saver.close()
        for forwarder in self.api:
            forwarder.close()
        for forward in self.forwards.values():
            if forward.forwarder is not None:
                forward.forwarder.close()
        self.forwards.clear()
        self._stop_qemu()
        if self.ssh is not None:
            self.ssh.close()
        if self.ready_port is not None:
            self.ready_port.close()
        for path in (self.files.api_socket, self.files.ready_socket, self.files.qmp_socket):
            path.unlink(missing_ok=True)
        record = self.store.load(self.name)
        target = state if state is record.state or state in TRANSITIONS[record.state] else MachineState.STOPPED
        self.store.transition(self.name, target, error=error, agent_pid=0, qemu_pid=0, ports=[], resting=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m backend.machine.agent NAME``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m backend.machine.agent NAME\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # its failures arrive as MachineError
    agent = Agent(MachineStore(machine_home()), args[0])

    def terminate(signum: int, frame: object) -> None:
        if agent.qemu is None:
            sys.exit(1)
        agent.qemu.terminate()  # run() then shuts down as after a power-off

    signal.signal(signal.SIGTERM, terminate)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
