"""The machine lifecycle: init, start, stop, restart, rm, ls, inspect, set, logs, ssh.

State lives in :class:`~backend.machine.state.MachineStore`; a running machine is the detached agent process
(:mod:`backend.machine.agent`) and its QEMU child. ``start`` returns once the agent reports ``running`` (the
guest engine answers on the host socket) and raises with the agent's reason otherwise; ``stop`` asks the
guest to power down through QMP (``system_powerdown``), then ``quit`` after ``timeout`` seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from backend.frozen import helper_argv
from backend.machine.errors import MachineError
from backend.machine.image import Progress, create_overlay, fetch_image
from backend.machine.qmp import QMP
from backend.machine.seed import generate_keys, meta_data, user_data, write_private, write_seed_iso
from backend.machine.ssh import GuestSSH
from backend.machine.state import (
    MachineConfig,
    MachineFiles,
    MachineRecord,
    MachineState,
    MachineStore,
    qmp_address,
)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie child of ours does not)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate it there
        import ctypes
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


class MachineManager:
    """Machines under ``store.home``; base images and wheels cached in ``store.home/_cache``."""

    def __init__(self, store: MachineStore) -> None:
        self.store = store
        self.cache = store.home / "_cache"

    def files(self, name: str) -> MachineFiles:
        return MachineFiles(self.store.dir(name))

    def init(self, name: str, config: MachineConfig, progress: Progress | None = None) -> MachineRecord:
        """Create a stopped machine: verified base image, qcow2 overlay, keys, seed ISO.

        Raises MachineError when it exists already; ImageVerificationError (before anything of the machine
        exists) when the image's SHA-256 differs; MachineError for a failed download or qemu-img.
        """
        directory = self.store.dir(name)
        if (directory / "machine.json").exists():
            raise MachineError(f"machine {name} already exists")
        if not config.image_url or not config.image_sha256:
            raise MachineError("--image and --image-sha256 are required")
        if config.cpus < 1 or config.memory_mib < 256 or config.disk_gib < 1:
            raise MachineError("--cpus must be at least 1, --memory at least 256 MiB, --disk-size at least 1 GiB")
        if config.idle_timeout < 0 or not 0 <= config.api_port <= 65535:
            raise MachineError("--idle-timeout must be 0 or more seconds, --api-port a TCP port")
        if config.share is not None and not Path(config.share).is_absolute():
            raise MachineError(f"--share {config.share}: must be an absolute path")
        image = fetch_image(config.image_url, config.image_sha256, self.cache / "images", progress)
        config = replace(config, image_sha256=image.sha256)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            files = MachineFiles(directory)
            create_overlay(image, files.disk, config.disk_gib)
            keys = generate_keys()
            write_private(files.user_key, keys.user_private)
            files.user_key.with_suffix(".pub").write_text(keys.user_public + "\n")
            files.host_key.write_text(keys.host_public + "\n")
            write_seed_iso(files.seed, {"user-data": user_data(keys, config.share), "meta-data": meta_data(name)})
            record = MachineRecord(name, config)
            self.store.save(record)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return record

    def start(self, name: str, timeout: float = 900.0) -> MachineRecord:
        """Start the agent and wait until the machine runs. Raises MachineError (with the agent's reason)
        when it ends in ``error`` or is not running after ``timeout`` seconds."""
        record = self.store.load(name)
        if record.state is MachineState.RUNNING and _alive(record.agent_pid):
            return record
        if record.state is not MachineState.STOPPED and _alive(record.agent_pid):
            raise MachineError(f"machine {name} is {record.state.value}")
        record = self.store.transition(name, MachineState.STARTING, error="", agent_pid=0)
        files = self.files(name)
        env = {**os.environ, "BERTH_MACHINE_HOME": str(self.store.home)}
        detach: dict[str, Any] = {"start_new_session": True}
        if sys.platform == "win32":
            detach = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS}
        with open(files.agent_log, "ab") as log:
            agent = subprocess.Popen([*helper_argv("machine-agent"), name], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, env=env, cwd=Path(__file__).resolve().parents[2],
                                     **detach)
        self.store.update(name, agent_pid=agent.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.store.load(name)
            if record.state is MachineState.RUNNING:
                return record
            if record.state is MachineState.ERROR or agent.poll() is not None:
                raise MachineError(f"machine {name} failed to start: {record.error or 'see ' + str(files.agent_log)}")
            time.sleep(0.1)
        self.stop(name, timeout=5)
        raise MachineError(f"machine {name} did not start within {timeout:.0f}s")

    def stop(self, name: str, timeout: float = 60.0) -> MachineRecord:
        """Power the guest down through QMP (``system_powerdown``; ``quit`` after ``timeout`` seconds) and
        wait for the agent to record ``stopped``. A stopped machine stays as it is."""
        record = self.store.load(name)
        if not _alive(record.agent_pid) and not _alive(record.qemu_pid):
            if record.state is not MachineState.STOPPED:
                record = self.store.transition(name, MachineState.STOPPED, agent_pid=0, qemu_pid=0, ports=[])
            return record
        if record.state is MachineState.RUNNING:
            record = self.store.transition(name, MachineState.STOPPING)
        files = self.files(name)
        control = qmp_address(record, files)
        try:
            with QMP(control) as qmp:
                qmp.execute("cont")  # a resting (paused) guest cannot see the power button
                qmp.execute("system_powerdown")
        except MachineError:
            pass  # QEMU is already going
        if not self._wait_gone(record.qemu_pid, timeout):
            try:
                with QMP(control) as qmp:
                    qmp.execute("quit")
            except MachineError:
                pass
            if not self._wait_gone(record.qemu_pid, 10) and _alive(record.qemu_pid):
                os.kill(record.qemu_pid, signal.SIGKILL)
        if not self._wait_gone(record.agent_pid, 15) and _alive(record.agent_pid):
            os.kill(record.agent_pid, signal.SIGTERM)
            self._wait_gone(record.agent_pid, 5)
        record = self.store.load(name)
        if record.state is not MachineState.STOPPED:
            record = self.store.transition(name, MachineState.STOPPED, agent_pid=0, qemu_pid=0, ports=[])
        return record

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def restart(self, name: str) -> MachineRecord:
        self.stop(name)
        return self.start(name)

    def rm(self, name: str, force: bool = False) -> None:
        """Remove a machine and its files. Raises MachineError for a running one without ``force``."""
        record = self.store.load(name)
        if _alive(record.agent_pid) or _alive(record.qemu_pid):
            if not force:
                raise MachineError(f"machine {name} is {record.state.value}: stop it first or use --force")
            self.stop(name, timeout=10)
        shutil.rmtree(self.store.dir(name))

    def ls(self) -> list[MachineRecord]:
        return [self.store.load(name) for name in self.store.names()]

    def inspect(self, name: str) -> MachineRecord:
        return self.store.load(name)

    def set(self, name: str, cpus: int | None = None, memory_mib: int | None = None, disk_gib: int | None = None,
            idle_timeout: int | None = None, api_port: int | None = None) -> MachineRecord:
        """Change a machine's settings: resources and the API port of a stopped machine (the disk only grows),
        the resource saver's idle time at any time (a running machine's agent reads it again within a second).
        Raises MachineError for a running machine's resources or a value out of range."""
        record = self.store.load(name)
        config = record.config
        if idle_timeout is not None:
            if idle_timeout < 0:
                raise MachineError("--idle-timeout must be 0 (never) or a number of seconds")
            config = replace(config, idle_timeout=idle_timeout)
        if api_port is not None and not 0 <= api_port <= 65535:
            raise MachineError(f"--api-port {api_port}: not a TCP port")
        resources = (cpus, memory_mib, disk_gib, api_port)
        if any(value is not None for value in resources) and record.state is not MachineState.STOPPED:
            raise MachineError(f"machine {name} is {record.state.value}: stop it before changing its resources")
        if disk_gib is not None:
            if disk_gib < config.disk_gib:
                raise MachineError(f"--disk-size cannot shrink the disk ({config.disk_gib} GiB)")
            try:
                subprocess.run(["qemu-img", "resize", "-q", str(self.files(name).disk), f"{disk_gib}G"], check=True,
                               capture_output=True, text=True)
            except subprocess.CalledProcessError as exc:
                raise MachineError(f"qemu-img resize: {exc.stderr.strip()}") from exc
            config = replace(config, disk_gib=disk_gib)
        if cpus is not None:
            config = replace(config, cpus=cpus)
        if memory_mib is not None:
            config = replace(config, memory_mib=memory_mib)
        if api_port is not None:
            config = replace(config, api_port=api_port)
        return self.store.update(name, config=config)

    def logs(self, name: str) -> str:
        """The serial console's log of the current (or last) boot."""
        path = self.files(name).serial_log
        self.store.load(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def ssh(self, name: str) -> GuestSSH:
        """An SSH connection to a running machine (pinned host key). Raises MachineError / HostKeyChanged."""
        record = self.wake(name)
        files = self.files(name)
        return GuestSSH(record.ssh_port, files.user_key, files.host_key)

    def wake(self, name: str, timeout: float = 10.0) -> MachineRecord:
        """A running machine, resumed first if the resource saver rests it: a request its snapshot cannot
        answer (``GET /_ping?wake=1``) through the machine's API. Raises MachineError when it is not running or
        does not resume within ``timeout`` seconds."""
        record = self.store.load(name)
        if record.state is not MachineState.RUNNING:
            raise MachineError(f"machine {name} is {record.state.value}")
        if record.resting:
            files = self.files(name)
            try:
                if record.config.api_port and sys.platform == "win32":
                    sock = socket.create_connection(("127.0.0.1", record.config.api_port), timeout=timeout)
                else:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(timeout)
                    sock.connect(str(files.api_socket))
                with sock:
                    sock.sendall(b"GET /_ping?wake=1 HTTP/1.0\r\nHost: berth\r\n\r\n")
                    while sock.recv(4096):
                        pass
            except OSError as exc:
                raise MachineError(f"machine {name} did not resume: {exc}") from exc
            record = self.store.load(name)
        return record
