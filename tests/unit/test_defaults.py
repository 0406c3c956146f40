"""docker_default_config: the config.json dockerd 20.10 builds for ``docker run``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.engine.runtime.defaults import (
    DEFAULT_PATH,
    DOCKER_DEFAULT_CAPABILITIES,
    DOCKER_MASKED_PATHS,
    DOCKER_READONLY_PATHS,
    docker_default_config,
)


def make(*args: Any, **kwargs: Any) -> Any:
    """docker_default_config, typed loosely for indexing in assertions."""
    return docker_default_config(*args, **kwargs)


def mounts_by_destination(cfg: Any) -> dict[str, Any]:
    return {m["destination"]: m for m in cfg["mounts"]}


def test_docker_default_capabilities_are_the_14_of_moby():
    assert len(DOCKER_DEFAULT_CAPABILITIES) == 14
    assert set(DOCKER_DEFAULT_CAPABILITIES) == {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }


def test_top_level_shape_and_json_round_trip():
    cfg = make(["sh"])
    assert cfg["ociVersion"] == "1.0.2"
    assert cfg["root"] == {"path": "rootfs", "readonly": False}
    assert cfg["hostname"] == "berth"
    assert json.loads(json.dumps(cfg)) == cfg
    proc = cfg["process"]
    assert proc["args"] == ["sh"]
    assert proc["cwd"] == "/"
    assert proc["terminal"] is False
    assert proc["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert proc["oomScoreAdj"] == 0
    assert "noNewPrivileges" not in proc


def test_root_gets_bounding_effective_permitted_and_no_inheritable_or_ambient():
    caps = make(["sh"])["process"]["capabilities"]
    assert set(caps) == {"bounding", "effective", "permitted"}
    for key in caps:
        assert caps[key] == list(DOCKER_DEFAULT_CAPABILITIES)


def test_non_root_gets_bounding_only_like_moby_20_10():
    caps = make(["sh"], user=(1000, 1000))["process"]["capabilities"]
    assert caps == {"bounding": list(DOCKER_DEFAULT_CAPABILITIES)}


def test_custom_capabilities():
    caps = make(["sh"], capabilities=["CAP_NET_ADMIN"])["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == ["CAP_NET_ADMIN"]
    assert make(["sh"], capabilities=[])["process"]["capabilities"]["bounding"] == []


def test_default_mounts_match_moby():
    cfg = make(["sh"])
    assert [m["destination"] for m in cfg["mounts"]] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/sys/fs/cgroup",
        "/dev/mqueue",
        "/dev/shm",
    ]
    m = mounts_by_destination(cfg)
    assert m["/proc"] == {
        "destination": "/proc",
        "type": "proc",
        "source": "proc",
        "options": ["nosuid", "noexec", "nodev"],
    }
    assert m["/dev"]["type"] == "tmpfs"
    assert m["/dev"]["options"] == ["nosuid", "strictatime", "mode=755", "size=65536k"]
    assert m["/dev/pts"]["options"] == ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
    assert m["/sys"]["options"] == ["nosuid", "noexec", "nodev", "ro"]
    assert m["/sys/fs/cgroup"]["type"] == "cgroup"
    assert m["/sys/fs/cgroup"]["options"] == ["ro", "nosuid", "noexec", "nodev"]
    assert m["/dev/mqueue"]["type"] == "mqueue"
    assert m["/dev/shm"]["source"] == "shm"
    assert m["/dev/shm"]["options"] == ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]


def test_masked_and_readonly_paths_match_moby_20_10():
    linux = make(["sh"])["linux"]
    assert linux["maskedPaths"] == list(DOCKER_MASKED_PATHS)
    assert set(DOCKER_MASKED_PATHS) == {
        "/proc/asound",
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
    }
    assert linux["readonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    assert set(DOCKER_READONLY_PATHS) == set(linux["readonlyPaths"])


def test_device_cgroup_rules_deny_all_then_allow_the_basics():
    devices = make(["sh"])["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    allowed = {(d["type"], d["major"], d["minor"]) for d in devices if d["allow"]}
    assert allowed == {("c", 1, 5), ("c", 1, 3), ("c", 1, 9), ("c", 1, 8), ("c", 5, 0), ("c", 5, 1)}
    assert devices[-1] == {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}


def test_namespaces_in_the_given_order():
    linux = make(["sh"])["linux"]
    assert linux["namespaces"] == [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")]
    linux = make(["sh"], namespaces=("mount", "pid"))["linux"]
    assert linux["namespaces"] == [{"type": "mount"}, {"type": "pid"}]


def test_unknown_namespace_is_rejected():
    with pytest.raises(ValueError, match="foo"):
        make(["sh"], namespaces=("pid", "foo"))


def test_id_mappings_add_user_namespace_and_clear_cgroup_ro():
    cfg = make(["sh"], uid_mappings=[(0, 100000, 65536)], gid_mappings=[(0, 200000, 10)])
    linux = cfg["linux"]
    assert {"type": "user"} in linux["namespaces"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 10}]
    assert "ro" not in mounts_by_destination(cfg)["/sys/fs/cgroup"]["options"]
    # no ping_group_range under a user namespace, as dockerd
    assert "net.ipv4.ping_group_range" not in linux.get("sysctl", {})
    plain = make(["sh"])["linux"]
    assert "uidMappings" not in plain and {"type": "user"} not in plain["namespaces"]


def test_user_namespace_listed_once():
    linux = make(["sh"], namespaces=("user", "mount"), uid_mappings=[(0, 1, 1)], gid_mappings=[(0, 1, 1)])["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["user", "mount"]


def test_readonly_rootfs_marks_non_exempt_default_mounts_ro():
    cfg = make(
        ["sh"],
        readonly_rootfs=True,
        extra_mounts=[{"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind"]}],
    )
    assert cfg["root"]["readonly"] is True
    m = mounts_by_destination(cfg)
    for dest in ("/proc", "/dev", "/dev/pts", "/dev/mqueue", "/dev/shm"):
        assert "ro" not in m[dest]["options"], dest
    assert m["/sys"]["options"].count("ro") == 1
    assert m["/sys/fs/cgroup"]["options"].count("ro") == 1
    assert m["/data"]["options"] == ["rbind"]  # user mounts are left alone


def test_extra_mount_replaces_default_at_same_destination():
    cfg = make(["sh"], extra_mounts=[{"destination": "/dev/shm", "type": "bind", "source": "/x", "options": ["rbind"]}])
    shm = [m for m in cfg["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "bind", "source": "/x", "options": ["rbind"]}]


def test_user_supplied_dev_drops_default_dev_submounts():
    cfg = make(["sh"], extra_mounts=[{"destination": "/dev", "type": "tmpfs", "source": "t"}])
    dests = [m["destination"] for m in cfg["mounts"]]
    assert dests.count("/dev") == 1
    assert not [d for d in dests if d.startswith("/dev/")]


def test_environment_is_merged_over_dockerd_base():
    proc = make(["sh"], env=["FOO=bar"], hostname="h1")["process"]
    assert proc["env"] == [f"PATH={DEFAULT_PATH}", "HOSTNAME=h1", "FOO=bar"]
    proc = make(["sh"], env=["PATH=/bin", "HOSTNAME"], terminal=True)["process"]
    assert proc["env"] == ["PATH=/bin", "TERM=xterm"]
    assert proc["terminal"] is True


def test_user_and_groups():
    user = make(["sh"], user=(1000, 100), additional_gids=[5, 27])["process"]["user"]
    assert user == {"uid": 1000, "gid": 100, "additionalGids": [100, 5, 27]}


def test_rlimits_default_and_custom():
    proc = make(["sh"])["process"]
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}]
    proc = make(["sh"], rlimits=[("RLIMIT_NOFILE", 10, 20), ("RLIMIT_CORE", 0, 0)])["process"]
    assert proc["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 20, "soft": 10},
        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
    ]


def test_resources():
    res = make(["sh"], memory_limit=32 << 20, pids_limit=16)["linux"]["resources"]
    assert res["memory"] == {"limit": 32 << 20, "swap": 64 << 20}  # dockerd: swap defaults to 2x memory
    assert res["pids"] == {"limit": 16}
    res = make(["sh"], memory_limit=32 << 20, memory_swap=32 << 20, pids_limit=0)["linux"]["resources"]
    assert res["memory"] == {"limit": 32 << 20, "swap": 32 << 20}
    assert res["pids"] == {"limit": -1}
    res = make(["sh"])["linux"]["resources"]
    assert "memory" not in res and "pids" not in res
    with pytest.raises(ValueError, match="swap"):
        make(["sh"], memory_swap=1 << 20)


def test_cgroups_path_seccomp_and_no_new_privileges():
    profile = {"defaultAction": "SCMP_ACT_ALLOW"}
    cfg = make(["sh"], cgroups_path="/berth/x", seccomp=profile, no_new_privileges=True)
    assert cfg["linux"]["cgroupsPath"] == "/berth/x"
    assert cfg["linux"]["seccomp"] == profile and cfg["linux"]["seccomp"] is not profile
    assert cfg["process"]["noNewPrivileges"] is True
    plain = make(["sh"])
    assert "cgroupsPath" not in plain["linux"] and "seccomp" not in plain["linux"]


def test_sysctls_default_explicit_and_none():
    linux = make(["sh"], sysctls={"kernel.shmmax": "1"})["linux"]
    assert linux["sysctl"] == {"kernel.shmmax": "1"}
    assert "sysctl" not in make(["sh"], sysctls={})["linux"]
    no_net = make(["sh"], namespaces=("pid", "mount"))["linux"]
    assert "sysctl" not in no_net


def test_invalid_arguments():
    with pytest.raises(ValueError, match="args"):
        make([])
    with pytest.raises(ValueError, match="cwd"):
        make(["sh"], cwd="relative")


def test_results_are_independent_copies():
    a = make(["sh"])
    a["mounts"][0]["options"].append("ro")
    a["linux"]["maskedPaths"].clear()
    a["process"]["capabilities"]["bounding"].clear()
    b = make(["sh"])
    assert "ro" not in b["mounts"][0]["options"]
    assert b["linux"]["maskedPaths"] == list(DOCKER_MASKED_PATHS)
    assert b["process"]["capabilities"]["bounding"] == list(DOCKER_DEFAULT_CAPABILITIES)
