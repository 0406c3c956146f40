"""Faults: berthd killed with SIGKILL mid-operation, a full disk, a monitor killed under its container.

**Crash rounds** (:data:`ROUNDS`, ``--long``: :data:`LONG_ROUNDS`): each round prepares one of pull (the
four-layer test image from the local registry), build, commit, run, rm and rmi, starts it through the docker
CLI, kills berthd with SIGKILL after a random delay within the operation's usual time (seeded: the seed is
in the failure message) and restarts it on the same data root. Then: ``images`` and ``ps -a`` work, every
blob matches its digest, every image's config and layers are present and every tag names an image
(:func:`store_problems`), the pull repeated succeeds, the round's containers are removable with ``rm -f``,
and pruning leaves no temp file, partial layer or container directory behind (:func:`leftovers`).

**Disk full**: a 64 MiB ext4 image loop-mounted as the data root. A pull of an image bigger than the disk,
an import and a build fail with "no space left on device" and leave nothing half-written; a filler file
takes the rest of the space and a pull fails the same way; once it is removed the same pull succeeds.

**Monitor killed**: SIGKILL to a running container's monitor; ``rm -f`` still removes the container, its
process, mounts and directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.engine.images.layer_store import chain_ids
from backend.engine.runtime.cgroups import open_cgroup
from tests.fixtures.berthd import Berthd
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry
from tests.security.hostile import Tar, clear_error

pytestmark = [pytest.mark.root, pytest.mark.network]

ROUNDS = 50
LONG_ROUNDS = 300
MULTI = "fault/multilayer:latest"


@dataclass(frozen=True)
class Fault:
    """One crash round's operation: ``prepare`` (daemon up) returns the CLI argv that is killed mid-way;
    ``usual`` is about how long it takes (seconds), the range of the random kill delay."""

    name: str
    prepare: Callable[[Rig, str, Path], list[str]]
    usual: float


@dataclass(frozen=True)
class Rig:
    """The module's berthd (killed over and over) and the registry reference the pull rounds pull."""

    daemon: Berthd
    pull_ref: str


def _pull(rig: Rig, tag: str, tmp: Path) -> list[str]:
    rig.daemon.docker("rmi", "-f", rig.pull_ref, check=False)
    return ["pull", rig.pull_ref]


def _build(rig: Rig, tag: str, tmp: Path) -> list[str]:
    ctx = tmp / f"ctx-{tag}"
    ctx.mkdir()
    (ctx / "data").write_bytes(os.urandom(256 * 1024))
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN echo {tag} >/tag\nCOPY data /data\nRUN cat /data >/copy\n")
    return ["build", "-q", "-t", f"fault/built:{tag}", str(ctx)]


def _commit(rig: Rig, tag: str, tmp: Path) -> list[str]:
    rig.daemon.docker("exec", "fault-base", "sh", "-c", f"echo {tag} >/round")
    return ["commit", "fault-base", f"fault/committed:{tag}"]


def _run(rig: Rig, tag: str, tmp: Path) -> list[str]:
    return ["run", "-d", "--name", f"fault-{tag}", "-v", "/vol", "busybox", "sh", "-c", "echo up; sleep 600"]


def _rm(rig: Rig, tag: str, tmp: Path) -> list[str]:
    rig.daemon.docker("run", "-d", "--name", f"fault-{tag}", "-v", "/vol", "busybox", "sleep", "600")
    return ["rm", "-f", "-v", f"fault-{tag}"]


def _rmi(rig: Rig, tag: str, tmp: Path) -> list[str]:
    rig.daemon.docker("commit", "fault-base", f"fault/rmi:{tag}")
    return ["rmi", f"fault/rmi:{tag}"]


FAULTS = (Fault("pull", _pull, 1.5), Fault("build", _build, 4.0), Fault("commit", _commit, 1.0),
          Fault("run", _run, 1.5), Fault("rm", _rm, 1.0), Fault("rmi", _rmi, 0.5))


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def store_problems(data_root: Path) -> list[str]:
    """Blobs that do not match their digest, images whose config or layers are missing, tags of no image."""
    image = data_root / "image"
    blobs = image / "content" / "blobs" / "sha256"
    found = [f"blob {p.name} does not match its digest" for p in blobs.glob("*") if _sha256_file(p) != p.name]
    records = {}
    for path in (image / "meta" / "imagedb").glob("*.json"):
        record = json.loads(path.read_text())
        records[record["id"]] = record
        if not (blobs / record["id"].removeprefix("sha256:")).exists():
            found.append(f"image {record['id']}: config blob missing")
        for chain in chain_ids(record["diff_ids"]):
            if not (image / "overlay" / "layers" / chain.removeprefix("sha256:") / "layer.json").exists():
                found.append(f"image {record['id']}: layer {chain} missing")
    tags_path = image / "meta" / "repositories.json"
    repositories = json.loads(tags_path.read_text())["Repositories"] if tags_path.exists() else {}
    found += [f"tag {ref} names a missing image" for refs in repositories.values() for ref, image_id in refs.items()
              if image_id not in records]
    return found


def leftovers(daemon: Berthd) -> list[str]:
    """Temp files, partial layers and container directories that no container owns."""
    root = daemon.data_root
    found = [str(p.relative_to(root)) for d in ("image/tmp", "builder/tmp", "image/content/ingest")
             for p in (root / d).glob("*")]
    found += [str(p.relative_to(root)) for p in (root / "image" / "overlay" / "layers").glob("*")
              if not (p / "layer.json").exists()]
    known = set(daemon.docker("ps", "-aq", "--no-trunc").stdout.split())
    found += [str(p.relative_to(root)) for p in (root / "containers").glob("*") if p.name not in known]
    return found


@pytest.fixture(scope="module")
def fault_daemon(registry: LocalRegistry, busybox_image: LayoutImage, multilayer_image: LayoutImage
                 ) -> Iterator[Rig]:
    """A berthd of this module's own (it is killed over and over) with busybox and ``fault-base`` running."""
    daemon = Berthd()
    try:
        daemon.start()
        push_with_skopeo(busybox_image, "fault/busybox:latest", registry)
        push_with_skopeo(multilayer_image, MULTI, registry)
        daemon.docker("pull", "-q", f"{registry.domain}/fault/busybox:latest")
        daemon.docker("tag", f"{registry.domain}/fault/busybox:latest", "busybox:latest")
        daemon.docker("run", "-d", "--name", "fault-base", "busybox", "sleep", "100000")
        yield Rig(daemon, f"{registry.domain}/{MULTI}")
    finally:
        daemon.cleanup()


def _crash_round(rig: Rig, fault: Fault, tag: str, delay: float, tmp: Path) -> list[str]:
    """One round; returns the problems found (empty: the daemon came back whole)."""
    daemon = rig.daemon
    argv = fault.prepare(rig, tag, tmp)
    client = subprocess.Popen(["docker", *argv], env=daemon.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    daemon.stop(signal.SIGKILL)
    try:
        client.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        client.kill()
        client.communicate()
        return [f"docker {' '.join(argv)} hung after berthd died"]
    daemon.start()
    problems = []
    for verb in (("images", "-a"), ("ps", "-a")):
        result = daemon.docker(*verb, check=False)
        if result.returncode != 0:
            problems.append(f"docker {' '.join(verb)}: {result.stderr.strip()}")
    problems += store_problems(daemon.data_root)
    if daemon.docker("inspect", "-f", "{{.State.Paused}}", "fault-base").stdout.strip() == "true":  # a commit's
        unpause = daemon.docker("unpause", "fault-base", check=False)  # pause, recorded as the freezer says
        if unpause.returncode != 0:
            problems.append(f"unpause after a crash mid-commit: {unpause.stderr.strip()}")
    pull = daemon.docker("pull", "-q", rig.pull_ref, check=False)
    if pull.returncode != 0:
        problems.append(f"repeated pull: {pull.stderr.strip()}")
    ours = [c for c in daemon.docker("ps", "-aq", "--no-trunc", "--filter", "name=fault-r").stdout.split()]
    if ours:
        rm = daemon.docker("rm", "-f", "-v", *ours, check=False)
        if rm.returncode != 0:
            problems.append(f"rm -f after the crash: {rm.stderr.strip()}")
    for prune in (("container", "prune", "-f"), ("image", "prune", "-f"), ("builder", "prune", "-af"),
                  ("volume", "prune", "-f")):
        result = daemon.docker(*prune, check=False)
        if result.returncode != 0:
            problems.append(f"docker {' '.join(prune)}: {result.stderr.strip()}")
    problems += [f"left over after prune: {p}" for p in leftovers(daemon)]
    return problems


@pytest.mark.timeout(1800)  # --long runs take minutes; CI's take about two
def test_sigkill_of_berthd_mid_operation(fault_daemon: Rig, tmp_path: Path, pytestconfig: pytest.Config) -> None:
    rounds = LONG_ROUNDS if pytestconfig.getoption("--long", default=False) else ROUNDS
    seed = int(os.environ.get("BERTH_FAULT_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    failures = []
    for n in range(rounds):
        fault = FAULTS[n % len(FAULTS)]
        delay = rng.uniform(0, fault.usual)
        problems = _crash_round(fault_daemon, fault, f"r{n}", delay, tmp_path)
        failures += [f"round {n} ({fault.name}, killed after {delay:.2f}s): {p}" for p in problems]
    assert not failures, f"BERTH_FAULT_SEED={seed}\n" + "\n".join(failures)
    assert fault_daemon.daemon.docker("inspect", "-f", "{{.State.Running}}", "fault-base").stdout.strip() == "true"


def test_monitor_killed_then_rm_f_cleans_up(fault_daemon: Rig) -> None:
    daemon = fault_daemon.daemon
    name = f"fault-mon-{uuid.uuid4().hex[:8]}"
    cid = daemon.docker("run", "-d", "--name", name, "-v", "/vol", "busybox", "sleep", "600").stdout.strip()
    cdir = daemon.data_root / "containers" / cid
    monitor_pid = int((cdir / "monitor" / "monitor.pid").read_text())
    init_pid = int(daemon.docker("inspect", "-f", "{{.State.Pid}}", name).stdout)
    os.kill(monitor_pid, signal.SIGKILL)
    daemon.docker("rm", "-f", "-v", name)
    assert daemon.docker("ps", "-aq", "--filter", f"id={cid}").stdout.strip() == ""
    deadline = time.monotonic() + 10
    while Path(f"/proc/{init_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{init_pid}").exists() or "Z" in Path(f"/proc/{init_pid}/stat").read_text().split()[2]
    assert not cdir.exists()
    assert cid not in Path("/proc/self/mountinfo").read_text()
    assert not [p for p in Path("/sys/fs/cgroup").glob(f"*/{daemon.cgroup_parent}/*{cid}*")]


def test_freeze_left_by_a_crash_is_recorded_as_paused(fault_daemon: Rig) -> None:
    """berthd killed between the runtime's pause (a commit's) and saving the record: on restart the container
    is recorded as the freezer says, and ``unpause`` works."""
    daemon = fault_daemon.daemon
    name = f"fault-frz-{uuid.uuid4().hex[:8]}"
    cid = daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "600").stdout.strip()
    try:
        daemon.stop(signal.SIGKILL)
        open_cgroup(f"{daemon.cgroup_parent}/{cid}", cid).freeze()
        daemon.start()
        assert daemon.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == "paused"
        daemon.docker("unpause", name)
        assert daemon.docker("exec", name, "echo", "ok").stdout == "ok\n"
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_too_deep_exec_root_gives_a_clear_error(registry: LocalRegistry, fault_daemon: Rig) -> None:
    """An exec root too deep for the fork server's unix socket: ``run`` fails saying so, berthd stays up."""
    workdir = Path(tempfile.mkdtemp(prefix="berthd-"))
    daemon = Berthd(workdir, extra_args=["--exec-root", str(workdir / ("x" * 100))])
    try:
        daemon.start()
        source = f"{registry.domain}/fault/busybox:latest"
        daemon.docker("pull", "-q", source)
        clear_error(daemon.docker("run", "--rm", source, "true", check=False), "use a shorter --exec-root")
        assert daemon.docker("version", "-f", "{{.Server.Version}}").stdout.strip()
    finally:
        daemon.cleanup()


# --- disk full ----------------------------------------------------------------------------------------------

DISK_MIB = 64


@pytest.fixture
def small_disk_daemon(tmp_path: Path) -> Iterator[Berthd]:
    """A berthd whose data root is a 64 MiB ext4 image, loop-mounted (its workdir short: unix socket paths
    below the exec root must fit in 108 bytes)."""
    workdir = Path(tempfile.mkdtemp(prefix="berthd-"))
    data = workdir / "data"
    data.mkdir(parents=True)
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(DISK_MIB << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(data)], check=True)
    daemon = Berthd(workdir)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.cleanup()  # unmounts everything below its workdir, the data root too (the loop device goes with it)
        image.unlink()


def _big_image_ref(registry: LocalRegistry, helper: Berthd) -> str:
    """A one-layer image of 80 MiB random bytes, imported by ``helper`` and pushed to the registry."""
    tar = Tar().file("big", os.urandom(80 << 20)).bytes()
    ref = f"{registry.domain}/fault/big:latest"
    subprocess.run(["docker", "import", "-", ref], env=helper.env, input=tar, check=True, capture_output=True)
    helper.docker("push", ref)
    return ref


def test_disk_full_gives_clear_errors_and_recovers(small_disk_daemon: Berthd, fault_daemon: Rig,
                                                   registry: LocalRegistry, tmp_path: Path) -> None:
    daemon = small_disk_daemon
    small = f"{registry.domain}/fault/busybox:latest"
    big = _big_image_ref(registry, fault_daemon.daemon)
    clear_error(daemon.docker("pull", big, check=False, timeout=300), "no space left on device")
    big_tar = Tar().file("big", os.urandom(80 << 20)).bytes()
    imported = subprocess.run(["docker", "import", "-", "fault/imported"], env=daemon.env, input=big_tar,
                              capture_output=True)
    clear_error(subprocess.CompletedProcess(imported.args, imported.returncode, "", imported.stderr.decode()),
                "no space left on device")
    daemon.docker("pull", "-q", small)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "big").write_bytes(os.urandom(80 << 20))
    (ctx / "Dockerfile").write_text(f"FROM {small}\nCOPY big /big\n")
    clear_error(daemon.docker("build", "-q", str(ctx), check=False, timeout=300), "no space left on device")
    assert store_problems(daemon.data_root) == []
    assert leftovers(daemon) == []
    daemon.docker("rmi", small)
    filler = daemon.data_root / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)  # until the disk is full
    clear_error(daemon.docker("pull", small, check=False), "no space left on device")
    assert daemon.docker("images", "-q").stdout.strip() == ""
    filler.unlink()
    daemon.docker("pull", "-q", small)
    assert daemon.docker("run", "--rm", small, "echo", "ok").stdout == "ok\n"
    assert store_problems(daemon.data_root) == []
    assert leftovers(daemon) == []
