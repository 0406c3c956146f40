"""Troubleshooting (Qt-free): named checks of the engine and the host, the daemon's log, a diagnostics bundle.

Each check returns a :class:`CheckResult`: its name, ok/warn/fail, what was found and, when it is not ok,
what to do about it. :func:`run_checks` runs them all; the engine is asked once (``/_ping``, ``/version``,
``/info``) and the host checks use what it said when it answered. Nothing here changes anything but the
bundle file it is asked to write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from app.formatting import describe_error, size
from backend.api.client import EngineClient
from backend.api.errors import APIError, EngineUnreachable
from backend.api.types import SystemInfo, Version

try:
    APP_VERSION = importlib.metadata.version("berth")
except importlib.metadata.PackageNotFoundError:
    APP_VERSION = "0.0.0"
DEFAULT_DATA_ROOT = Path("/var/lib/berth")
MIN_FREE = 2 << 30
LOG_FILES = (Path("/var/log/berthd.log"),)  # where scripts/run.sh sends berthd's output
GROUP_HINT = "add yourself to the berth group: sudo usermod -aG berth $USER, then log in again"
NO_LOG = "no log found"


class CheckStatus(Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome; ``hint`` says what to do when it is not ok ("" when ok)."""

    name: str
    status: CheckStatus
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class Diagnosis:
    """Every check's result, in order, and what the engine said (None when it did not answer)."""

    results: list[CheckResult]
    version: Version | None
    info: SystemInfo | None


@dataclass(frozen=True)
class DaemonLog:
    """The tail of berthd's log and where it came from (``source`` is "" and ``text`` NO_LOG when none was
    found)."""

    source: str
    text: str


def _address(client: EngineClient) -> str:
    address = client.address
    return f"unix://{address.path}" if address.scheme == "unix" else f"tcp://{address.host}:{address.port}"


async def check_engine(client: EngineClient) -> tuple[CheckResult, Version | None, SystemInfo | None]:
    """"Engine socket": whether the engine answers at the client's address, with its version and info."""
    name, where = "Engine socket", _address(client)
    try:
        await client.ping()
        version, info = await client.version(), await client.info()
    except EngineUnreachable as exc:
        cause = exc.__cause__
        if isinstance(cause, PermissionError):
            return CheckResult(name, CheckStatus.FAIL, f"permission denied on {where}", GROUP_HINT), None, None
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc.message
        return (CheckResult(name, CheckStatus.FAIL, f"no engine answers at {where} ({reason})",
                            "start the engine from the Engine page, or: sudo systemctl start berthd (or sudo "
                            "berthd)"), None, None)
    except APIError as exc:
        return CheckResult(name, CheckStatus.FAIL, f"{where}: {describe_error(exc)}",
                           "check the engine's log below"), None, None
    return CheckResult(name, CheckStatus.OK, f"the engine answers at {where}"), version, info


def check_version(version: Version | None, app_version: str = APP_VERSION) -> CheckResult:
    """"Engine version": the daemon's version is the app's (warn when they differ or it is unknown)."""
    name = "Engine version"
    if version is None:
        return CheckResult(name, CheckStatus.WARN, "unknown: the engine did not answer", "start the engine first")
    detail = f"engine {version.version} (API {version.api_version}), app {app_version}"
    if version.version != app_version:
        return CheckResult(name, CheckStatus.WARN, detail, "install the same Berth version for the engine and app")
    return CheckResult(name, CheckStatus.OK, detail)


def check_cgroups(info: SystemInfo | None, root: Path = Path("/sys/fs/cgroup")) -> CheckResult:
    """"Cgroups": v1 or v2, from ``/info`` when the engine answered, else from the host's cgroup mount."""
    name = "Cgroups"
    if info is not None and info.cgroup_version:
        driver = info.raw.get("CgroupDriver") or "cgroupfs"
        return CheckResult(name, CheckStatus.OK, f"cgroup v{info.cgroup_version} (driver {driver})")
    if (root / "cgroup.controllers").exists():
        return CheckResult(name, CheckStatus.OK, f"cgroup v2 ({root})")
    if (root / "memory").is_dir():
        return CheckResult(name, CheckStatus.OK, f"cgroup v1 ({root})")
    return CheckResult(name, CheckStatus.FAIL, f"no cgroup hierarchy at {root}",
                       "mount cgroup2 on /sys/fs/cgroup (systemd does this at boot)")


def check_overlayfs(filesystems: Path = Path("/proc/filesystems"),
                    module: Path = Path("/sys/module/overlay")) -> CheckResult:
    """"Overlay filesystem": the kernel knows overlay (listed in /proc/filesystems or its module loaded)."""
    name = "Overlay filesystem"
    try:
        known = any(line.split()[-1:] == ["overlay"] for line in filesystems.read_text().splitlines())
    except OSError as exc:
        return CheckResult(name, CheckStatus.WARN, f"cannot read {filesystems}: {exc.strerror}")
    if known or module.exists():
        return CheckResult(name, CheckStatus.OK, "overlay is available")
    return CheckResult(name, CheckStatus.FAIL, "the kernel does not list overlay", "load it: sudo modprobe overlay")


def check_network(ip_forward: Path = Path("/proc/sys/net/ipv4/ip_forward"),
                  which: Callable[[str], str | None] = shutil.which) -> CheckResult:
    """"Network": iptables is installed and IPv4 forwarding is on (containers reach the outside)."""
    name = "Network"
    tools = [tool for tool in ("iptables", "iptables-nft", "iptables-legacy") if which(tool)]
    if not tools:
        return CheckResult(name, CheckStatus.FAIL, "iptables is not installed",
                           "install it: sudo apt-get install iptables")
    try:
        forwarding = ip_forward.read_text().strip() == "1"
    except OSError as exc:
        return CheckResult(name, CheckStatus.WARN, f"cannot read {ip_forward}: {exc.strerror}")
    if not forwarding:
        return CheckResult(name, CheckStatus.WARN, f"{tools[0]} found; IPv4 forwarding is off",
                           "berthd turns it on when it sets up a network; or: sudo sysctl -w net.ipv4.ip_forward=1")
    return CheckResult(name, CheckStatus.OK, f"{tools[0]} found, IPv4 forwarding on")


def check_disk(info: SystemInfo | None, default: Path = DEFAULT_DATA_ROOT, minimum: int = MIN_FREE) -> CheckResult:
    """"Disk space": free space where the engine keeps its data (``DockerRootDir``, else ``default``; the
    nearest existing parent is measured); warn below ``minimum`` bytes."""
    name = "Disk space"
    root = Path(info.docker_root_dir) if info is not None and info.docker_root_dir else default
    measured = next((p for p in (root, *root.parents) if p.exists()), Path("/"))
    usage = shutil.disk_usage(measured)
    detail = f"{size(usage.free)} free of {size(usage.total)} at {root}"
    if usage.free < minimum:
        return CheckResult(name, CheckStatus.WARN, detail,
                           f"free space below {size(minimum)}: docker system prune, or the Prune buttons of the "
                           "Engine page")
    return CheckResult(name, CheckStatus.OK, detail)


async def run_checks(client: EngineClient, app_version: str = APP_VERSION) -> Diagnosis:
    """Run every check (engine first; the host checks use its answers)."""
    engine, version, info = await check_engine(client)
    results = [engine, check_version(version, app_version), check_cgroups(info), check_overlayfs(),
               check_network(), check_disk(info)]
    return Diagnosis(results, version, info)


def _tail(path: Path, lines: int) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - 256 * 1024))
        return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])


async def daemon_log(lines: int = 200, *, journal: bool = True, files: Sequence[Path] = LOG_FILES) -> DaemonLog:
    """The last ``lines`` of berthd's log: the systemd journal of berthd.service when it has entries (and
    ``journal``), else the first of ``files`` that exists; else NO_LOG. Never raises."""
    journalctl = shutil.which("journalctl") if journal else None
    if journalctl:
        try:
            proc = await asyncio.create_subprocess_exec(
                journalctl, "-u", "berthd.service", "-n", str(lines), "--no-pager", "-q", "-o", "short-iso",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await asyncio.wait_for(proc.communicate(), 10)
            if proc.returncode == 0 and out.strip():
                return DaemonLog("journalctl -u berthd.service", out.decode(errors="replace").rstrip())
        except (OSError, TimeoutError):
            pass
    for path in files:
        try:
            return DaemonLog(str(path), _tail(path, lines))  # at most 256 KiB read
        except OSError:
            continue
    return DaemonLog("", NO_LOG)


_PROXY_CREDENTIALS = re.compile(r"//[^/@\s]+@")


def _redacted_info(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``/info`` without credentials in its proxy URLs."""
    return {key: _PROXY_CREDENTIALS.sub("//xxxxx:xxxxx@", value) if key in ("HttpProxy", "HttpsProxy")
            and isinstance(value, str) else value for key, value in doc.items()}


def write_bundle(path: Path, diagnosis: Diagnosis, settings: Mapping[str, str], log: DaemonLog) -> list[str]:
    """Write the diagnostics zip at ``path``: checks.json, version.json, info.json (null when the engine did not
    answer; proxy credentials masked), settings.json (the app's exported settings), daemon.log. Returns the
    names written. Raises OSError."""
    checks = [dataclasses.asdict(r) | {"status": r.status.value} for r in diagnosis.results]
    files = {
        "checks.json": json.dumps({"app_version": APP_VERSION, "checks": checks}, indent=2),
        "version.json": json.dumps(diagnosis.version.raw if diagnosis.version else None, indent=2),
        "info.json": json.dumps(_redacted_info(diagnosis.info.raw) if diagnosis.info else None, indent=2),
        "settings.json": json.dumps(dict(settings), indent=2),
        "daemon.log": f"# {log.source or 'no source'}\n{log.text}\n",
    }
    temp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, text in files.items():
            bundle.writestr(name, text)
    os.replace(temp, path)
    return list(files)
