"""berth-runtime cgroups on the real cgroupfs: limits, processes, pids limit, freezer, OOM, destroy.

Needs root. Every cgroup is made under a unique ``/berth-test-<hex>`` prefix, and the ``box`` fixture's
finalizer thaws, kills and removes everything under that prefix in every hierarchy, independently of the
module under test. v1 tests run where /sys/fs/cgroup has v1 hierarchies; the v2 code is exercised on the
cgroup2 mount there is (/sys/fs/cgroup itself, or /sys/fs/cgroup/unified on hybrid systems).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from backend.engine.errors import Conflict, InvalidParameter, NotFound, Unavailable
from backend.engine.runtime.cgroups import (
    V1_CONTROLLERS,
    V1_TRACKING,
    Cgroup,
    CgroupResources,
    DeviceRule,
    cgroup_version,
    open_cgroup,
    restore_cgroup,
)

pytestmark = pytest.mark.root

CGROUP_ROOT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _scrub(top: str) -> None:
    """Thaw, kill and remove ``top`` and its sub-cgroups (test cleanup, independent of the module)."""
    if not os.path.isdir(top):
        return
    for dirpath, _, _ in os.walk(top):
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                with open(os.path.join(dirpath, name), "w") as f:
                    f.write(value)
            except OSError:
                pass
        try:
            pids = _read(os.path.join(dirpath, "cgroup.procs")).split()
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for dirpath, _, _ in os.walk(top, topdown=False):
        while True:
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


class Box:
    """A unique cgroup prefix plus the child processes a test starts; cleaned up by the fixture."""

    def __init__(self) -> None:
        self.prefix = f"/berth-test-{secrets.token_hex(4)}"
        self.children: list[subprocess.Popen[str]] = []

    def spawn(self, args: list[str], **kwargs: object) -> subprocess.Popen[str]:
        child: subprocess.Popen[str] = subprocess.Popen(args, text=True, **kwargs)  # type: ignore[call-overload]
        self.children.append(child)
        return child

    def tops(self) -> list[str]:
        """Every directory the prefix can have: in each mounted hierarchy and at the root itself."""
        found = [CGROUP_ROOT + self.prefix]
        for entry in os.scandir(CGROUP_ROOT):
            if entry.is_dir():
                found.append(entry.path + self.prefix)
        return found

    def cleanup(self) -> None:
        for top in self.tops():
            _scrub(top)
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
            for stream in (child.stdin, child.stdout, child.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: creates cgroups under /sys/fs/cgroup")
    if not os.path.isdir(CGROUP_ROOT):
        pytest.skip(f"needs root and cgroupfs: {CGROUP_ROOT} is missing")


@pytest.fixture
def box(request: pytest.FixtureRequest) -> Box:
    made = Box()
    request.addfinalizer(made.cleanup)
    return made


@pytest.fixture
def v1() -> None:
    if cgroup_version() != 1:
        pytest.skip(f"needs cgroup v1 hierarchies in {CGROUP_ROOT}")


@pytest.fixture
def v2_root() -> str:
    if cgroup_version() == 2:
        return CGROUP_ROOT
    if os.path.isdir(UNIFIED) and cgroup_version(UNIFIED) == 2:
        return UNIFIED
    pytest.skip("needs a cgroup2 mount")


def _has_controller(name: str) -> bool:
    """Whether the primary (/sys/fs/cgroup) hierarchy offers ``name``."""
    if cgroup_version() == 2:
        return name in _read(f"{CGROUP_ROOT}/cgroup.controllers").split()
    return os.path.isdir(f"{CGROUP_ROOT}/{name}")


def _need(*names: str) -> None:
    for name in names:
        if not _has_controller(name):
            pytest.skip(f"needs the {name} cgroup controller")


def _dir(cg: Cgroup, controller: str) -> str:
    paths = cg.paths()
    return paths[controller] if cg.version == 1 else paths[""]


def _state(pid: int) -> str:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise AssertionError("no State line")


def _cpu_ticks(pid: int) -> int:
    fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _sleeper(box: Box) -> subprocess.Popen[str]:
    return box.spawn(["sleep", "60"])


# ---------------------------------------------------------------------------------------------------------


def test_detected_version_matches_the_mounts():
    expected = 2 if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers") else 1
    assert cgroup_version() == expected
    if os.path.exists(f"{UNIFIED}/cgroup.procs"):
        assert cgroup_version(UNIFIED) == 2


def test_v1_create_writes_limits(v1, box):
    resources = CgroupResources(
        memory_limit=64 * MiB, memory_swap=64 * MiB, memory_reservation=32 * MiB, memory_swappiness=10,
        pids_limit=20, cpu_shares=512, cpu_quota=50_000, cpu_period=100_000, cpuset_cpus="0",
        devices=(DeviceRule(False, "a", None, None, "rwm"), DeviceRule(True, "c", 1, 3, "rwm"),
                 DeviceRule(True, "c", 1, 5, "r")),
    )
    cg = open_cgroup(f"{box.prefix}/c1", "c1")
    assert cg.version == 1
    paths = cg.paths()
    assert set(paths) <= set(V1_CONTROLLERS) | set(V1_TRACKING)
    assert {"cpu", "cpuset", "memory", "pids", "freezer", "devices"} <= set(paths)
    assert not cg.exists()
    cg.create(resources)
    assert cg.exists()
    assert all(os.path.isdir(path) for path in paths.values())
    assert os.path.isdir(f"{CGROUP_ROOT}/systemd{box.prefix}")  # placed there for the host's tools
    assert not os.path.exists(f"{UNIFIED}{box.prefix}")

    mem = paths["memory"]
    assert int(_read(f"{mem}/memory.limit_in_bytes")) == 64 * MiB
    if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
        assert int(_read(f"{mem}/memory.memsw.limit_in_bytes")) == 64 * MiB
    assert int(_read(f"{mem}/memory.soft_limit_in_bytes")) == 32 * MiB
    assert _read(f"{mem}/memory.swappiness") == "10"
    assert _read(f"{paths['pids']}/pids.max") == "20"
    assert _read(f"{paths['cpu']}/cpu.shares") == "512"
    assert _read(f"{paths['cpu']}/cpu.cfs_quota_us") == "50000"
    assert _read(f"{paths['cpu']}/cpu.cfs_period_us") == "100000"
    cpuset = paths["cpuset"]
    assert _read(f"{cpuset}/cpuset.cpus") == "0"
    root_mems = _read(f"{CGROUP_ROOT}/cpuset/cpuset.mems")
    assert _read(f"{cpuset}/cpuset.mems") == root_mems
    # the intermediate cgroup it made got its parent's cpus and mems, so tasks could join it too
    assert _read(f"{os.path.dirname(cpuset)}/cpuset.cpus") == _read(f"{CGROUP_ROOT}/cpuset/cpuset.cpus")
    assert _read(f"{os.path.dirname(cpuset)}/cpuset.mems") == root_mems
    assert _read(f"{paths['devices']}/devices.list").splitlines() == ["c 1:3 rwm", "c 1:5 r"]

    again = restore_cgroup(paths, 1)
    assert again.paths() == paths and again.exists()
    cg.destroy()
    assert not cg.exists()


def test_v1_limits_can_be_raised_and_lowered_on_an_existing_cgroup(v1, box):
    cg = open_cgroup(f"{box.prefix}/grow", "grow")
    cg.create(CgroupResources(memory_limit=64 * MiB, memory_swap=64 * MiB))
    mem = cg.paths()["memory"]
    memsw = os.path.exists(f"{mem}/memory.memsw.limit_in_bytes")
    for size in (256 * MiB, 16 * MiB):  # memsw has to go first when raising, last when lowering
        cg.create(CgroupResources(memory_limit=size, memory_swap=size))
        assert int(_read(f"{mem}/memory.limit_in_bytes")) == size
        if memsw:
            assert int(_read(f"{mem}/memory.memsw.limit_in_bytes")) == size
    cg.create(CgroupResources(memory_limit=-1))  # unlimited memory lifts memsw as well
    assert int(_read(f"{mem}/memory.limit_in_bytes")) > 1 << 60
    if memsw:
        assert int(_read(f"{mem}/memory.memsw.limit_in_bytes")) > 1 << 60


def test_refused_value_removes_what_create_made(box):
    _need("cpuset")
    cg = open_cgroup(f"{box.prefix}/bad", "bad")
    with pytest.raises(InvalidParameter, match=r"cpuset\.cpus"):
        cg.create(CgroupResources(pids_limit=10, cpuset_cpus="4095"))
    assert not cg.exists()
    assert not any(os.path.exists(top) for top in box.tops()), "the prefix it made must be gone too"


def test_add_process_and_pids(box):
    cg = open_cgroup(f"{box.prefix}/procs", "procs")
    cg.create(CgroupResources())
    child = _sleeper(box)
    cg.add_process(child.pid)
    assert cg.pids() == [child.pid]
    own = _read(f"/proc/{child.pid}/cgroup")
    assert f"{box.prefix}/procs" in own
    assert isinstance(cg.memory_usage(), int) == _has_controller("memory")
    assert cg.oom_kill_count() == 0


def test_add_missing_process_is_not_found(box):
    cg = open_cgroup(f"{box.prefix}/gone", "gone")
    cg.create(CgroupResources())
    child = _sleeper(box)
    child.kill()
    child.wait()
    with pytest.raises(NotFound, match=f"process {child.pid}"):
        cg.add_process(child.pid)


def test_add_process_to_missing_cgroup_is_not_found(box):
    cg = open_cgroup(f"{box.prefix}/never", "never")
    child = _sleeper(box)
    with pytest.raises(NotFound):
        cg.add_process(child.pid)
    assert cg.pids() == []


ENTER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from backend.engine.runtime.cgroups import restore_cgroup
restore_cgroup(json.loads(sys.argv[2]), int(sys.argv[3])).enter_current_thread()
print(open("/proc/self/cgroup").read(), flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("where", ["primary", "v2"])
def test_enter_current_thread(box, where, request):
    mount_root = request.getfixturevalue("v2_root") if where == "v2" else CGROUP_ROOT
    cg = open_cgroup(f"{box.prefix}/self", "self", mount_root=mount_root)
    cg.create(CgroupResources())
    child = box.spawn([sys.executable, "-c", ENTER, REPO, json.dumps(cg.paths()), str(cg.version)],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None
    lines = list(iter(child.stdout.readline, "\n"))  # /proc/self/cgroup, then the blank line print adds
    membership: dict[str, str] = {}  # controller ("" for v2) -> cgroup path
    for line in lines:
        _, controllers, path = line.rstrip("\n").split(":", 2)
        for controller in controllers.split(","):
            membership[controller.removeprefix("name=")] = path
    expected = dict.fromkeys(cg.paths(), f"{box.prefix}/self")
    assert {name: membership.get(name) for name in cg.paths()} == expected
    assert cg.pids() == [child.pid]


def test_pids_limit_stops_forks(box):
    _need("pids")
    cg = open_cgroup(f"{box.prefix}/forks", "forks")
    cg.create(CgroupResources(pids_limit=20))
    script = (
        "import os, sys, time\n"
        "sys.stdin.readline()\n"
        "made = failed = 0\n"
        "for _ in range(50):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        failed += 1\n"
        "        continue\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    made += 1\n"
        "print(made, failed, flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = box.spawn([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cg.add_process(child.pid)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    made, failed = map(int, child.stdout.readline().split())
    assert (made, failed) == (19, 31)  # the forking process itself is the 20th task
    assert _read(f"{_dir(cg, 'pids')}/pids.current") == "20"
    assert len(cg.pids()) == 20
    events = _read(f"{_dir(cg, 'pids')}/pids.events")
    assert int(events.split()[1]) >= 31

    cg.kill_all(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert _wait_until(lambda: cg.pids() == []), cg.pids()


def _check_freeze_thaw(cg: Cgroup, box: Box) -> None:
    busy = box.spawn([sys.executable, "-c", "while True: pass"])
    sleeper = _sleeper(box)
    cg.add_process(busy.pid)
    cg.add_process(sleeper.pid)
    assert _wait_until(lambda: _cpu_ticks(busy.pid) > 0)
    assert not cg.is_frozen()

    cg.freeze()
    assert cg.is_frozen()
    assert _state(busy.pid) != "R"
    assert _state(sleeper.pid) != "R"
    ticks = _cpu_ticks(busy.pid)
    time.sleep(0.3)
    assert _cpu_ticks(busy.pid) == ticks, "a frozen process must not run"
    cg.freeze()  # freezing a frozen cgroup is fine
    assert cg.is_frozen()

    cg.thaw()
    assert not cg.is_frozen()
    assert _wait_until(lambda: _cpu_ticks(busy.pid) > ticks, timeout=3), "a thawed process runs again"

    cg.freeze()
    cg.kill_all(signal.SIGKILL)  # kills frozen processes and leaves the cgroup thawed
    assert busy.wait(timeout=10) == -signal.SIGKILL
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    assert not cg.is_frozen()
    assert _wait_until(lambda: cg.pids() == [])


def test_freeze_thaw(box):
    if cgroup_version() == 1:
        _need("freezer")
    cg = open_cgroup(f"{box.prefix}/ice", "ice")
    cg.create(CgroupResources())
    _check_freeze_thaw(cg, box)


def test_kill_all_signals_every_process(box):
    cg = open_cgroup(f"{box.prefix}/term", "term")
    cg.create(CgroupResources())
    shell = box.spawn(["sh", "-c", "read x; sleep 60 & sleep 60 & wait"], stdin=subprocess.PIPE)
    cg.add_process(shell.pid)
    assert shell.stdin is not None
    shell.stdin.write("go\n")
    shell.stdin.flush()
    assert _wait_until(lambda: len(cg.pids()) == 3), cg.pids()
    cg.kill_all(signal.SIGTERM)
    assert shell.wait(timeout=10) == -signal.SIGTERM
    assert _wait_until(lambda: cg.pids() == []), cg.pids()
    assert not cg.is_frozen()


def test_oom_kill_in_a_small_cgroup(box):
    _need("memory")
    cg = open_cgroup(f"{box.prefix}/oom", "oom")
    cg.create(CgroupResources(memory_limit=32 * MiB, memory_swap=32 * MiB))
    if cg.version == 1 and os.path.exists(f"{cg.paths()['memory']}/memory.memsw.limit_in_bytes"):
        assert int(_read(f"{cg.paths()['memory']}/memory.memsw.limit_in_bytes")) == 32 * MiB
    script = (
        "import sys\n"
        "sys.stdin.readline()\n"
        "hog = [b'x' * (1 << 20) for _ in range(200)]\n"
        "print('survived', len(hog), flush=True)\n"
    )
    child = box.spawn([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cg.add_process(child.pid)
    assert cg.oom_kill_count() == 0
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.wait(timeout=60) == -signal.SIGKILL
    assert child.stdout.read() == ""
    assert cg.oom_kill_count() >= 1
    usage = cg.memory_usage()
    assert usage is not None and usage <= 32 * MiB


def test_destroy_removes_every_dir(box):
    cg = open_cgroup(f"{box.prefix}/gone", "gone")
    cg.create(CgroupResources(pids_limit=5))
    dirs = sorted(set(cg.paths().values()))
    for path in dirs:
        os.mkdir(f"{path}/sub")
        os.mkdir(f"{path}/sub/deeper")
    cg.destroy()
    assert not cg.exists()
    assert not any(os.path.exists(path) for path in dirs)
    assert all(os.path.isdir(os.path.dirname(path)) for path in dirs), "ancestors are left alone"
    cg.destroy()  # idempotent
    assert cg.pids() == []
    cg.kill_all(signal.SIGKILL)  # a missing cgroup has nothing to kill


def test_destroy_busy_cgroup_times_out_with_conflict(box):
    cg = open_cgroup(f"{box.prefix}/busy", "busy")
    cg.create(CgroupResources())
    child = _sleeper(box)
    cg.add_process(child.pid)
    started = time.monotonic()
    with pytest.raises(Conflict, match="still in use"):
        cg.destroy(timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert cg.exists()
    cg.kill_all(signal.SIGKILL)
    child.wait(timeout=10)
    cg.destroy()
    assert not cg.exists()


# ---------------------------------------------------------------------------------------------------------
# The v2 code, on whatever cgroup2 mount there is (controller-less on this hybrid machine)


def test_v2_lifecycle(v2_root, box):
    cg = open_cgroup(f"{box.prefix}/v2", "v2", mount_root=v2_root)
    assert cg.version == 2
    path = cg.paths()[""]
    assert path == f"{v2_root}{box.prefix}/v2"
    cg.create(CgroupResources())
    assert os.path.isfile(f"{path}/cgroup.procs")
    assert cg.pids() == []

    child = _sleeper(box)
    cg.add_process(child.pid)
    assert cg.pids() == [child.pid]
    assert f"{box.prefix}/v2" in _read(f"/proc/{child.pid}/cgroup")

    again = restore_cgroup(cg.paths(), 2)
    again.freeze()
    assert cg.is_frozen()
    assert _state(child.pid) != "R"
    again.thaw()
    assert not cg.is_frozen()

    if "memory" not in _read(f"{v2_root}/cgroup.controllers").split():
        assert cg.oom_kill_count() == 0
        assert cg.memory_usage() is None

    cg.kill_all(signal.SIGKILL)  # through cgroup.kill where the kernel has it
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert _wait_until(lambda: cg.pids() == [])
    cg.destroy()
    assert not cg.exists()
    assert os.path.isdir(f"{v2_root}{box.prefix}")
    cg.destroy()


def test_v2_freeze_stops_a_busy_process(v2_root, box):
    cg = open_cgroup(f"{box.prefix}/v2ice", "v2ice", mount_root=v2_root)
    cg.create(CgroupResources())
    _check_freeze_thaw(cg, box)


def test_v2_missing_controller_is_unavailable_and_leaves_nothing(v2_root, box):
    if "memory" in _read(f"{v2_root}/cgroup.controllers").split():
        pytest.skip(f"the memory controller is available in {v2_root}")
    cg = open_cgroup(f"{box.prefix}/v2mem", "v2mem", mount_root=v2_root)
    with pytest.raises(Unavailable, match="memory"):
        cg.create(CgroupResources(memory_limit=64 * MiB))
    assert not os.path.exists(f"{v2_root}{box.prefix}")


def test_v2_device_rules_are_ignored(v2_root, box):
    cg = open_cgroup(f"{box.prefix}/v2dev", "v2dev", mount_root=v2_root)
    cg.create(CgroupResources(devices=(DeviceRule(False, "a", None, None, "rwm"),)))
    assert cg.exists()
