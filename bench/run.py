"""The benchmark harness (issue 11): Berth against dockerd, podman and runc, side by side, in one run.

Usage (as root): ``.venv/bin/python bench/run.py [--quick] [-n 3] [--only run,fleet,...] [--out DIR]``

Starts berthd, dockerd (Debian's docker.io, bridged inside a network namespace of its own) and podman (root,
its own --root/--runroot, ``podman system service`` for the Docker API), each on a data root in a temp dir,
loads the same busybox image into each, then runs every scenario of bench/scenarios.py against every system
that can run it, the systems alternating within each repetition. Prints the table; without ``--quick`` (or
with ``--out``) writes ``benchmarks.md`` (the part between its markers) and ``benchmarks.png`` into docs/ (or
``--out``). ``--quick`` takes fewer repetitions and smaller counts (CI's smoke run). Exit status 1 if a
scenario failed (its error is reported and the others still run), never because of a figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import systems  # noqa: E402
from bench.common import IMAGE, image_tar, running_berthd  # noqa: E402
from bench.report import Measure, chart, markdown, table, write_markdown  # noqa: E402
from bench.scenarios import SCENARIOS, Context  # noqa: E402

# bench/gui.py imports these from here.
_image_tar = image_tar
__all__ = ["IMAGE", "_image_tar", "main", "running_berthd"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller counts (CI)")
    parser.add_argument("-n", type=int, help="repetitions per scenario and system (default 3, --quick 1)")
    parser.add_argument("--only", help=f"comma-separated scenarios among {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, help="where benchmarks.md and .png go (default docs/ without --quick)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose among {', '.join(SCENARIOS)}")
    if os.geteuid() != 0:
        print("bench/run.py needs root (namespaces, cgroups, the engines)", file=sys.stderr)
        return 2
    reps = args.n or (1 if args.quick else 3)
    out = args.out or (None if args.quick else REPO / "docs")
    for name in [k for k in os.environ if "proxy" in k.lower()]:
        del os.environ[name]  # loopback only: never through a proxy

    measures: list[Measure] = []
    errors: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        running: dict[str, systems.System] = {}
        starters = {"berthd": lambda: systems.berthd(work / "berthd"), "dockerd": systems.dockerd,
                    "podman": lambda: systems.podman(work / "podman")}
        tar = image_tar(work)
        for name, start in starters.items():
            try:
                system = stack.enter_context(start())
                system.docker("load", "-q", "-i", str(tar))
                running[name] = system
            except Exception as exc:  # a system that cannot start is reported; the others still run
                errors.append(f"{name} did not start: {type(exc).__name__}: {exc}")
        ctx = Context(running, reps, args.quick, work)
        for name in names:
            log(f"{name} ...")
            scenario_start = time.monotonic()
            try:
                measures += SCENARIOS[name](ctx)
            except Exception as exc:
                errors.append(f"{name}: {type(exc).__name__}: {str(exc).strip()[:500]}")
                traceback.print_exc()
            log(f"{name} done in {time.monotonic() - scenario_start:.0f} s")
    print(table(measures))
    for error in errors:
        print(f"FAILED {error}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        chart(measures, out / "benchmarks.png")
        what = f"{reps} repetitions per scenario and system" + (" (--quick)" if args.quick else "")
        write_markdown(out / "benchmarks.md", markdown(measures, errors, f"{what}; whole run "
                                                       f"{(time.monotonic() - started) / 60:.0f} min.",
                                                       "benchmarks.png"))
        log(f"wrote {out / 'benchmarks.md'} and {out / 'benchmarks.png'}")
    return 1 if errors else 0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
