"""What a process in a default container (``docker run busybox``) can and cannot reach, checked from inside.

Everything runs with the busybox image's applets (``busybox sh`` finds every applet by name) and, for raw
system calls, tiny static x86-64 ELF programs generated here (:func:`syscall_probe`): each makes one system
call and exits with its errno, so no compiler and no interpreter is needed in the image.

Checked: Docker's 14 capabilities (CapEff/CapPrm/CapBnd), the seccomp filter's denials (and that it is the
filter that denies: the same probes under ``seccomp=unconfined`` get the kernel's own errors), masked and
read-only paths, a read-only cgroupfs and the cgroup v1 ``release_agent`` escape refused, host binaries
unchanged after 200 exec races on ``/proc/<pid>/exe`` (CVE-2019-5736), only fds 0-2 in a container, no unix
sockets of Berth's in its network namespace, the API neither mounted nor reachable over TCP from a container,
and the data root's directories 0711 or tighter.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import stat
import struct
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.engine.runtime import monitor
from backend.engine.runtime.defaults import DOCKER_MASKED_PATHS, DOCKER_READONLY_PATHS
from tests.fixtures.berthd import Berthd
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]

DOCKER_DEFAULT_CAPS = "00000000a80425fb"
"""CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD
AUDIT_WRITE SETFCAP: the mask dockerd's containers show in /proc/self/status."""

EPERM, EFAULT, EINVAL, ENOSYS = 1, 14, 22, 38
CLONE_NEWNS, CLONE_NEWUSER = 0x20000, 0x10000000

# (name, x86-64 number, first argument, errno under Docker's default profile). Every other argument is 0.
SYSCALLS: tuple[tuple[str, int, int, int], ...] = (
    ("unshare", 272, CLONE_NEWUSER | CLONE_NEWNS, EPERM),
    ("mount", 165, 0, EPERM),
    ("umount2", 166, 0, EPERM),
    ("pivot_root", 155, 0, EPERM),
    ("setns", 308, 0, EPERM),
    ("keyctl", 250, 0, EPERM),
    ("add_key", 248, 0, EPERM),
    ("request_key", 249, 0, EPERM),
    ("io_uring_setup", 425, 1, EPERM),
    ("bpf", 321, 0, EPERM),
    ("userfaultfd", 323, 0, EPERM),
    ("open_by_handle_at", 304, 0, EPERM),
    ("kexec_load", 246, 0, EPERM),
    ("init_module", 175, 0, EPERM),
    ("swapon", 167, 0, EPERM),
    ("clone3", 435, 0, ENOSYS),
)
# What the kernel itself answers to the same calls with no filter: the proof that the filter denied them.
UNFILTERED = {"mount": EFAULT, "keyctl": EINVAL, "clone3": EINVAL, "io_uring_setup": EFAULT}


def syscall_probe(number: int, arg0: int = 0) -> bytes:
    """A static x86-64 ELF that calls ``syscall(number, arg0, 0, 0, 0, 0, 0)`` and exits with the errno
    (0 when the call succeeds): ``mov eax,nr; mov edi,arg0; xor esi,esi; xor edx,edx; xor r10d,r10d;
    xor r8d,r8d; xor r9d,r9d; syscall; neg eax; mov edi,eax; mov eax,60; syscall``."""
    base = 0x400000
    code = (b"\xb8" + struct.pack("<I", number) + b"\xbf" + struct.pack("<I", arg0)
            + b"\x31\xf6\x31\xd2\x45\x31\xd2\x45\x31\xc0\x45\x31\xc9\x0f\x05"
            + b"\xf7\xd8\x89\xc7\xb8\x3c\x00\x00\x00\x0f\x05")
    size = 64 + 56 + len(code)
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, 0x3E, 1, base + 120, 64, 0,
                         0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + program + code


def _probe_script(calls: tuple[tuple[str, int, int, int], ...]) -> str:
    """A shell script that writes one probe per call and prints ``<name> <errno>`` for each."""
    lines = []
    for name, number, arg0, _ in calls:
        b64 = base64.b64encode(syscall_probe(number, arg0)).decode()
        lines.append(f"echo {b64} | base64 -d >/p-{name} && chmod +x /p-{name}; /p-{name}; echo {name} $?")
    return "\n".join(lines)


def run_sh(daemon: Berthd, script: str, *options: str, check: bool = True) -> str:
    """stdout of ``docker run --rm [options] busybox sh -c script`` (stderr folded in)."""
    result = daemon.docker("run", "--rm", *options, "busybox", "sh", "-c", "exec 2>&1\n" + script, check=check)
    return result.stdout


def _status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def test_capabilities_are_dockers_default_set(berthd_with_busybox: Berthd) -> None:
    status = _status(run_sh(berthd_with_busybox, "cat /proc/self/status"))
    assert {k: status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {
        "CapInh": "0" * 16, "CapPrm": DOCKER_DEFAULT_CAPS, "CapEff": DOCKER_DEFAULT_CAPS,
        "CapBnd": DOCKER_DEFAULT_CAPS, "CapAmb": "0" * 16}
    assert status["Seccomp"] == "2" and status["Seccomp_filters"] == "1"
    pid1 = _status(run_sh(berthd_with_busybox, "cat /proc/1/status"))  # PID 1 (the shell) as well
    assert pid1["CapEff"] == pid1["CapBnd"] == DOCKER_DEFAULT_CAPS


def test_seccomp_denies_namespace_mount_key_and_io_uring_calls(berthd_with_busybox: Berthd) -> None:
    out = run_sh(berthd_with_busybox, _probe_script(SYSCALLS))
    got = {name: int(code) for name, code in (line.split() for line in out.splitlines() if " " in line)}
    assert got == {name: errno for name, _, _, errno in SYSCALLS}, out
    unconfined = run_sh(berthd_with_busybox, _probe_script(tuple(c for c in SYSCALLS if c[0] in UNFILTERED)),
                        "--security-opt", "seccomp=unconfined")
    got = {name: int(code) for name, code in (line.split() for line in unconfined.splitlines() if " " in line)}
    assert got == UNFILTERED, unconfined


def test_busybox_unshare_and_mount_are_refused(berthd_with_busybox: Berthd) -> None:
    out = run_sh(berthd_with_busybox, "mkdir /m; unshare -Urm true; echo unshare=$?; "
                                      "mount -t tmpfs none /m; echo mount=$?; nsenter -t 1 -m true; echo nsenter=$?")
    assert "unshare=1" in out and "mount=1" in out and "nsenter=1" in out, out
    assert "Operation not permitted" in out


def test_masked_paths_show_nothing(berthd_with_busybox: Berthd) -> None:
    script = "\n".join(
        f"if [ -d {p} ]; then echo {p} dir $(ls -A {p} | wc -l); "
        f"elif [ -e {p} ]; then echo {p} file $(cat {p} | wc -c); else echo {p} absent 0; fi"
        for p in DOCKER_MASKED_PATHS)
    out = run_sh(berthd_with_busybox, script)
    rows = [line.split() for line in out.splitlines()]
    assert [r[0] for r in rows] == list(DOCKER_MASKED_PATHS), out
    assert all(r[2] == "0" for r in rows), out
    mounts = run_sh(berthd_with_busybox, "cat /proc/self/mountinfo")
    assert "/sys/firmware ro" in mounts


def test_read_only_paths_refuse_writes(berthd_with_busybox: Berthd) -> None:
    mounts = run_sh(berthd_with_busybox, "cat /proc/self/mountinfo")
    points = {fields[4]: fields[5] for fields in (line.split() for line in mounts.splitlines())}
    for path in DOCKER_READONLY_PATHS:
        if path in points:
            assert points[path].startswith("ro,"), (path, points[path])
    out = run_sh(berthd_with_busybox, "cat /proc/sys/kernel/hostname > /proc/sys/kernel/hostname; echo sys=$?; "
                                      "echo 1 > /proc/sys/vm/overcommit_memory; echo vm=$?")
    assert "sys=1" in out and "vm=1" in out and "Read-only file system" in out, out


def test_cgroupfs_is_read_only_and_release_agent_escape_refused(berthd_with_busybox: Berthd) -> None:
    host_agents = {p: p.read_bytes() for p in Path("/sys/fs/cgroup").glob("*/release_agent")}
    mounts = run_sh(berthd_with_busybox, "cat /proc/self/mountinfo")
    cgroup_mounts = [line.split() for line in mounts.splitlines() if " - cgroup" in line]
    assert cgroup_mounts and all(f[5].startswith("ro,") for f in cgroup_mounts), mounts
    out = run_sh(berthd_with_busybox, """
        mkdir /sys/fs/cgroup/memory/escape; echo mkdir=$?
        for h in /sys/fs/cgroup/*; do echo /host/cmd > $h/release_agent; echo agent=$?; done
        echo 1 > /sys/fs/cgroup/memory/notify_on_release; echo notify=$?
        mkdir /cg; mount -t cgroup -o memory cgroup /cg; echo mount=$?
        mount -t cgroup -o rdma cgroup /cg; echo rdma=$?
        unshare -UrmC sh -c 'mount -t cgroup -o memory cgroup /cg'; echo userns=$?
        ls /cg""")
    assert "mkdir=1" in out and "notify=1" in out and "mount=1" in out and "rdma=1" in out, out
    assert "userns=1" in out and "agent=0" not in out, out
    assert {p: p.read_bytes() for p in host_agents} == host_agents


def test_only_stdio_fds_reach_the_container(berthd_with_busybox: Berthd) -> None:
    name = f"iso-fds-{uuid.uuid4().hex[:8]}"
    daemon = berthd_with_busybox
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    try:
        pid1 = daemon.docker("exec", name, "ls", "/proc/1/fd").stdout.split()
        assert sorted(pid1, key=int) == ["0", "1", "2"], pid1
        own = daemon.docker("exec", name, "ls", "/proc/self/fd").stdout.split()
        assert sorted(own, key=int) == ["0", "1", "2", "3"], own  # 3: the directory ls is reading
        tty = daemon.docker("exec", "-t", name, "ls", "/proc/self/fd").stdout.split()
        assert sorted(tty, key=int) == ["0", "1", "2", "3"], tty
    finally:
        daemon.docker("rm", "-f", name, check=False)
    run_out = run_sh(daemon, "ls /proc/self/fd").split()
    assert sorted(run_out, key=int) == ["0", "1", "2", "3"], run_out


def test_no_unix_socket_of_berth_is_visible(berthd_with_busybox: Berthd) -> None:
    out = run_sh(berthd_with_busybox, "cat /proc/net/unix")
    entries = out.splitlines()[1:]
    assert entries == [], out  # its own network namespace: no abstract or path socket of the host's


def test_api_socket_not_mounted_in_a_container(berthd_with_busybox: Berthd) -> None:
    daemon = berthd_with_busybox
    out = run_sh(daemon, f"ls {daemon.socket}; echo rc=$?; cat /proc/self/mountinfo")
    listing, _, mounts = out.partition("rc=")
    assert "No such file or directory" in listing, out
    assert str(daemon.socket.parent) not in mounts and ".sock" not in mounts, out


def test_api_unreachable_over_tcp_from_a_container(registry: LocalRegistry, busybox_loaded_source: str) -> None:
    """A berthd on a loopback TCP port: from a container neither the bridge gateway nor its own loopback
    reaches it (the only addresses tried are the gateway this daemon created and the container's own)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = Berthd(extra_args=["-H", f"tcp://127.0.0.1:{port}"])
    try:
        daemon.start()
        daemon.docker("pull", "-q", busybox_loaded_source)
        assert httpx.get(f"http://127.0.0.1:{port}/_ping", timeout=5).text == "OK"
        out = daemon.docker("run", "--rm", busybox_loaded_source, "sh", "-c",
                            f"exec 2>&1; gw=$(ip route | awk '/default/ {{print $3}}'); echo gw=$gw; "
                            f"for a in $gw 127.0.0.1; do printf 'GET /_ping HTTP/1.0\\r\\n\\r\\n' | "
                            f"nc -w 3 $a {port}; echo rc=$?; done").stdout
        assert "gw=\n" not in out and out.count("rc=1") == 2 and "OK" not in out, out
        assert out.count("Connection refused") == 2, out
    finally:
        daemon.cleanup()


@pytest.fixture(scope="module")
def busybox_loaded_source(registry: LocalRegistry, berthd_with_busybox: Berthd) -> str:
    """The registry reference the module daemon pulled busybox from (pushed there by its fixture)."""
    return f"{registry.domain}/fixture/busybox:latest"


def test_data_root_directories_are_private(berthd_with_busybox: Berthd) -> None:
    daemon = berthd_with_busybox
    name = f"iso-dr-{uuid.uuid4().hex[:8]}"
    daemon.docker("run", "--name", name, "-v", "/data", "busybox", "true")
    try:
        root = daemon.data_root
        loose = []
        for path in [root, *root.iterdir()]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            if path.is_dir() and mode & ~0o711:
                loose.append(f"{path.relative_to(root.parent)} {mode:o}")
        assert not loose, f"data-root directories looser than 0711: {loose}"
    finally:
        daemon.docker("rm", "-f", "-v", name, check=False)


# --- CVE-2019-5736: exec races on /proc/<pid>/exe ---------------------------------------------------------------

RACE_EXECS = 200
ATTACKER = r"""
printf '#!/proc/self/exe\n' >/evil; chmod +x /evil; opened=0; denied=0; loops=0
while :; do
  loops=$((loops+1))
  for e in /proc/[0-9]*/exe; do
    case $e in /proc/$$/exe) continue;; esac
    if { [ /proc/self/fd/3 -ef /bin/busybox ] || { echo "opened $e" >>/hits
         echo pwned >>/proc/self/fd/3 && echo "wrote $e" >>/hits; }; } 3<"$e"
    then opened=$((opened+1)); else denied=$((denied+1)); fi
  done
  echo "$loops $opened $denied" >/count.new && mv /count.new /count
done 2>/dev/null
"""
"""PID 1 of the attacking container: opens every process's ``/proc/<pid>/exe`` it can; any that is not the
container's own busybox is logged to /hits and written through its fd (the CVE's host-binary overwrite).
``/evil`` is ``#!/proc/self/exe``: exec'ing it makes the kernel run whatever binary the exec'ing process is."""


def _host_binaries() -> Iterator[Path]:
    venv_bin = Path(sys.executable).parent
    yield Path(os.path.realpath(sys.executable))
    for name in ("berth-runtime", "berthd"):
        yield venv_bin / name
    yield Path(monitor.__file__)
    for runtime in ("runc", "crun"):
        found = shutil.which(runtime)
        if found:
            yield Path(found)


def _digests() -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in _host_binaries()}


def test_exec_races_on_proc_exe_leave_host_binaries_unchanged(berthd_with_busybox: Berthd) -> None:
    daemon = berthd_with_busybox
    before = _digests()
    name = f"iso-race-{uuid.uuid4().hex[:8]}"
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c", ATTACKER)
    try:
        transport = httpx.HTTPTransport(uds=str(daemon.socket))
        with httpx.Client(transport=transport, base_url="http://berth", timeout=60) as api:
            for i in range(RACE_EXECS):
                cmd = ["/evil"] if i % 2 else ["true"]
                exec_id = api.post(f"/containers/{name}/exec", json={"Cmd": cmd, "AttachStdout": True,
                                                                      "AttachStderr": True}).json()["Id"]
                api.post(f"/exec/{exec_id}/start", json={"Detach": False}).raise_for_status()
                if cmd == ["true"]:
                    assert api.get(f"/exec/{exec_id}/json").json()["ExitCode"] == 0
        hits = daemon.docker("exec", name, "sh", "-c", "cat /hits 2>/dev/null || true").stdout
        loops, opened, denied = map(int, daemon.docker("exec", name, "cat", "/count").stdout.split())
    finally:
        daemon.docker("rm", "-f", name, check=False)
    assert _digests() == before
    assert hits == "", hits
    assert loops > 1 and opened + denied > 0, "the attacker never saw an exec'd process"
