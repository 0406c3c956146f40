"""berth-runtime cgroups: OCI linux.resources parsing, cgroupsPath mapping, mount detection (no root)."""

from __future__ import annotations

import os

import pytest

from backend.engine.errors import InvalidParameter
from backend.engine.runtime import cgroups
from backend.engine.runtime.cgroups import (
    CgroupResources,
    DeviceRule,
    cpu_weight_from_shares,
    open_cgroup,
    parse_resources,
    resolve_cgroups_path,
    restore_cgroup,
)

MiB = 1 << 20


def test_absent_and_empty_resources_set_nothing():
    assert parse_resources(None) == CgroupResources()
    assert parse_resources({}) == CgroupResources()
    assert parse_resources({"memory": None, "cpu": {}, "pids": None, "devices": None}) == CgroupResources()


def test_full_resources():
    res = parse_resources({
        "memory": {"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 128 * MiB, "swappiness": 10},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-2,4", "mems": "0"},
        "pids": {"limit": 20},
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        ],
    })
    assert res == CgroupResources(
        memory_limit=64 * MiB, memory_reservation=32 * MiB, memory_swap=128 * MiB, memory_swappiness=10,
        cpu_shares=512, cpu_quota=50000, cpu_period=100000, cpuset_cpus="0-2,4", cpuset_mems="0",
        pids_limit=20,
        devices=(DeviceRule(False, "a", None, None, "rwm"), DeviceRule(True, "c", 1, 3, "rw")),
    )
    assert res.controllers_needed() == {"memory", "cpu", "cpuset", "pids", "devices"}


def test_unknown_keys_are_ignored():
    res = parse_resources({
        "memory": {"limit": MiB, "kernel": 5, "disableOOMKiller": True},
        "blockIO": {"weight": 10}, "hugepageLimits": [], "network": {"classID": 1}, "future": "x",
    })
    assert res == CgroupResources(memory_limit=MiB)


def test_minus_one_is_unlimited_where_allowed():
    res = parse_resources({"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1}, "pids": {"limit": -1}})
    assert (res.memory_limit, res.memory_swap, res.cpu_quota, res.pids_limit) == (-1, -1, -1, -1)


def test_zero_and_empty_mean_unset_like_runc():
    res = parse_resources({
        "memory": {"limit": 0, "reservation": 0, "swap": 0},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": " "},
        "pids": {"limit": 0},
    })
    assert res == CgroupResources()


@pytest.mark.parametrize(("resources", "field"), [
    ({"memory": {"limit": "64m"}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": 1.5}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": True}}, "linux.resources.memory.limit"),
    ({"memory": {"swappiness": "10"}}, "linux.resources.memory.swappiness"),
    ({"cpu": {"shares": [1]}}, "linux.resources.cpu.shares"),
    ({"cpu": {"cpus": 0}}, "linux.resources.cpu.cpus"),
    ({"pids": {"limit": "20"}}, "linux.resources.pids.limit"),
    ({"memory": []}, "linux.resources.memory"),
    ({"cpu": "2"}, "linux.resources.cpu"),
    ({"devices": {}}, "linux.resources.devices"),
])
def test_wrong_types_name_the_field(resources, field):
    with pytest.raises(InvalidParameter, match=field.replace(".", r"\.")):
        parse_resources(resources)


def test_resources_must_be_an_object():
    with pytest.raises(InvalidParameter, match=r"linux\.resources must be an object"):
        parse_resources([])


@pytest.mark.parametrize(("resources", "field"), [
    ({"memory": {"limit": -2}}, "memory.limit"),
    ({"memory": {"reservation": -5}}, "memory.reservation"),
    ({"memory": {"limit": 10, "swap": -7}}, "memory.swap"),
    ({"memory": {"swappiness": -3}}, "memory.swappiness"),
    ({"cpu": {"shares": -1}}, "cpu.shares"),
    ({"cpu": {"quota": -2}}, "cpu.quota"),
    ({"cpu": {"period": -1}}, "cpu.period"),
    ({"pids": {"limit": -2}}, "pids.limit"),
])
def test_negative_values_are_rejected(resources, field):
    with pytest.raises(InvalidParameter, match=field.replace(".", r"\.")):
        parse_resources(resources)


def test_out_of_int64_range_is_rejected():
    with pytest.raises(InvalidParameter, match=r"memory\.limit is out of range"):
        parse_resources({"memory": {"limit": 2**63}})


def test_reservation_minus_one_is_no_reservation():
    assert parse_resources({"memory": {"reservation": -1}}).memory_reservation is None


@pytest.mark.parametrize("value", [-1, 2**64 - 1])
def test_swappiness_minus_one_is_unset(value):
    assert parse_resources({"memory": {"swappiness": value}}).memory_swappiness is None


def test_swappiness_over_100_is_rejected():
    with pytest.raises(InvalidParameter, match=r"swappiness must be between 0 and 100: 101"):
        parse_resources({"memory": {"swappiness": 101}})
    assert parse_resources({"memory": {"swappiness": 0}}).memory_swappiness == 0


def test_swap_below_limit_is_rejected():
    with pytest.raises(InvalidParameter, match=r"memory\.swap \(1048576\) must be at least .*limit"):
        parse_resources({"memory": {"limit": 2 * MiB, "swap": MiB}})
    assert parse_resources({"memory": {"limit": MiB, "swap": MiB}}).memory_swap == MiB


@pytest.mark.parametrize("limit", [None, -1])
def test_swap_needs_a_memory_limit(limit):
    with pytest.raises(InvalidParameter, match=r"memory\.swap .* needs a positive .*memory\.limit"):
        parse_resources({"memory": {"limit": limit, "swap": MiB}})


@pytest.mark.parametrize("value", ["0-", "-1", "a", "0,,1", "0-2-3", "1,", "0 1", "2-1", "0-2;4"])
def test_bad_cpuset_syntax(value):
    with pytest.raises(InvalidParameter, match=r"linux\.resources\.cpu\.cpus"):
        parse_resources({"cpu": {"cpus": value}})


@pytest.mark.parametrize("value", ["0", "0-3", "0-2,4", "1,3,5-7", "0-0"])
def test_good_cpuset_syntax(value):
    assert parse_resources({"cpu": {"cpus": value, "mems": value}}).cpuset_mems == value


@pytest.mark.parametrize("period", [1, 999, 1_000_001])
def test_period_out_of_range(period):
    with pytest.raises(InvalidParameter, match=r"cpu\.period must be between 1000 and 1000000"):
        parse_resources({"cpu": {"period": period}})


def test_period_bounds_are_inclusive():
    assert parse_resources({"cpu": {"period": 1000}}).cpu_period == 1000
    assert parse_resources({"cpu": {"period": 1_000_000}}).cpu_period == 1_000_000


def test_tiny_quota_is_rejected():
    with pytest.raises(InvalidParameter, match=r"cpu\.quota must be -1 or at least 1000"):
        parse_resources({"cpu": {"quota": 500}})


def test_device_defaults_and_wildcards():
    (rule,) = parse_resources({"devices": [{"allow": True, "major": -1, "minor": None}]}).devices
    assert rule == DeviceRule(allow=True, type="a", major=None, minor=None, access="rwm")
    (rule,) = parse_resources({"devices": [{"allow": False, "type": "", "access": ""}]}).devices
    assert rule == DeviceRule(allow=False, type="a", major=None, minor=None, access="rwm")


def test_device_rule_v1_format():
    assert DeviceRule(True, "c", 1, 3, "rwm").v1_rule() == "c 1:3 rwm"
    assert DeviceRule(True, "b", 8, None, "r").v1_rule() == "b 8:* r"
    assert DeviceRule(False, "c", None, None, "m").v1_rule() == "c *:* m"
    assert DeviceRule(False, "a", None, None, "rwm").v1_rule() == "a"


@pytest.mark.parametrize(("entry", "message"), [
    ({"access": "rwm"}, r"devices\[0\]\.allow must be a boolean"),
    ({"allow": 1}, r"devices\[0\]\.allow must be a boolean"),
    ({"allow": True, "type": "x"}, r"devices\[0\]\.type"),
    ({"allow": True, "type": "p"}, r"devices\[0\]\.type"),
    ({"allow": True, "access": "rwx"}, r"devices\[0\]\.access"),
    ({"allow": True, "access": "rr"}, r"devices\[0\]\.access"),
    ({"allow": True, "major": "1"}, r"devices\[0\]\.major must be an integer"),
    ({"allow": True, "minor": -2}, r"devices\[0\]\.minor must not be negative"),
    ("c 1:3 rwm", r"devices\[0\] must be an object"),
])
def test_bad_device_rules(entry, message):
    with pytest.raises(InvalidParameter, match=message):
        parse_resources({"devices": [entry]})


def test_cpu_weight_conversion_matches_runc():
    assert cpu_weight_from_shares(2) == 1
    assert cpu_weight_from_shares(1024) == 39
    assert cpu_weight_from_shares(262144) == 10000
    assert cpu_weight_from_shares(1) == 1  # clamped like the kernel clamps cpu.shares
    assert cpu_weight_from_shares(10**9) == 10000


@pytest.mark.parametrize(("path", "expected"), [
    ("", "/berth-runtime/abc"),
    ("/a/b", "/a/b"),
    ("a/b", "/a/b"),
    ("//a/./b/", "/a/b"),
    ("/a:b", "/a:b"),
    ("system.slice:berth:abc", "/system.slice/berth-abc.scope"),
    ("machine-foo.slice:berth:abc", "/machine.slice/machine-foo.slice/berth-abc.scope"),
    ("a-b-c.slice:p:n", "/a.slice/a-b.slice/a-b-c.slice/p-n.scope"),
    (":berth:abc", "/system.slice/berth-abc.scope"),
    ("-.slice:berth:abc", "/berth-abc.scope"),
    ("system.slice::abc", "/system.slice/abc.scope"),
    ("system.slice:berth:sub.slice", "/system.slice/sub.slice"),
])
def test_cgroups_path_mapping(path, expected):
    assert resolve_cgroups_path(path, "abc") == expected


@pytest.mark.parametrize("path", [
    "..", "/..", "/a/../b", "a/..", "../x", "/", "//", ".", "/a\0b",
    "system.slice:berth:", "nosuffix:berth:abc", "a--b.slice:p:n", "-a.slice:p:n",
])
def test_cgroups_path_rejected(path):
    with pytest.raises(InvalidParameter):
        resolve_cgroups_path(path, "abc")


@pytest.mark.parametrize("container_id", ["", "..", ".", "a/b"])
def test_bad_container_id_for_default_path(container_id):
    with pytest.raises(InvalidParameter, match="container id"):
        resolve_cgroups_path("", container_id)


def test_open_cgroup_v2_maps_and_creates_nothing(tmp_path):
    cg = open_cgroup("", "abc", mount_root=str(tmp_path), version=2)
    assert cg.version == 2
    assert cg.paths() == {"": f"{tmp_path}/berth-runtime/abc"}
    assert not cg.exists()
    assert os.listdir(tmp_path) == []
    assert cg.pids() == []
    assert cg.oom_kill_count() == 0
    assert cg.memory_usage() is None
    cg.destroy()  # idempotent on a missing cgroup


def test_open_cgroup_rejects_escapes_and_versions(tmp_path):
    with pytest.raises(InvalidParameter):
        open_cgroup("/a/../../etc", "abc", mount_root=str(tmp_path), version=2)
    with pytest.raises(InvalidParameter, match="version must be 1 or 2"):
        open_cgroup("/a", "abc", mount_root=str(tmp_path), version=3)


def test_restore_round_trip(tmp_path):
    cg = open_cgroup("/x/y", "abc", mount_root=str(tmp_path), version=2)
    again = restore_cgroup(cg.paths(), 2)
    assert again.version == 2 and again.paths() == cg.paths()
    v1 = restore_cgroup({"cpu": "/sys/fs/cgroup/cpu/x", "memory": "/sys/fs/cgroup/memory/x"}, 1)
    assert v1.version == 1
    assert v1.paths() == {"cpu": "/sys/fs/cgroup/cpu/x", "memory": "/sys/fs/cgroup/memory/x"}


@pytest.mark.parametrize(("paths", "version"), [
    ({"": "relative/x"}, 2),
    ({"": "/a/../b"}, 2),
    ({"memory": "/a"}, 2),
    ({"systemd": "/sys/fs/cgroup/systemd/x"}, 1),
    ({}, 1),
    ({"cpu": "/a/./b"}, 1),
    ({"": "/a"}, 3),
])
def test_restore_rejects_bad_state(paths, version):
    with pytest.raises(InvalidParameter):
        restore_cgroup(paths, version)


HYBRID = """\
23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:39 / /sys/fs/my\\040cgroup rw,relatime - cgroup2 cgroup2 rw
"""

PURE_V2 = """\
23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""


def test_mountinfo_parsing_and_version_detection():
    mounts = cgroups._parse_mountinfo(HYBRID)
    assert mounts[-1].mountpoint == "/sys/fs/my cgroup"
    assert cgroups._version_from_mounts("/sys/fs/cgroup", mounts) == 1
    assert cgroups._version_from_mounts("/sys/fs/cgroup/unified", mounts) == 2
    assert cgroups._version_from_mounts("/sys/fs/cgroup/unified/sub", mounts) == 2
    assert cgroups._version_from_mounts("/sys/fs/my cgroup", mounts) == 2
    assert cgroups._v1_hierarchies("/sys/fs/cgroup", mounts) == {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "cpuset": "/sys/fs/cgroup/cpuset", "memory": "/sys/fs/cgroup/memory",
        "systemd": "/sys/fs/cgroup/systemd",
    }
    assert cgroups._version_from_mounts("/sys/fs/cgroup", cgroups._parse_mountinfo(PURE_V2)) == 2


def test_no_cgroup_mount_is_unavailable():
    from backend.engine.errors import Unavailable

    with pytest.raises(Unavailable, match="no cgroup filesystem"):
        cgroups._version_from_mounts("/sys", cgroups._parse_mountinfo(PURE_V2))


def test_cgroup_version_of_this_machine():
    if not os.path.isdir("/sys/fs/cgroup"):
        pytest.skip("needs /sys/fs/cgroup")
    expected = 2 if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else 1
    assert cgroups.cgroup_version() == expected
