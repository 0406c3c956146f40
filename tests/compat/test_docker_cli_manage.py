"""The docker CLI against berthd: update, container prune, --init, system df, info counts, ps status words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]
CGROUP = Path("/sys/fs/cgroup")


def _memory_limit(daemon: Berthd, cid: str) -> int:
    v1 = CGROUP / "memory" / daemon.cgroup_parent / cid / "memory.limit_in_bytes"
    v2 = CGROUP / daemon.cgroup_parent / cid / "memory.max"
    return int((v1 if v1.exists() else v2).read_text())


def test_update_changes_limits_of_a_running_container_and_later_starts(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    cid = d.docker("run", "-d", "--name", "upd", "-m", "64m", "busybox", "sleep", "1000").stdout.strip()
    assert _memory_limit(d, cid) == 64 << 20
    d.docker("update", "-m", "96m", "--memory-swap", "-1", "--pids-limit", "50", "--restart", "on-failure:3", "upd")
    assert _memory_limit(d, cid) == 96 << 20
    host = json.loads(d.docker("inspect", "--format", "{{json .HostConfig}}", "upd").stdout)
    assert (host["Memory"], host["PidsLimit"], host["RestartPolicy"]) == (96 << 20, 50,
                                                                         {"Name": "on-failure", "MaximumRetryCount": 3})
    d.docker("restart", "-t", "0", "upd")
    assert _memory_limit(d, cid) == 96 << 20  # kept for the next start
    bad = d.docker("update", "-m", "1m", "upd", check=False)
    assert bad.returncode != 0 and "Minimum memory limit allowed is 6MB" in bad.stderr
    bad = d.docker("update", "--restart", "sometimes", "upd", check=False)
    assert bad.returncode != 0 and "restart policy" in bad.stderr.lower()
    assert _memory_limit(d, cid) == 96 << 20  # a refused update changes nothing
    d.docker("rm", "-f", "upd")


def test_container_prune_removes_only_stopped_ones_matching_the_filters(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    d.docker("run", "--name", "pr-done", "--label", "team=a", "busybox", "sh", "-c", "echo x > /file")
    d.docker("create", "--name", "pr-new", "--label", "team=b", "busybox", "true")
    d.docker("run", "-d", "--name", "pr-live", "--label", "team=a", "busybox", "sleep", "1000")
    out = d.docker("container", "prune", "-f", "--filter", "label=team=a").stdout
    assert "Deleted Containers:" in out and "Total reclaimed space:" in out
    names = d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "pr-done" not in names and {"pr-new", "pr-live"} <= set(names)
    d.docker("container", "prune", "-f", "--filter", "until=1h")  # created just now: kept
    assert "pr-new" in d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    d.docker("container", "prune", "-f")
    names = d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "pr-new" not in names and "pr-live" in names
    bad = d.docker("container", "prune", "-f", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter" in bad.stderr
    d.docker("rm", "-f", "pr-live")


def test_init_runs_a_reaping_init_as_pid_1(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    out = d.docker("run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '").stdout
    assert out.startswith("/sbin/docker-init -- sh -c")
    # An orphan whose parent exits is reaped by the init: no zombie is left behind.
    script = "sh -c 'sleep 0.2 & exit 0'; sleep 1; ps -o stat,comm | grep -c '^Z' || true"
    assert d.docker("run", "--rm", "--init", "busybox", "sh", "-c", script).stdout.strip() == "0"
    code = d.docker("run", "--rm", "--init", "busybox", "sh", "-c", "exit 9", check=False).returncode
    assert code == 9
    d.docker("create", "--name", "initpath", "--init", "busybox", "echo", "hi")
    assert d.docker("inspect", "--format", "{{.Path}} {{.Args}}", "initpath").stdout.strip() == "echo [hi]"
    d.docker("rm", "initpath")


def test_info_counts_system_df_and_ps_status(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    d.docker("run", "--name", "df-done", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /blob; exit 2", check=False)
    d.docker("run", "-d", "--name", "df-live", "busybox", "sleep", "1000")
    info = d.docker("info", "--format", "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}}").stdout.split()
    assert int(info[0]) >= 2 and int(info[1]) >= 1 and int(info[2]) >= 1
    df = json.loads(d.docker("system", "df", "--format", "{{json .}}").stdout.splitlines()[1])
    assert df["Type"] == "Containers" and int(df["TotalCount"]) >= 2
    verbose = d.docker("system", "df", "-v").stdout
    assert "df-done" in verbose and "df-live" in verbose
    status = dict(line.split(" ", 1) for line in
                  d.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.splitlines())
    assert status["df-done"].startswith("Exited (2) ") and status["df-done"].endswith(" ago")
    assert status["df-live"].startswith("Up ")
    d.docker("rm", "-f", "df-done", "df-live")


def test_runtime_per_container(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    runtimes = json.loads(d.docker("info", "--format", "{{json .Runtimes}}").stdout)
    assert "berth-runtime" in runtimes and "runc" in runtimes
    assert d.docker("info", "--format", "{{.DefaultRuntime}}").stdout.strip() == "berth-runtime"
    assert d.docker("run", "--rm", "--runtime", "runc", "busybox", "echo", "from runc").stdout == "from runc\n"
    d.docker("run", "-d", "--name", "on-runc", "--runtime", "runc", "busybox", "sleep", "1000")
    assert d.docker("inspect", "-f", "{{.HostConfig.Runtime}}", "on-runc").stdout.strip() == "runc"
    assert d.docker("exec", "on-runc", "echo", "exec ok").stdout == "exec ok\n"
    assert "sleep 1000" in d.docker("top", "on-runc").stdout
    d.docker("pause", "on-runc")
    d.docker("unpause", "on-runc")
    d.docker("rm", "-f", "on-runc")
    bad = d.docker("run", "--rm", "--runtime", "nosuch", "busybox", "true", check=False)
    assert bad.returncode != 0 and "Unknown runtime specified nosuch" in bad.stderr
