"""Container-escape classes that berth-runtime must close.

Run against berth-runtime (fixture ``berth``). ``BERTH_TEST_RUNTIME=runc`` runs the same checks against
runc, which passes all of them: that is how the expectations here were validated.

(a) no host file descriptor reaches the container; (b) CVE-2019-5736: the container cannot write, or
get hold of, the host binary that runs the runtime through /proc/<pid>/exe; (c) CVE-2024-21626: a
``cwd`` of /proc/self/fd/N cannot put the process outside the container; (d) a mount destination that
is a symlink resolves inside the rootfs; (e) a rootfs whose /proc or /sys is a symlink is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.runtime.harness import Runtime, cgroup_dirs, host_mounts

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fd_targets(pid: int) -> dict[int, str]:
    fd_dir = Path(f"/proc/{pid}/fd")
    return {int(name): os.readlink(fd_dir / name) for name in os.listdir(fd_dir)}


# --------------------------------------------------------------------------------------------------
# (a) file descriptors


def test_no_host_fd_reaches_the_container(berth: Runtime, make_bundle, tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("host only\n")
    leaked = os.open(secret, os.O_RDONLY)  # inheritable: handed to the runtime on purpose
    os.set_inheritable(leaked, True)
    try:
        bundle = make_bundle(["sleep", "30"])
        res = berth.cli("create", "-b", str(bundle.path), bundle.cid, pass_fds=(leaked,))
        berth.track(bundle.cid)
        assert res.returncode == 0, f"create failed: {res.stderr.strip()!r}"
        out_path, err_path = berth.last_io
        berth.start(bundle.cid)
        pid = berth.state(bundle.cid)["pid"]
        assert berth.state(bundle.cid)["status"] == "running"
        fds = fd_targets(pid)
        assert sorted(fds) == [0, 1, 2], f"container init has fds {fds}"
        assert fds[0] == "/dev/null"
        assert fds[1] == str(out_path)
        assert fds[2] == str(err_path)

        # (the trailing "; true" stops sh from exec'ing ls in its own place)
        probe = berth.exec(bundle.cid, "sh", "-c", "ls /proc/$$/fd; true")
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.split() == ["0", "1", "2"], f"exec'd process has fds {probe.stdout.split()}"
    finally:
        os.close(leaked)


# --------------------------------------------------------------------------------------------------
# (b) CVE-2019-5736


PROBE_EXE = r"""
for p in /proc/[0-9]* /proc/self; do
  [ -e "$p/exe" ] || continue
  (echo x > "$p/exe") 2>/dev/null && echo "WROTE-TRUNCATE $p"
  (echo x >> "$p/exe") 2>/dev/null && echo "WROTE-APPEND $p"
done
echo probe-done
"""

# The attack proper: keep /proc/1/exe (the runtime's own binary while the container is `created`) open
# across `start`, wait until the runtime has exited, then reopen it for writing through /proc/self/fd.
HOLDER = r"""
# (a failed redirection on `exec` ends a non-interactive sh, hence the probe in a subshell first)
if (exec 3< /proc/1/exe) 2>/dev/null; then exec 3< /proc/1/exe; echo holder-opened
else echo holder-open-failed; echo holder-done; exit 0; fi
while [ ! -e /tmp/go ]; do sleep 0.02; done
(echo x >> /proc/self/fd/3) 2>/dev/null && echo "WROTE-REOPEN" || echo holder-write-failed
echo holder-done
"""


def test_container_cannot_overwrite_host_binaries_through_proc_exe(berth: Runtime, make_bundle, tmp_path):
    interpreter = Path(os.path.realpath(sys.executable))
    runtime_bin = Path(os.path.realpath(berth.binary))
    protected = sorted({interpreter, runtime_bin})
    backups = {}
    for i, p in enumerate(protected):
        backups[p] = tmp_path / f"backup-{i}"
        shutil.copy2(p, backups[p])
    before = {p: sha256(p) for p in protected}

    bundle = make_bundle(["sleep", "30"], writable=True)
    try:
        berth.create(bundle)  # init waits in the created state: the runtime's own code is pid 1
        assert berth.state(bundle.cid)["status"] == "created"

        # a second exec keeps its helper alive while the probe looks at every visible process
        helper = subprocess.Popen(
            berth.argv("exec", bundle.cid, "sleep", "3"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            res = berth.exec(bundle.cid, "sh", "-c", PROBE_EXE)
        finally:
            helper.kill()
            helper.wait()
        assert res.returncode == 0 and "probe-done" in res.stdout, f"probe failed: {res.stderr!r}"
        assert "WROTE" not in res.stdout, f"a /proc/<pid>/exe was writable from the container:\n{res.stdout}"

        held = berth.cli("exec", "-d", bundle.cid, "sh", "-c", HOLDER)
        assert held.returncode == 0, f"exec -d failed: {held.stderr.strip()!r}"
        holder_out, holder_err = berth.last_io
        deadline = time.monotonic() + 10
        while "holder-open" not in holder_out.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        berth.start(bundle.cid)
        assert berth.state(bundle.cid)["status"] == "running"
        berth.must("exec", bundle.cid, "touch", "/tmp/go")
        while "holder-done" not in holder_out.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        out = holder_out.read_text()
        assert "holder-done" in out, f"holder did not finish: {out!r}, stderr {holder_err.read_text()!r}"
        assert "WROTE" not in out, f"the runtime binary was reopened for writing from the container: {out!r}"
    finally:
        changed = [p for p in protected if sha256(p) != before[p]]
        for p in changed:
            shutil.copy2(backups[p], p)  # undo the damage before failing
    assert not changed, f"host binaries changed: {changed}"


# --------------------------------------------------------------------------------------------------
# (c) CVE-2024-21626


def _host_markers(tmp_path: Path) -> tuple[list[str], list[Path]]:
    name = f"berth-host-marker-{uuid.uuid4().hex[:8]}"
    # the bundle's parent, the state dir's parent and the test's own dir
    places = [tmp_path, tmp_path / "bundles", tmp_path / "rt-berth", tmp_path / "rt-runc"]
    created = []
    for place in places:
        place.mkdir(parents=True, exist_ok=True)
        (place / name).write_text("host\n")
        created.append(place / name)
    texts = [name]
    try:
        hostname = Path("/etc/hostname").read_text().strip()
    except OSError:
        hostname = ""
    if hostname and hostname not in ("berth", "localhost"):
        texts.append(hostname)
    return texts, created


CWD_PROBE = "pwd -P; ls -a .. ../.. ../../.. 2>&1; cat ../../../../../../etc/hostname 2>&1; echo probe-done"


@pytest.mark.parametrize("fd", range(3, 10))
def test_cwd_through_leaked_fd_stays_in_container(berth: Runtime, make_bundle, tmp_path, fd):
    markers, _ = _host_markers(tmp_path)
    bundle = make_bundle(["sh", "-c", CWD_PROBE], cwd=f"/proc/self/fd/{fd}")
    res = berth.run(bundle)
    if res.returncode != 0:
        assert "probe-done" not in res.stdout
        return  # refused: fine
    out = res.stdout
    assert "(unreachable)" not in out, f"cwd is outside the container's root:\n{out}"
    for marker in markers:
        assert marker not in out, f"host content {marker!r} visible from the container:\n{out}"


def test_exec_cwd_through_leaked_fd_stays_in_container(berth: Runtime, make_bundle, tmp_path):
    markers, _ = _host_markers(tmp_path)
    cid, _ = berth.create_started(make_bundle(["sleep", "30"]))
    for fd in range(3, 10):
        res = berth.exec(cid, "--cwd", f"/proc/self/fd/{fd}", "--", "sh", "-c", CWD_PROBE)
        if res.returncode != 0:
            assert "probe-done" not in res.stdout
            continue  # refused: fine
        out = res.stdout
        assert "(unreachable)" not in out, f"exec --cwd /proc/self/fd/{fd} is outside the container's root:\n{out}"
        for marker in markers:
            assert marker not in out, f"host content {marker!r} visible with exec --cwd /proc/self/fd/{fd}:\n{out}"


# --------------------------------------------------------------------------------------------------
# (d) symlinked mount destinations


@pytest.mark.parametrize(
    ("link_style", "mount_type"), [("absolute", "tmpfs"), ("relative", "bind")], ids=["abs-tmpfs", "rel-bind"]
)
def test_symlinked_mount_destination_resolves_inside_rootfs(
    berth: Runtime, make_bundle, tmp_path, link_style, mount_type
):
    escape = Path(f"/tmp/berth-escape-{uuid.uuid4().hex[:10]}")
    assert not escape.exists()
    target = str(escape) if link_style == "absolute" else f"../../../../../../..{escape}"

    def setup(rootfs: Path) -> None:
        (rootfs / "mnt").rmdir()
        (rootfs / "mnt").symlink_to(target)

    source = tmp_path / "bind-source"
    source.mkdir()
    (source / "from-host").write_text("x")
    mount = (
        {"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
        if mount_type == "tmpfs"
        else {"destination": "/mnt", "type": "bind", "source": str(source), "options": ["rbind", "ro"]}
    )
    bundle = make_bundle(
        ["sh", "-c", f"grep -c ' {escape} ' /proc/self/mountinfo; ls /mnt/"],
        rootfs_setup=setup,
        extra_mounts=[mount],
    )
    try:
        res = berth.run(bundle)
        host_points = {m.mount_point for m in host_mounts()}
        assert not escape.exists(), f"{escape} was created on the host (mount destination escaped the rootfs)"
        assert str(escape) not in host_points, f"{escape} is a mount point on the host"
        if res.returncode == 0:
            # it was mounted where the symlink points inside the rootfs
            assert res.stdout.split()[0] == "1", res.stdout
            assert (bundle.rootfs / str(escape).lstrip("/")).is_dir()
    finally:
        if escape.is_mount():
            subprocess.run(["umount", "-l", str(escape)], check=False)
        if escape.is_dir():
            escape.rmdir()


# --------------------------------------------------------------------------------------------------
# (e) /proc or /sys as symlinks


@pytest.mark.parametrize("name", ["proc", "sys"])
def test_proc_or_sys_symlink_is_refused(berth: Runtime, make_bundle, name):
    escape = Path(f"/tmp/berth-escape-{uuid.uuid4().hex[:10]}-{name}")

    def setup(rootfs: Path) -> None:
        (rootfs / name).rmdir()
        (rootfs / name).symlink_to(escape)

    bundle = make_bundle(["true"], rootfs_setup=setup)
    mounts_before = {m.mount_id for m in host_mounts()}
    res = berth.run(bundle)
    assert res.returncode != 0, f"a rootfs with /{name} -> {escape} was accepted"
    assert f"/{name}" in res.stderr, f"the error does not name /{name}: {res.stderr.strip()!r}"
    assert not escape.exists(), f"{escape} was created on the host"
    assert not [m.mount_point for m in host_mounts() if m.mount_id not in mounts_before], "a mount was left"
    assert not cgroup_dirs(bundle.cgroups_path), "the container's cgroup was left behind"
    listed = berth.cli("list", "--format", "json")
    assert bundle.cid not in listed.stdout, "the container is still listed"
    assert not list(berth.state_root.glob(f"**/*{bundle.cid}*")), "state was left under --root"
