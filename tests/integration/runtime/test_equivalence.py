"""berth-runtime and runc, side by side: the same bundle must give the same observable result.

Every case runs against the parametrized ``runtime`` (berth, runc). For berth the case also runs the
same scenario through runc (``reference``) and compares the two observations, normalised where values
legitimately differ (pids, namespace inode numbers, paths of per-runtime bundles). Each case also
asserts the expected value directly, so a case fails even if both runtimes were wrong.

Select with ``-k runc`` (the reference runtime alone) or ``-k berth``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backend.engine.runtime.defaults import (
    DEFAULT_PATH,
    DOCKER_DEFAULT_CAPABILITIES,
    DOCKER_MASKED_PATHS,
    DOCKER_READONLY_PATHS,
)
from backend.engine.runtime.seccomp import default_docker_profile, oci_seccomp_from_docker_profile
from tests.integration.runtime.harness import (
    ConsoleSocket,
    Runtime,
    cap_mask,
    cgroup_hierarchies,
    compare_with_reference,
    parse_mountinfo,
    process_state,
    status_fields,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

CAP_KEYS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
DEFAULT_MASK = cap_mask(DOCKER_DEFAULT_CAPABILITIES)
ZERO_MASK = "0" * 16
MiB = 1024 * 1024

Scenario = Callable[[Runtime], Any]


def equivalent(runtime: Runtime, reference: Runtime | None, scenario: Scenario, what: str) -> Any:
    return compare_with_reference(runtime, reference, scenario, what=what)


def run_ok(rt: Runtime, bundle: Any, *extra: str) -> str:
    res = rt.run(bundle, *extra)
    assert res.returncode == 0, f"{rt.name} run exited {res.returncode}: stderr={res.stderr.strip()!r}"
    return res.stdout


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def seccomp_for(caps: Any) -> dict[str, object]:
    return oci_seccomp_from_docker_profile(default_docker_profile(), list(caps))


# --------------------------------------------------------------------------------------------------
# process identity: capabilities, no_new_privs, seccomp, users, hostname, pid 1


@pytest.mark.parametrize(
    ("caps", "user", "expected"),
    [
        pytest.param(
            None,
            (0, 0),
            {"CapInh": ZERO_MASK, "CapPrm": DEFAULT_MASK, "CapEff": DEFAULT_MASK, "CapBnd": DEFAULT_MASK},
            id="docker-default",
        ),
        pytest.param(
            ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_TIME"],
            (0, 0),
            {
                "CapInh": ZERO_MASK,
                "CapPrm": cap_mask(["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_TIME"]),
                "CapEff": cap_mask(["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_TIME"]),
                "CapBnd": cap_mask(["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_TIME"]),
            },
            id="custom",
        ),
        pytest.param(
            None,
            (1000, 1000),
            {"CapInh": ZERO_MASK, "CapPrm": ZERO_MASK, "CapEff": ZERO_MASK, "CapBnd": DEFAULT_MASK},
            id="non-root-user",
        ),
    ],
)
def test_capabilities(runtime, reference, make_bundle, caps, user, expected):
    def scenario(rt: Runtime) -> dict[str, str]:
        bundle = make_bundle(["cat", "/proc/self/status"], capabilities=caps, user=user)
        return status_fields(run_ok(rt, bundle), CAP_KEYS)

    got = equivalent(runtime, reference, scenario, "capability sets")
    assert got == {**expected, "CapAmb": ZERO_MASK}


def test_signals_start_at_their_defaults(runtime, reference, make_bundle):
    """No ignored or blocked signals leak from the runtime (Python ignores SIGPIPE/SIGXFSZ itself)."""
    def scenario(rt: Runtime) -> dict[str, str]:
        bundle = make_bundle(["sh", "-c", "cat /proc/self/status; yes | head -n 1"])
        out = run_ok(rt, bundle)
        return {**status_fields(out, ["SigIgn", "SigBlk"]), "pipe": out.splitlines()[-1]}

    assert equivalent(runtime, reference, scenario, "signal dispositions") == {
        "SigIgn": ZERO_MASK, "SigBlk": ZERO_MASK, "pipe": "y"}


@pytest.mark.parametrize("nnp", [False, True], ids=["nnp-off", "nnp-on"])
def test_no_new_privileges(runtime, reference, make_bundle, nnp):
    def scenario(rt: Runtime) -> dict[str, str]:
        bundle = make_bundle(["cat", "/proc/self/status"], no_new_privileges=nnp)
        return status_fields(run_ok(rt, bundle), ["NoNewPrivs"])

    assert equivalent(runtime, reference, scenario, "NoNewPrivs") == {"NoNewPrivs": "1" if nnp else "0"}


@pytest.mark.parametrize("mode", [0, 2], ids=["seccomp-off", "seccomp-filter"])
def test_seccomp_mode(runtime, reference, make_bundle, mode):
    profile = seccomp_for(DOCKER_DEFAULT_CAPABILITIES) if mode == 2 else None

    def scenario(rt: Runtime) -> dict[str, str]:
        bundle = make_bundle(["cat", "/proc/self/status"], seccomp=profile)
        return status_fields(run_ok(rt, bundle), ["Seccomp"])

    assert equivalent(runtime, reference, scenario, "Seccomp mode") == {"Seccomp": str(mode)}


def _parse_id(text: str) -> dict[str, Any]:
    fields = dict(part.split("=", 1) for part in text.split())
    return {
        "uid": fields["uid"],
        "gid": fields["gid"],
        "groups": sorted(fields.get("groups", "").split(",")) if "groups" in fields else [],
    }


@pytest.mark.parametrize(
    ("user", "extra_gids", "expected"),
    [
        pytest.param((0, 0), (), {"uid": "0(root)", "gid": "0(root)", "groups": ["0(root)"]}, id="root"),
        pytest.param(
            (1000, 1000),
            (5, 100),
            {"uid": "1000(user)", "gid": "1000(user)", "groups": sorted(["1000(user)", "100(users)", "5(tty)"])},
            id="user-with-groups",
        ),
        pytest.param((65534, 65534), (), {"uid": "65534(nobody)", "gid": "65534(nogroup)", "groups": []}, id="nobody"),
    ],
)
def test_user_and_groups(runtime, reference, make_bundle, user, extra_gids, expected):
    def scenario(rt: Runtime) -> dict[str, Any]:
        bundle = make_bundle(["id"], user=user, additional_gids=extra_gids)
        return _parse_id(run_ok(rt, bundle))

    got = equivalent(runtime, reference, scenario, "id output")
    if expected["groups"]:
        assert got == expected
    else:  # dockerd puts the primary gid in additionalGids: groups is that gid alone
        assert got["uid"] == expected["uid"] and got["gid"] == expected["gid"]
        assert got["groups"] in ([], [expected["gid"]])


def test_hostname(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(sh("hostname; uname -n; cat /proc/sys/kernel/hostname"), hostname="eq-host")
        return run_ok(rt, bundle).split()

    assert equivalent(runtime, reference, scenario, "hostname") == ["eq-host"] * 3


def test_process_is_pid_1(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(sh("echo $$ $PPID; echo /proc/[0-9]*"))
        return run_ok(rt, bundle).split()

    # pid 1, parent outside the namespace (0); no other process of the host or the runtime is visible
    assert equivalent(runtime, reference, scenario, "pid") == ["1", "0", "/proc/1"]


# --------------------------------------------------------------------------------------------------
# filesystem: mounts, masked and read-only paths, read-only rootfs

FLAG_OPTIONS = {"ro", "rw", "nosuid", "nodev", "noexec", "relatime", "noatime", "nodiratime"}


def _mount_view(text: str) -> set[tuple[str, str, frozenset[str]]]:
    return {(m.mount_point, m.fstype, m.vfs_options & FLAG_OPTIONS) for m in parse_mountinfo(text)}


def test_mount_points_and_flags(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> set[tuple[str, str, frozenset[str]]]:
        bundle = make_bundle(["cat", "/proc/self/mountinfo"])
        return _mount_view(run_ok(rt, bundle))

    got = equivalent(runtime, reference, scenario, "mount table")
    by_point: dict[str, tuple[str, frozenset[str]]] = {p: (t, o) for p, t, o in got}
    expected = {
        "/": {"ro"},
        "/proc": {"rw", "nosuid", "nodev", "noexec"},
        "/dev": {"rw", "nosuid"},
        "/dev/pts": {"rw", "nosuid", "noexec"},
        "/sys": {"ro", "nosuid", "nodev", "noexec"},
        "/dev/mqueue": {"rw", "nosuid", "nodev", "noexec"},
        "/dev/shm": {"rw", "nosuid", "nodev", "noexec"},
    }
    for point, flags in expected.items():
        assert point in by_point, f"{point} not mounted: {sorted(by_point)}"
        assert flags <= by_point[point][1], f"{point}: {sorted(by_point[point][1])} lacks {sorted(flags)}"
    assert by_point["/proc"][0] == "proc" and by_point["/sys"][0] == "sysfs"
    assert by_point["/dev"][0] == "tmpfs" and by_point["/dev/pts"][0] == "devpts"
    for path in DOCKER_READONLY_PATHS:
        if os.path.exists(path):
            assert "ro" in by_point[path][1], f"read-only path {path} is not mounted ro"
    for path in DOCKER_MASKED_PATHS:
        if os.path.exists(path):
            assert path in by_point, f"masked path {path} is not covered by a mount"
    cgroup_points = [p for p in by_point if p.startswith("/sys/fs/cgroup")]
    assert cgroup_points, "no cgroup mount at /sys/fs/cgroup"
    for point in cgroup_points:
        if point != "/sys/fs/cgroup" or by_point[point][0] != "tmpfs":
            assert "ro" in by_point[point][1], f"{point} should be read-only: {by_point[point]}"


def test_masked_paths(runtime, reference, make_bundle):
    files = [p for p in DOCKER_MASKED_PATHS if os.path.isfile(p)]
    dirs = [p for p in DOCKER_MASKED_PATHS if os.path.isdir(p)]
    script = "; ".join(
        [f'echo "{p}=$(wc -c < {p} 2>/dev/null || echo unreadable)"' for p in files]
        + [f'echo "{p}=$(ls -A {p} | wc -l)"' for p in dirs]
        + [f'[ -e {p} ] && echo "{p}=exists" || echo "{p}=absent"' for p in ("/proc/kcore",)]
    )

    def scenario(rt: Runtime) -> dict[str, str]:
        bundle = make_bundle(sh(script))
        return dict(line.split("=", 1) for line in run_ok(rt, bundle).split())

    got = equivalent(runtime, reference, scenario, "masked paths")
    assert "/proc/keys" in files and "/sys/firmware" in dirs, "host lacks the paths this case relies on"
    for p in files:
        assert got[p] in ("0", "unreadable"), f"{p} is readable inside the container: {got[p]} bytes"
    for p in dirs:
        assert got[p] == "0", f"{p} is not empty inside the container"
    if not os.path.exists("/proc/kcore"):
        assert got["/proc/kcore"] == "absent"


def test_readonly_paths(runtime, reference, make_bundle):
    targets = ["/proc/sys/kernel/domainname", "/proc/sysrq-trigger", "/proc/sys/vm/overcommit_memory"]
    script = "; ".join(f'(echo 1 > {t}) 2>/dev/null && echo "{t}=written" || echo "{t}=denied"' for t in targets)

    def scenario(rt: Runtime) -> dict[str, str]:
        bundle = make_bundle(sh(script))
        return dict(line.split("=", 1) for line in run_ok(rt, bundle).split())

    got = equivalent(runtime, reference, scenario, "read-only paths")
    assert got == dict.fromkeys(targets, "denied")


@pytest.mark.parametrize("readonly", [True, False], ids=["readonly-rootfs", "writable-rootfs"])
def test_rootfs_readonly_flag(runtime, reference, make_bundle, readonly):
    def scenario(rt: Runtime) -> tuple[int, str]:
        bundle = make_bundle(sh("touch /probe && echo created"), writable=not readonly)
        res = rt.run(bundle)
        return res.returncode, res.stdout.strip() + ("|EROFS" if "Read-only file system" in res.stderr else "")

    got = equivalent(runtime, reference, scenario, "write to /")
    assert got == ((1, "|EROFS") if readonly else (0, "created"))


def test_devices(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(sh("ls /dev; stat -c '%n %t:%T' /dev/null /dev/zero /dev/full /dev/urandom"))
        return sorted(run_ok(rt, bundle).splitlines())

    got = equivalent(runtime, reference, scenario, "/dev contents")
    for name in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue"):
        assert name in got, f"/dev/{name} missing: {got}"
    assert "/dev/null 1:3" in got and "/dev/zero 1:5" in got and "/dev/urandom 1:9" in got


# --------------------------------------------------------------------------------------------------
# exit codes and signals


@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_code(runtime, reference, make_bundle, code):
    def scenario(rt: Runtime) -> int:
        return rt.run(make_bundle(sh(f"exit {code}"))).returncode

    assert equivalent(runtime, reference, scenario, "exit code") == code


def _killed_by(rt: Runtime, bundle: Any, sig: str, ready: str = "ready") -> int:
    fg = rt.run_background(bundle)
    fg.wait_for_output(ready)
    rt.kill(bundle.cid, sig)
    return fg.wait()


def test_sigkill_gives_137(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> int:
        return _killed_by(rt, make_bundle(sh("echo ready; exec sleep 30")), "KILL")

    assert equivalent(runtime, reference, scenario, "exit code after SIGKILL") == 137


def test_sigterm_without_pid_namespace_gives_143(runtime, reference, make_bundle):
    # PID 1 of a pid namespace ignores signals it has no handler for; outside one, SIGTERM kills.
    def scenario(rt: Runtime) -> int:
        bundle = make_bundle(sh("echo ready; exec sleep 30"), namespaces=("network", "ipc", "uts", "mount", "cgroup"))
        return _killed_by(rt, bundle, "TERM")

    assert equivalent(runtime, reference, scenario, "exit code after SIGTERM") == 143


def test_sigterm_to_pid_1_without_handler_is_ignored(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> tuple[str, int]:
        bundle = make_bundle(sh("echo ready; exec sleep 30"))
        fg = rt.run_background(bundle)
        fg.wait_for_output("ready")
        rt.kill(bundle.cid, "TERM")
        time.sleep(0.2)
        status = rt.state(bundle.cid)["status"]
        rt.kill(bundle.cid, "KILL")
        return status, fg.wait()

    assert equivalent(runtime, reference, scenario, "SIGTERM to pid 1") == ("running", 137)


def test_trapped_signal_runs_handler(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> tuple[int, str]:
        bundle = make_bundle(sh("trap 'echo got-USR1; exit 7' USR1; echo ready; sleep 30 & wait"))
        fg = rt.run_background(bundle)
        fg.wait_for_output("ready")
        rt.kill(bundle.cid, "USR1")
        rc = fg.wait()
        return rc, fg.stdout().split()[-1]

    assert equivalent(runtime, reference, scenario, "trapped USR1") == (7, "got-USR1")


# --------------------------------------------------------------------------------------------------
# resources: memory (OOM), pids


def _oom_kills(cgroups_path: str) -> int | None:
    rel = cgroups_path.strip("/")
    for h in cgroup_hierarchies():
        for name in ("memory.oom_control", "memory.events"):
            f = h / rel / name
            if f.exists():
                for line in f.read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
    return None


def test_memory_limit_oom_kill_exits_137(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> int:
        bundle = make_bundle(["tail", "-c", "100m", "/dev/zero"], memory_limit=32 * MiB, memory_swap=32 * MiB)
        return rt.run(bundle, timeout=20).returncode

    assert equivalent(runtime, reference, scenario, "exit code of an OOM-killed init") == 137


def _find_oom_count(data: Any) -> int | None:
    """The first integer under a key that looks like an OOM-kill counter (oom_kill, oomKill...)."""
    if isinstance(data, dict):
        for key, value in data.items():
            norm = key.lower().replace("_", "").replace("-", "")
            if norm in ("oomkill", "oomkills", "oomkillcount") and isinstance(value, int):
                return value
        for value in data.values():
            found = _find_oom_count(value)
            if found is not None:
                return found
    if isinstance(data, list):
        for value in data:
            found = _find_oom_count(value)
            if found is not None:
                return found
    return None


def test_oom_kill_is_counted(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> dict[str, Any]:
        bundle = make_bundle(
            sh("tail -c 100m /dev/zero; echo tail=$?; exec sleep 30"), memory_limit=32 * MiB, memory_swap=32 * MiB
        )
        cid, out = rt.create_started(bundle)
        deadline = time.monotonic() + 15
        while "tail=" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        kills = _oom_kills(bundle.cgroups_path)
        stats = rt.cli("events", "--stats", cid)
        assert stats.returncode == 0, f"{rt.name} events --stats: {stats.stderr.strip()!r}"
        data = json.loads(stats.stdout)
        if rt.name != "runc":  # runc 1.1 reports no OOM counter in its stats
            count = _find_oom_count(data)
            assert count is not None and count >= 1, f"no OOM kill count >= 1 in events --stats: {data}"
        return {"tail": out.read_text().strip(), "oom_kill>=1": (kills or 0) >= 1, "type": data.get("type")}

    got = equivalent(runtime, reference, scenario, "OOM accounting")
    assert got == {"tail": "tail=137", "oom_kill>=1": True, "type": "stats"}


def test_pids_limit_stops_fork_bomb(runtime, reference, make_bundle):
    script = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; " + (
        "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done; echo survived"
    )

    def scenario(rt: Runtime) -> tuple[int, str, bool]:
        res = rt.run(make_bundle(sh(script), pids_limit=16))
        return res.returncode, res.stdout.strip(), "can't fork" in res.stderr

    assert equivalent(runtime, reference, scenario, "fork bomb under pids limit") == (2, "16", True)


# --------------------------------------------------------------------------------------------------
# seccomp denials, network namespace, terminal


def test_seccomp_denies_namespace_and_mount_syscalls(runtime, reference, make_bundle):
    profile = seccomp_for(DOCKER_DEFAULT_CAPABILITIES)
    # unshare(CLONE_NEWUSER) needs no capability: only the seccomp filter refuses it
    script = "unshare -U true; echo unshare=$?; mount -t tmpfs none /mnt; echo mount=$?"

    def scenario(rt: Runtime) -> dict[str, Any]:
        confined = rt.run(make_bundle(sh(script), seccomp=profile))
        free = rt.run(make_bundle(sh(script)))
        return {
            "confined": confined.stdout.split(),
            "confined_eperm": "Operation not permitted" in confined.stderr,
            "mount_denied": "permission denied" in confined.stderr,
            "unconfined": free.stdout.split(),
        }

    got = equivalent(runtime, reference, scenario, "seccomp denials")
    assert got == {
        "confined": ["unshare=1", "mount=1"],
        "confined_eperm": True,
        "mount_denied": True,
        "unconfined": ["unshare=0", "mount=1"],
    }


def test_network_namespace_has_only_lo(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(sh("ls /sys/class/net; ip -o link | cut -d: -f2"))
        return run_ok(rt, bundle).split()

    assert equivalent(runtime, reference, scenario, "network interfaces") == ["lo", "lo"]


def test_terminal_gives_a_tty(runtime, reference, make_bundle):
    script = "tty; test -t 0 && echo in-tty; test -t 1 && echo out-tty; echo TERM=$TERM"

    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(sh(script), terminal=True)
        with ConsoleSocket() as console:
            res = rt.cli("run", "-d", "--console-socket", str(console.path), "-b", str(bundle.path), bundle.cid)
            rt.track(bundle.cid)
            assert res.returncode == 0, f"{rt.name} run -d --console-socket: {res.stderr.strip()!r}"
            console.receive()
            output = console.read_until_closed()
        rt.wait_status(bundle.cid, "stopped")
        return output.decode(errors="replace").replace("\r\n", "\n").split()

    got = equivalent(runtime, reference, scenario, "terminal output")
    assert got == ["/dev/pts/0", "in-tty", "out-tty", "TERM=xterm"]


# --------------------------------------------------------------------------------------------------
# exec, environment, cwd, rlimits, user namespace, sysctls, cgroups


def test_exec_joins_the_container_namespaces(runtime, reference, make_bundle):
    script = (
        "for n in /proc/1/ns/*; do b=${n##*/}; "
        '[ "$(readlink $n)" = "$(readlink /proc/self/ns/$b)" ] && echo $b=same || echo $b=different; done'
    )

    def scenario(rt: Runtime) -> dict[str, str]:
        bundle = make_bundle(["sleep", "30"])
        cid, _ = rt.create_started(bundle)
        res = rt.exec(cid, "sh", "-c", script)
        assert res.returncode == 0, f"{rt.name} exec: {res.stderr.strip()!r}"
        return dict(line.split("=") for line in res.stdout.split())

    got = equivalent(runtime, reference, scenario, "namespaces of an exec'd process")
    for ns in ("cgroup", "ipc", "mnt", "net", "pid", "uts", "user"):
        assert got.get(ns) == "same", f"exec did not join {ns}: {got}"


def test_exec_options(runtime, reference, make_bundle, tmp_path):
    process = {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1000},
        "args": ["sh", "-c", "id -u; pwd; echo $FOO"],
        "env": ["PATH=/bin", "FOO=from-process-file"],
        "cwd": "/tmp",
    }
    process_file = tmp_path / "process.json"
    process_file.write_text(json.dumps(process))

    def scenario(rt: Runtime) -> dict[str, Any]:
        cid, _ = rt.create_started(make_bundle(["sleep", "30"]))
        opts = rt.exec(cid, "--cwd", "/dev", "--env", "FOO=bar", "--", "sh", "-c", "pwd; echo $FOO; id -u")
        from_file = rt.exec(cid, "--process", str(process_file), "--")
        failing = rt.exec(cid, "sh", "-c", "exit 3")
        return {
            "opts": opts.stdout.split(),
            "file": from_file.stdout.split(),
            "rc": failing.returncode,
        }

    got = equivalent(runtime, reference, scenario, "exec options")
    assert got == {"opts": ["/dev", "bar", "0"], "file": ["1000", "/tmp", "from-process-file"], "rc": 3}


@pytest.mark.parametrize("user", [(0, 0), (1000, 1000)], ids=["root", "user"])
def test_env_and_cwd(runtime, reference, make_bundle, user):
    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(["env"], env=["FOO=bar", "EMPTY="], cwd="/tmp", hostname="envhost", user=user)
        env = sorted(run_ok(rt, bundle).splitlines())
        pwd = run_ok(rt, make_bundle(["pwd"], cwd="/tmp")).strip()
        return [*env, f"cwd={pwd}"]

    got = equivalent(runtime, reference, scenario, "environment and cwd")
    home = "/root" if user[0] == 0 else "/home/user"
    env = ["EMPTY=", "FOO=bar", f"HOME={home}", "HOSTNAME=envhost", f"PATH={DEFAULT_PATH}"]
    assert got == [*sorted(env), "cwd=/tmp"]


def test_rlimits(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(
            sh("ulimit -n; ulimit -Hn; grep -E 'Max (open files|core file size)' /proc/self/limits"),
            rlimits=[("RLIMIT_NOFILE", 1024, 2048), ("RLIMIT_CORE", 0, 0)],
        )
        return run_ok(rt, bundle).split()

    got = equivalent(runtime, reference, scenario, "rlimits")
    assert got[:2] == ["1024", "2048"]
    assert " ".join(got[2:]) == "Max core file size 0 0 bytes Max open files 1024 2048 files"


def test_user_namespace_mappings(runtime, reference, make_bundle):
    script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u /bin/busybox"

    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(
            sh(script),
            uid_mappings=[(0, 100000, 65536)],
            gid_mappings=[(0, 100000, 65536)],
            world_traversable=True,
            readonly_rootfs=True,
        )
        return run_ok(rt, bundle).split()

    got = equivalent(runtime, reference, scenario, "user namespace")
    # files owned by host root are unmapped (overflow uid 65534) inside; root inside may not write them
    assert got == ["0", "100000", "65536", "0", "100000", "65536", "0", "65534"]


def test_default_sysctls(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(
            sh("cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range")
        )
        return run_ok(rt, bundle).split()

    assert equivalent(runtime, reference, scenario, "sysctls") == ["0", "0", "2147483647"]


def test_cgroup_placement(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> dict[str, Any]:
        bundle = make_bundle(["sleep", "30"])
        cid, _ = rt.create_started(bundle)
        pid = rt.state(cid)["pid"]
        host_view = {}
        # A hybrid host's cgroup2 "unified" line ("0::...") is left out: berth deliberately does not
        # place containers there (no limits live there, and the move costs an RCU grace period).
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers:
                host_view[controllers] = path == bundle.cgroups_path
        inside = rt.exec(cid, "cat", "/proc/self/cgroup").stdout.split()
        return {"host": host_view,
                "inside_paths": sorted({line.split(":", 2)[2] for line in inside if not line.startswith("0::")})}

    got = equivalent(runtime, reference, scenario, "cgroup placement")
    for controller in ("memory", "pids", "cpu", "devices", "freezer"):
        if any(h.name == controller or controller in h.name.split(",") for h in cgroup_hierarchies()):
            assert got["host"].get(controller) is True, f"not in {controller} cgroup: {got['host']}"
    # cgroup namespace: the container sees its own cgroup as the root
    assert got["inside_paths"] == ["/"]


# --------------------------------------------------------------------------------------------------
# lifecycle verbs: state, pause/resume, ps, list


def test_state_lifecycle(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> list[dict[str, Any]]:
        bundle = make_bundle(["sleep", "30"])
        seen = []

        def snap() -> None:
            st = rt.state(bundle.cid)
            seen.append(
                {
                    "keys": sorted(set(st) & {"ociVersion", "id", "pid", "status", "bundle"}),
                    "id": st["id"] == bundle.cid,
                    "status": st["status"],
                    "pid>0": isinstance(st.get("pid"), int) and st["pid"] > 0,
                    "bundle": st["bundle"] == str(bundle.path),
                    "ociVersion": str(st["ociVersion"]).startswith("1."),
                }
            )

        rt.create(bundle)
        snap()
        rt.start(bundle.cid)
        snap()
        rt.kill(bundle.cid, "KILL")
        rt.wait_status(bundle.cid, "stopped")
        snap()
        deleted = rt.delete(bundle.cid)
        gone = rt.cli("state", bundle.cid)
        seen.append({"delete": deleted.returncode, "state_after_delete_fails": gone.returncode != 0})
        return seen

    got = equivalent(runtime, reference, scenario, "state through the lifecycle")
    keys = ["bundle", "id", "ociVersion", "pid", "status"]
    common = {"keys": keys, "id": True, "bundle": True, "ociVersion": True}
    assert got == [
        {**common, "status": "created", "pid>0": True},
        {**common, "status": "running", "pid>0": True},
        {**common, "status": "stopped", "pid>0": False},
        {"delete": 0, "state_after_delete_fails": True},
    ]


def test_pause_and_resume(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> list[str]:
        bundle = make_bundle(["sleep", "30"])
        cid, _ = rt.create_started(bundle)
        pid = rt.state(cid)["pid"]
        statuses = [rt.state(cid)["status"]]
        rt.must("pause", cid)
        statuses.append(rt.state(cid)["status"])
        # a frozen task sleeps in the freezer (D or S) and does not run; check it is not running
        statuses.append("frozen" if process_state(pid) in ("D", "S") else f"state-{process_state(pid)}")
        rt.must("resume", cid)
        statuses.append(rt.state(cid)["status"])
        return statuses

    assert equivalent(runtime, reference, scenario, "pause/resume") == ["running", "paused", "frozen", "running"]


def test_ps_lists_container_processes(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> dict[str, Any]:
        cid, _ = rt.create_started(make_bundle(["sleep", "30"]))
        pid = rt.state(cid)["pid"]
        res = rt.must("ps", "--format", "json", cid)
        pids = json.loads(res.stdout)
        table = rt.must("ps", cid).stdout
        return {
            "json_is_list_of_int": isinstance(pids, list) and all(isinstance(p, int) for p in pids),
            "init_listed": pid in pids,
            "count": len(pids),
            "table_has_pid": str(pid) in table.split(),
        }

    got = equivalent(runtime, reference, scenario, "ps")
    assert got == {"json_is_list_of_int": True, "init_listed": True, "count": 1, "table_has_pid": True}


def test_list_shows_container(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> dict[str, Any]:
        bundle = make_bundle(["sleep", "30"])
        cid, _ = rt.create_started(bundle)
        pid = rt.state(cid)["pid"]
        table = rt.must("list").stdout.splitlines()
        rows = [line.split() for line in table[1:]]
        entries = json.loads(rt.must("list", "--format", "json").stdout)
        mine = [e for e in entries if e.get("id") == cid]
        return {
            "header": table[0].split()[:4],
            "row": [r[:3] for r in rows if r and r[0] == cid] == [[cid, str(pid), "running"]],
            "json": len(mine) == 1
            and mine[0].get("pid") == pid
            and mine[0].get("status") == "running"
            and mine[0].get("bundle") == str(bundle.path),
        }

    got = equivalent(runtime, reference, scenario, "list")
    assert got == {"header": ["ID", "PID", "STATUS", "BUNDLE"], "row": True, "json": True}


def test_kill_delivers_to_init_only(runtime, reference, make_bundle):
    def scenario(rt: Runtime) -> tuple[int, bool]:
        bundle = make_bundle(sh("trap 'echo got-HUP' HUP; echo ready; while :; do sleep 0.05; done"))
        fg = rt.run_background(bundle)
        fg.wait_for_output("ready")
        rt.kill(bundle.cid, "HUP")
        fg.wait_for_output("got-HUP")
        alive_after_hup = rt.state(bundle.cid)["status"] == "running"
        rt.kill(bundle.cid, str(int(signal.SIGKILL)))  # numeric signals are accepted too
        return fg.wait(), alive_after_hup

    assert equivalent(runtime, reference, scenario, "kill HUP then 9") == (137, True)
