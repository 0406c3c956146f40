"""Resource usage of a container read from its cgroup, in the shape of Docker's stats document.

``sample(cgroup)`` reads CPU time, memory and pids once; ``stats_document(now, previous)`` pairs two
samples as ``cpu_stats``/``precpu_stats`` so clients compute CPU percentages as they do with dockerd.
Works on cgroup v1 (cpuacct, memory, pids) and v2 (cpu.stat, memory.current, pids.current).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

from backend.engine.runtime.cgroups import Cgroup

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    read: str
    cpu_total_ns: int
    cpu_user_ns: int
    cpu_kernel_ns: int
    system_ns: int
    online_cpus: int
    memory_usage: int
    memory_max_usage: int
    memory_limit: int
    memory_stat: dict[str, int]
    pids: int


def _read_int(path: str, default: int = 0) -> int:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return default
    if text == "max":
        return default
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return default


def _read_keyed(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if value.strip().isdigit():
                    out[key] = int(value)
    except OSError:
        pass
    return out


def _system_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * 1_000_000_000 // _TICKS


def _host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def sample(cgroup: Cgroup) -> Sample:
    """One reading of the cgroup's counters (missing files read as zero)."""
    paths = cgroup.paths()
    host_memory = _host_memory()
    if cgroup.version == 2:
        base = paths[""]
        cpu = _read_keyed(f"{base}/cpu.stat")
        limit = _read_int(f"{base}/memory.max", host_memory)
        return Sample(
            read=_now(), cpu_total_ns=cpu.get("usage_usec", 0) * 1000, cpu_user_ns=cpu.get("user_usec", 0) * 1000,
            cpu_kernel_ns=cpu.get("system_usec", 0) * 1000, system_ns=_system_ns(), online_cpus=os.cpu_count() or 1,
            memory_usage=_read_int(f"{base}/memory.current"), memory_max_usage=_read_int(f"{base}/memory.peak"),
            memory_limit=min(limit, host_memory) if host_memory else limit,
            memory_stat=_read_keyed(f"{base}/memory.stat"), pids=_read_int(f"{base}/pids.current"))
    cpuacct = paths.get("cpuacct", "")
    memory = paths.get("memory", "")
    cpu_stat = _read_keyed(f"{cpuacct}/cpuacct.stat")
    tick_ns = 1_000_000_000 // _TICKS
    limit = _read_int(f"{memory}/memory.limit_in_bytes", host_memory)
    return Sample(
        read=_now(), cpu_total_ns=_read_int(f"{cpuacct}/cpuacct.usage"),
        cpu_user_ns=cpu_stat.get("user", 0) * tick_ns, cpu_kernel_ns=cpu_stat.get("system", 0) * tick_ns,
        system_ns=_system_ns(), online_cpus=os.cpu_count() or 1,
        memory_usage=_read_int(f"{memory}/memory.usage_in_bytes"),
        memory_max_usage=_read_int(f"{memory}/memory.max_usage_in_bytes"),
        memory_limit=min(limit, host_memory) if host_memory else limit,
        memory_stat=_read_keyed(f"{memory}/memory.stat"), pids=_read_int(f"{paths.get('pids', '')}/pids.current"))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _cpu(s: Sample | None) -> dict[str, Any]:
    if s is None:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {"cpu_usage": {"total_usage": s.cpu_total_ns, "usage_in_kernelmode": s.cpu_kernel_ns,
                          "usage_in_usermode": s.cpu_user_ns},
            "system_cpu_usage": s.system_ns, "online_cpus": s.online_cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def stats_document(container_id: str, name: str, now: Sample, previous: Sample | None) -> dict[str, Any]:
    """Docker's ``GET /containers/{id}/stats`` document for one reading."""
    return {
        "id": container_id, "name": "/" + name, "read": now.read,
        "preread": previous.read if previous else "0001-01-01T00:00:00Z",
        "pids_stats": {"current": now.pids},
        "cpu_stats": _cpu(now), "precpu_stats": _cpu(previous),
        "memory_stats": {"usage": now.memory_usage, "max_usage": now.memory_max_usage, "limit": now.memory_limit,
                         "stats": now.memory_stat},
        "blkio_stats": {}, "num_procs": 0, "storage_stats": {},
    }
