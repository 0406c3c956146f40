"""Container start-up latency: runc vs berth-runtime (cold CLI) vs berth-runtime (warm fork server).

Usage (as root): ``.venv/bin/python bench/runtime.py [-n 50]``

Each iteration is one full cycle for a bundle whose process is ``/bin/true`` (busybox rootfs, the same
one the tests build): ``create --pid-file`` + ``start`` + wait for the container's init to exit +
``delete``. The benchmark process is a child subreaper, so the init is reparented to it once the runtime
has exited; "wait" is a ``waitpid`` on the pid from the pid file.

Variants alternate cycle by cycle. Prints the median and 90th percentile per variant and per step, and the
ratio to runc (``--json``: each variant's totals). It never fails on timing; a variant that cannot run is
reported as unavailable.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from backend.engine.runtime.defaults import DEFAULT_RLIMITS, docker_default_config  # noqa: E402
from tests.fixtures.rootfs import build_busybox_rootfs  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36
CGROUP_PARENT = "berth-bench"
STEPS = ("create", "start", "wait", "delete")

# One CLI verb: (argv after the program name) -> exit code. stdio of the verb is /dev/null, except
# stderr, which goes to a log file so that a failure can be shown.
Invoke = Callable[[list[str]], int]


class VariantUnavailable(Exception):
    pass


@dataclass
class Samples:
    total: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def host_safe_rlimits() -> list[tuple[str, int, int]]:
    """Docker's rlimits, capped at this process's hard limits (raising them needs CAP_SYS_RESOURCE)."""
    out = []
    for kind, soft, hard in DEFAULT_RLIMITS:
        _, host_hard = resource.getrlimit(getattr(resource, kind))
        if host_hard != resource.RLIM_INFINITY:
            hard = min(hard, host_hard)
            soft = min(soft, hard)
        out.append((kind, soft, hard))
    return out


def set_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def make_bundle(work: Path, rootfs: Path, name: str) -> Path:
    bundle = work / f"bundle-{name}"
    bundle.mkdir()
    config = docker_default_config(
        ["/bin/true"],
        rootfs=str(rootfs),
        readonly_rootfs=True,
        rlimits=host_safe_rlimits(),
        cgroups_path=f"/{CGROUP_PARENT}/{name}",
    )
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def cli_invoker(binary: str, log: Path) -> Invoke:
    def invoke(argv: list[str]) -> int:
        with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out, open(log, "ab") as err:
            return subprocess.call([binary, *argv], stdin=null_in, stdout=null_out, stderr=err)

    return invoke


def cycle(invoke: Invoke, state_root: Path, bundle: Path, pid_file: Path, cid: str, samples: Samples) -> None:
    """create + start + wait + delete; raises VariantUnavailable on a failed verb."""
    t0 = time.perf_counter()
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    rc = invoke(["--root", str(state_root), "create", "-b", str(bundle), "--pid-file", str(pid_file), cid])
    if rc != 0:
        raise VariantUnavailable(f"create exited {rc}")
    t1 = time.perf_counter()
    rc = invoke(["--root", str(state_root), "start", cid])
    if rc != 0:
        invoke(["--root", str(state_root), "delete", "--force", cid])
        raise VariantUnavailable(f"start exited {rc}")
    t2 = time.perf_counter()
    pid = int(pid_file.read_text().strip())
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        # not reparented to us (the runtime kept it as its own child): poll until it is gone
        while Path(f"/proc/{pid}").exists() and _state(pid) not in ("Z", "X"):
            time.sleep(0.0005)
    t3 = time.perf_counter()
    rc = invoke(["--root", str(state_root), "delete", cid])
    if rc != 0:
        invoke(["--root", str(state_root), "delete", "--force", cid])
        raise VariantUnavailable(f"delete exited {rc}")
    t4 = time.perf_counter()
    times: dict[str, float] = {"create": t1 - t0, "start": t2 - t1, "wait": t3 - t2, "delete": t4 - t3}
    samples.total.append((t4 - t0) * 1000)
    for step, seconds in times.items():
        samples.steps[step].append(seconds * 1000)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def one_cycle(name: str, invoke: Invoke, work: Path, rootfs: Path, samples: Samples, log: Path) -> None:
    """One create+start+wait+delete cycle of a fresh bundle into ``samples``. Raises VariantUnavailable."""
    state_root = work / f"state-{name}"
    state_root.mkdir(exist_ok=True)
    cid = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    bundle = make_bundle(work, rootfs, cid)
    try:
        cycle(invoke, state_root, bundle, work / f"pid-{name}", cid, samples)
    except VariantUnavailable as exc:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        raise VariantUnavailable(f"{exc}: {' | '.join(tail)}") from None
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def remove_bench_cgroups() -> None:
    base = Path("/sys/fs/cgroup")
    candidates = [base / CGROUP_PARENT, *(p / CGROUP_PARENT for p in base.iterdir() if p.is_dir())]
    for path in candidates:
        if path.is_dir():
            for sub in sorted((d for d in path.rglob("*") if d.is_dir()), key=lambda d: -len(str(d))):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                path.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="cycles per variant (default 50)")
    parser.add_argument("--json", action="store_true", help="print each variant's totals (ms) as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/runtime.py needs root (namespaces, cgroups)", file=sys.stderr)
        return 2

    set_subreaper()
    rootfs = build_busybox_rootfs()
    work = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    results: dict[str, Samples | str] = {}
    berth_bin = Path(sys.executable).parent / "berth-runtime"
    runc_bin = shutil.which("runc")
    try:

        def runc_setup() -> tuple[Invoke, Callable[[], None]]:
            if runc_bin is None:
                raise VariantUnavailable("runc not found on PATH")
            return cli_invoker(runc_bin, work / "runc.log"), lambda: None

        def berth_cli_setup() -> tuple[Invoke, Callable[[], None]]:
            if not berth_bin.exists():
                raise VariantUnavailable(f"{berth_bin} not found")
            return cli_invoker(str(berth_bin), work / "berth-cli.log"), lambda: None

        def forkserver_setup() -> tuple[Invoke, Callable[[], None]]:
            try:
                from backend.engine.runtime.forkserver_client import ForkServer
            except ImportError as exc:
                raise VariantUnavailable(f"backend.engine.runtime.forkserver not importable: {exc}") from None
            server = ForkServer.start(str(work / "forkserver"))
            log = work / "berth-forkserver.log"

            def invoke(verb_argv: list[str]) -> int:
                with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out, open(log, "ab") as err:
                    return server.run(verb_argv, stdin=null_in.fileno(), stdout=null_out.fileno(), stderr=err.fileno())

            return invoke, server.close

        variants: list[tuple[str, str, Callable[[], tuple[Invoke, Callable[[], None]]]]] = [
            ("runc", "runc CLI", runc_setup),
            ("berth-cli", "berth-runtime CLI (cold)", berth_cli_setup),
            ("berth-fs", "berth-runtime fork server", forkserver_setup),
        ]
        invokers: dict[str, Invoke] = {}
        closers: list[Callable[[], None]] = []
        for key, _label, setup in variants:
            try:
                invokers[key], close = setup()
                closers.append(close)
                one_cycle(key, invokers[key], work, rootfs, Samples(), work / f"{key}.log")  # warm, not counted
                results[key] = Samples()
            except Exception as exc:  # a broken variant must not stop the others
                invokers.pop(key, None)
                results[key] = f"unavailable: {type(exc).__name__}: {exc}"
        print(f"{args.n} rounds of {', '.join(invokers)} ...", file=sys.stderr, flush=True)
        for _ in range(args.n):  # alternating: background load hits every variant alike
            for key, invoke in list(invokers.items()):
                samples = results[key]
                assert isinstance(samples, Samples)
                try:
                    one_cycle(key, invoke, work, rootfs, samples, work / f"{key}.log")
                except Exception as exc:
                    invokers.pop(key)
                    results[key] = f"unavailable: {type(exc).__name__}: {exc}"
        for close in closers:
            with contextlib.suppress(Exception):
                close()
        if args.json:
            print(json.dumps({key: res.total if isinstance(res, Samples) else res for key, res in results.items()}))
            return 0
        print_table(results, [(k, label) for k, label, _ in variants], args.n)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        remove_bench_cgroups()
    return 0


def print_table(results: dict[str, Samples | str], labels: list[tuple[str, str]], n: int) -> None:
    runc = results.get("runc")
    runc_med = statistics.median(runc.total) if isinstance(runc, Samples) and runc.total else None
    runc_p90 = percentile(runc.total, 0.9) if isinstance(runc, Samples) and runc.total else None
    print(f"\ncreate+start+wait+delete of /bin/true, {n} cycles per variant (ms)\n")
    header = f"{'variant':<28}{'median':>9}{'p90':>9}{'x runc':>8}{'x runc p90':>11}   " + "".join(
        f"{s:>8}" for s in STEPS
    )
    print(header)
    print("-" * len(header))
    for key, label in labels:
        res = results.get(key)
        if not isinstance(res, Samples):
            print(f"{label:<28}{res}")
            continue
        med, p90 = statistics.median(res.total), percentile(res.total, 0.9)
        ratio = f"{med / runc_med:8.2f}" if runc_med else f"{'-':>8}"
        ratio90 = f"{p90 / runc_p90:11.2f}" if runc_p90 else f"{'-':>11}"
        steps = "".join(f"{statistics.median(res.steps[s]):8.1f}" for s in STEPS)
        print(f"{label:<28}{med:9.1f}{p90:9.1f}{ratio}{ratio90}   {steps}")
    print("\n(step columns are medians; ratios are berth/runc)")


if __name__ == "__main__":
    sys.exit(main())
