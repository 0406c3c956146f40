"""The harness's scenarios (issue 11). Each takes the :class:`Context` and returns its :class:`Measure` list;
within every repetition the systems take turns, and the first system of a round rotates from one repetition to
the next, so background load and warm caches favour none of them."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import build, compose, network
from bench.common import IMAGE, Api, cpu_seconds, rss_kb
from bench.pull import build_bench_image
from bench.report import Measure
from bench.systems import System
from tests.fixtures.dockerd import entered_netns
from tests.fixtures.images import push_with_skopeo
from tests.fixtures.registry import LocalRegistry
from tests.fixtures.rootfs import default_cache_dir

BENCH_DIR = Path(__file__).resolve().parent
# A container that ends on SIGTERM at once (a plain ``sleep`` as pid 1 ignores it and waits for the kill).
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"]


@dataclass
class Context:
    """What every scenario gets: the running systems, repetitions, sizes and a scratch dir."""

    systems: dict[str, System]
    reps: int
    quick: bool
    work: Path

    def rounds(self, names: tuple[str, ...], reps: int | None = None) -> Iterator[System]:
        """The systems among ``names`` that run, ``reps`` times over, the first of each round rotating."""
        present = [self.systems[n] for n in names if n in self.systems]
        for rep in range(self.reps if reps is None else reps):
            shift = rep % len(present) if present else 0
            yield from present[shift:] + present[:shift]


def timed(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Seconds ``fn(*args, **kwargs)`` took."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def engine_rss_mb(system: System) -> float:
    return sum(rss_kb(p) for p in system.engine_pids()) / 1024


# --- idle -------------------------------------------------------------------------------------------------


def idle(ctx: Context) -> list[Measure]:
    """RSS and CPU of every engine while all of them idle, in six slices of one window."""
    window = 6.0 if ctx.quick else 60.0
    how = (f"sum over the engine's processes (berthd + fork server + monitors; dockerd + containerd; podman system "
           f"service), all systems idle at once with the image loaded and no container, {window:.0f} s cut in six "
           "slices, one sample per slice")
    rss = Measure("idle.rss", "Daemon idle RSS", "MB", how)
    cpu = Measure("idle.cpu", f"Daemon idle CPU over {window:.0f} s", "% of a core", how)
    systems = list(ctx.systems.values())
    for _ in range(6):
        before = {s.name: sum(cpu_seconds(p) for p in s.engine_pids()) for s in systems}
        time.sleep(window / 6)
        for s in systems:
            cpu.add(s.name, 100 * (sum(cpu_seconds(p) for p in s.engine_pids()) - before[s.name]) / (window / 6))
            rss.add(s.name, engine_rss_mb(s))
    return [rss, cpu]


# --- run --rm -----------------------------------------------------------------------------------------------


def run_rm(ctx: Context) -> list[Measure]:
    """``run --rm --network none IMAGE true`` through the docker CLI and through each system's own CLI."""
    args = ["run", "--rm", "--network", "none", IMAGE, "true"]
    docker = Measure("run.docker", "`docker run --rm true` (docker CLI)", "s",
                     "`docker run --rm --network none busybox true` end to end, CLI start-up included, against "
                     "berthd, dockerd and podman's Docker API service")
    own = Measure("run.own", "`run --rm true` (own CLI)", "s",
                  "the same through each system's own CLI: `berth run`, `docker run` (dockerd), `podman run "
                  "--pull never`")
    for system in ctx.systems.values():  # warm: first container, page cache
        system.docker(*args)
    names = ("berthd", "dockerd", "podman")
    for system in ctx.rounds(names, 2 if ctx.quick else 3 * ctx.reps):
        docker.add(system.name, timed(system.docker, *args))
        own_args = [*args[:1], "--pull", "never", *args[1:]] if system.name == "podman" else args
        own.add(system.name, timed(system.own, *own_args))
    return [docker, own]


# --- many containers: throughput, API latency, memory ----------------------------------------------------------


def fleet(ctx: Context) -> list[Measure]:
    """Create + start ``count`` containers through the API, API latency and engine RSS with all of them
    running, then stop + remove all."""
    count, calls = (10, 10) if ctx.quick else (100, 50)
    api = f"one keep-alive connection to the Docker API socket, {calls} calls, median per repetition"
    up = Measure("fleet.up", f"create + start of {count} containers", "s",
                 f"`POST /containers/create` + `/start` one after the other for {count} busybox containers "
                 f"(`sh` waiting on `sleep`, network none), through the API")
    latency = {path: Measure(f"api.{path}", f"`GET {path}` with {count} containers", "ms", api)
               for path in ("/containers/json?all=1", "/images/json", "/_ping")}
    rss = Measure("fleet.rss", f"Engine RSS with {count} running containers", "MB",
                  "sum over the engine's processes: berthd + monitors; dockerd + containerd + shims; podman service "
                  "+ conmons")
    down = Measure("fleet.down", f"stop + remove of {count} containers", "s",
                   "`POST /containers/{id}/stop` then `DELETE /containers/{id}` one after the other "
                   "(one fleet per system and run)")
    for system in ctx.rounds(("berthd", "dockerd", "podman"), 1):  # one fleet per system: 100 of each operation
        client = Api(system.socket)
        ids: list[str] = []
        try:
            start = time.perf_counter()
            for _ in range(count):
                created = client.call("POST", "/containers/create", {
                    "Image": IMAGE, "Cmd": SLEEPER, "HostConfig": {"NetworkMode": "none"}})
                ids.append(created["Id"])
                client.call("POST", f"/containers/{created['Id']}/start")
            up.add(system.name, time.perf_counter() - start)
            rss.add(system.name, engine_rss_mb(system))
            for path, measure in latency.items():
                samples = []
                for _ in range(calls):
                    samples.append(timed(client.call, "GET", path) * 1000)
                measure.add(system.name, sorted(samples)[len(samples) // 2])
            start = time.perf_counter()
            for cid in ids:
                client.call("POST", f"/containers/{cid}/stop?t=10")
                client.call("DELETE", f"/containers/{cid}")
            down.add(system.name, time.perf_counter() - start)
            ids.clear()
        finally:
            for cid in ids:
                with contextlib.suppress(Exception):
                    client.call("DELETE", f"/containers/{cid}?force=1")
            client.close()
    return [up, *latency.values(), rss, down]


# --- build -----------------------------------------------------------------------------------------------------


def build_10_steps(ctx: Context) -> list[Measure]:
    """The 10-step Dockerfile of bench/build.py, cold (``--no-cache``) and fully cached."""
    context = build.make_context(ctx.work / "build")
    how = ("`docker build` with DOCKER_BUILDKIT=0 for berthd and dockerd (classic builder), `podman build` for "
           "podman, `--network none`, end to end with the CLI")
    cold = Measure("build.cold", "Build of a 10-step Dockerfile, cold", "s", how + "; `--no-cache`")
    cached = Measure("build.cached", "Build of a 10-step Dockerfile, fully cached", "s", how + "; the same again")

    def builder(system: System, *flags: str) -> Callable[[], object]:
        argv = ["build", "--network", "none", *flags, "-t", "bench/built", str(context)]
        if system.name == "podman":
            return lambda: system.own(*argv)
        env = system.env | {"DOCKER_BUILDKIT": "0"}
        return lambda: subprocess.run(["docker", *argv], env=env, check=True, capture_output=True, timeout=300)

    for system in ctx.systems.values():
        builder(system)()  # warm
    for system in ctx.rounds(("berthd", "dockerd", "podman")):
        cold.add(system.name, timed(builder(system, "--no-cache")))
        cached.add(system.name, timed(builder(system)))
    return [cold, cached]


# --- pull and push -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def registry_for(system: System, base: Path) -> Iterator[LocalRegistry]:
    """A fresh docker-registry on the 127.0.0.1 the system sees (dockerd's namespace for dockerd)."""
    with entered_netns(system.netns) if system.netns else contextlib.nullcontext():
        registry = LocalRegistry(base_dir=base).start()
    try:
        yield registry
    finally:
        registry.stop()


def pull_push(ctx: Context) -> list[Measure]:
    """Pull of the ~200 MB 5-layer image of bench/pull.py from a local registry, and push of it to an empty one."""
    layout, compressed, uncompressed = build_bench_image(default_cache_dir())
    size = f"{compressed / 2**20:.0f} MiB gzip, {uncompressed / 2**20:.0f} MiB unpacked"
    pull = Measure("pull", "Pull of a 5-layer image", "s",
                   f"`docker pull` (berthd, dockerd) / `podman pull --tls-verify=false` of bench/pull.py's image "
                   f"({size}) from docker-registry on 127.0.0.1 (in dockerd's namespace for dockerd); the image "
                   "is removed (untimed) after each pull")
    push = Measure("push", "Push of the same image", "s",
                   "`docker push` / `podman push --tls-verify=false` of the pulled image to a registry started "
                   "empty for every sample (nothing to skip or mount)")
    base = ctx.work / "registries"
    base.mkdir()
    with contextlib.ExitStack() as stack:
        sources: dict[str | None, LocalRegistry] = {}
        for system in ctx.systems.values():
            if system.netns not in sources:
                registry = stack.enter_context(registry_for(system, base))
                with entered_netns(system.netns) if system.netns else contextlib.nullcontext():
                    push_with_skopeo(layout, "bench/pull:latest", registry)
                sources[system.netns] = registry
        for system in ctx.rounds(("berthd", "dockerd", "podman")):
            tls = ["--tls-verify=false"] if system.name == "podman" else []
            cli = system.own if system.name == "podman" else system.docker
            ref = f"{sources[system.netns].domain}/bench/pull:latest"
            pull.add(system.name, timed(cli, "pull", *tls, ref, timeout=600))
            with registry_for(system, base) as sink:
                target = f"{sink.domain}/bench/pushed:latest"
                cli("tag", ref, target)
                push.add(system.name, timed(cli, "push", *tls, target, timeout=600))
            cli("rmi", ref, target)
    return [pull, push]


# --- compose -----------------------------------------------------------------------------------------------------


def compose_up_down(ctx: Context) -> list[Measure]:
    """bench/compose.py's three-service project: berth compose on berthd, docker-compose on dockerd."""
    file = compose.make_project(ctx.work / "compose")
    how = ("`berth compose` on berthd, Debian's `docker-compose` (v1) on dockerd; `up -d` until db is healthy and "
           "all three run (web built from a Dockerfile, db with a volume and a 1 s health check, cache)")
    up = Measure("compose.up", "Compose up -d to all healthy", "s", how)
    down = Measure("compose.down", "Compose down -v", "s", how + "; then `down -v`")
    for system in ctx.rounds(("berthd", "dockerd")):
        up_s, down_s = compose.up_down(system.engine, file)
        up.add(system.name, up_s)
        down.add(system.name, down_s)
    return [up, down]


# --- networking ----------------------------------------------------------------------------------------------------


def networking(ctx: Context) -> list[Measure]:
    """bench/network.py's published-port and throughput scenarios, berthd vs bridged dockerd."""
    mb = 20 if ctx.quick else 200
    first = Measure("net.first", "Published port: `run -d -p` returned -> first HTTP answer", "ms",
                    "busybox httpd published on 127.0.0.1 (dockerd's namespace for dockerd: its docker-proxy), "
                    "requests to / until one is answered")
    h2c = Measure("net.h2c", f"Host -> container TCP, {mb} MiB", "MiB/s",
                  "zeros sent through the published port into `busybox nc -l`, until the container closes",
                  higher_is_better=True)
    c2c = Measure("net.c2c", f"Container -> container TCP, {mb} MiB", "MiB/s",
                  "`dd | busybox nc` to another container on a user network, timed inside by `busybox time` "
                  "(busybox nc copies small chunks: CPU-bound, compares engines, not line rates)",
                  higher_is_better=True)
    for system in ctx.rounds(("berthd", "dockerd")):
        try:
            first.add(system.name, network.first_answer(system.engine, mb)[0] * 1000)
            h2c.add(system.name, network.host_to_container(system.engine, mb)[0])
            c2c.add(system.name, network.container_to_container(system.engine, mb)[0])
        except OSError as exc:
            raise RuntimeError(f"{system.name}: {exc}") from exc
    return [first, h2c, c2c]


# --- subprocess benchmarks: runtime, GUI ------------------------------------------------------------------------------


def runtime_cycle(ctx: Context) -> list[Measure]:
    """bench/runtime.py (its own process: it makes itself a child subreaper), runc vs berth-runtime."""
    n = 10 if ctx.quick else 50
    out = subprocess.run([sys.executable, str(BENCH_DIR / "runtime.py"), "-n", str(n), "--json"], check=True,
                         capture_output=True, text=True, timeout=900).stdout
    totals = json.loads(out.strip().splitlines()[-1])
    how = (f"bench/runtime.py: create + start + wait + delete of a /bin/true bundle, {n} cycles per variant, "
           "alternating")
    measures = [Measure("runtime.fs", "Runtime cycle, berth-runtime warm fork server (as berthd uses it)", "ms", how),
                Measure("runtime.cli", "Runtime cycle, berth-runtime cold CLI", "ms", how)]
    for measure, key in zip(measures, ("berth-fs", "berth-cli"), strict=True):
        for system, variant in (("berthd", key), ("runc", "runc")):
            if not isinstance(totals.get(variant), list):
                raise RuntimeError(f"{variant}: {totals.get(variant)}")
            measure.samples[system] = totals[variant]
    return measures


GUI_LINE = re.compile(r"^\s+(?P<name>.+?)\s+(?P<value>[\d.]+)\s+[\d.]+\s+(ok|MISSED)$")


def gui(ctx: Context) -> list[Measure]:
    """bench/gui.py in its own process (Qt offscreen); Berth only, against the issue's absolute targets."""
    argv = [sys.executable, str(BENCH_DIR / "gui.py"), *(["--quick"] if ctx.quick else [])]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600).stdout
    how = ("bench/gui.py: " + ("20 containers, 50 events (--quick)" if ctx.quick else "200 containers, 500 events")
           + "; sort over 2,000 synthetic rows")
    measures = []
    for line in out.splitlines():
        if match := GUI_LINE.match(line):
            name = match["name"]
            unit = name[name.rfind("(") + 1:-1]
            measure = Measure(f"gui.{name}", f"GUI {name[:name.rfind('(')].strip()}", unit, how)
            measure.add("berthd", float(match["value"]))
            measures.append(measure)
    if not measures:
        raise RuntimeError(f"no figures in bench/gui.py's output: {out[-300:]}")
    return measures


SCENARIOS: dict[str, Callable[[Context], list[Measure]]] = {
    "idle": idle,
    "run": run_rm,
    "fleet": fleet,
    "build": build_10_steps,
    "pull": pull_push,
    "compose": compose_up_down,
    "network": networking,
    "runtime": runtime_cycle,
    "gui": gui,
}
