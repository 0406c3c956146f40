"""berthd as a process: socket created safely, one daemon per data root, the docker CLI talks to it,
bad configuration is one clear line, SIGTERM stops it and removes the socket."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry

pytestmark = pytest.mark.root
BERTHD = str(Path(sys.executable).parent / "berthd")


CGROUP_PARENT = f"berth-test-d{os.getpid()}"


@pytest.fixture(scope="module", autouse=True)
def _remove_cgroup_parent() -> Iterator[None]:
    """The daemons here put containers under their own parent cgroup. Containers outlive berthd by
    design, so a failed test can leave some: thaw and kill them by pid, then remove the cgroups."""
    yield
    parent = Path("/sys/fs/cgroup/freezer") / CGROUP_PARENT
    for state in parent.glob("*/freezer.state"):
        with contextlib.suppress(OSError):
            state.write_text("THAWED")
    for procs in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/*/cgroup.procs"):
        for pid in procs.read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)
    time.sleep(0.2)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for child in (hierarchy / CGROUP_PARENT).glob("*/"):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            (hierarchy / CGROUP_PARENT).rmdir()


def _start(tmp: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([BERTHD, "-H", f"unix://{tmp}/run/berth.sock", "--data-root", str(tmp / "data"),
                             "--exec-root", str(tmp / "run"), "--cgroup-parent", CGROUP_PARENT, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"berthd exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("berthd did not create its socket")
        time.sleep(0.05)


@pytest.fixture
def berthd(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    proc = _start(tmp_path)
    sock = tmp_path / "run" / "berth.sock"
    try:
        _wait_for(sock, proc)
        yield proc, sock
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def test_socket_mode_and_docker_cli(berthd: tuple[subprocess.Popen[str], Path], tmp_path: Path) -> None:
    _, sock = berthd
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    docker = shutil.which("docker")
    assert docker, "the docker CLI (Debian's docker.io) is installed by the test command"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    (tmp_path / "cfg").mkdir()
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp_path / "cfg"))
    out = subprocess.run([docker, "version", "--format", "{{.Server.APIVersion}}"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "1.41", out.stderr
    images = subprocess.run([docker, "images", "-q"], env=env, capture_output=True, text=True, timeout=30)
    assert images.returncode == 0 and images.stdout == ""


def test_second_daemon_on_the_same_data_root_is_refused(berthd: tuple[subprocess.Popen[str], Path],
                                                        tmp_path: Path) -> None:
    other = subprocess.run([BERTHD, "-H", f"unix://{tmp_path}/other.sock", "--data-root", str(tmp_path / "data")],
                           capture_output=True, text=True, timeout=30)
    assert other.returncode == 1
    assert other.stderr.strip() == f"berthd: another berthd is using the data root {tmp_path / 'data'}"


def test_sigterm_stops_and_removes_the_socket(berthd: tuple[subprocess.Popen[str], Path]) -> None:
    proc, sock = berthd
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not sock.exists()


def test_sigterm_ends_open_event_streams(berthd: tuple[subprocess.Popen[str], Path], tmp_path: Path) -> None:
    """Open /events streams (the desktop app, `docker events`, the VM's port forwarder) end with the daemon
    instead of keeping it from stopping."""
    proc, sock = berthd
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    (tmp_path / "cfg").mkdir()
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp_path / "cfg"))
    watchers = [subprocess.Popen(["docker", "events"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(3)]
    try:
        deadline = time.monotonic() + 20
        while "EventsListeners: 3" not in _info(env) and time.monotonic() < deadline:
            time.sleep(0.1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - started < 10
        for watcher in watchers:
            watcher.wait(10)  # the streams ended: the clients exit
    finally:
        for watcher in watchers:
            watcher.kill()


def _info(env: dict[str, str]) -> str:
    return subprocess.run(["docker", "info", "--format", "EventsListeners: {{.NEventsListener}}"], env=env,
                          capture_output=True, text=True, timeout=30).stdout


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "berth.sock").write_text("stale")
    proc = _start(tmp_path)
    try:
        deadline = time.monotonic() + 20
        sock = tmp_path / "run" / "berth.sock"
        while not (sock.exists() and stat.S_ISSOCK(os.stat(sock).st_mode)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@pytest.mark.parametrize("config, message", [
    ("- just a list\n", "expected a mapping of settings"),
    ("colour: blue\n", "unknown setting 'colour'"),
    ("data-root: [unclosed\n", "config file"),
])
def test_bad_config_is_one_clear_line(tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "daemon.yaml"
    path.write_text(config)
    result = subprocess.run([BERTHD, "--config-file", str(path), "--data-root", str(tmp_path / "d")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bad_listen_and_runtime_flags_are_one_clear_line(tmp_path: Path) -> None:
    for argv, message in ((["-H", "tcp://0.0.0.0:2375"], "needs mutual TLS"),
                          (["--add-runtime", "nopath"], "expected NAME=PATH"),
                          (["-H", "tcp://127.0.0.1:nope"], "expected tcp://HOST:PORT"),
                          (["-H", "tcp://127.0.0.1:2375", "--tlsverify"], "--tlsverify needs --tlscacert")):
        result = subprocess.run([BERTHD, *argv, "--data-root", str(tmp_path / "d")], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 1 and message in result.stderr, result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _certificates(tmp: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate (openssl, in ``tmp``)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=berth test CA")
    (tmp / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (tmp / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}-key.pem", "-out", f"{who}.csr",
            "-subj", f"/CN={who}")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext")
    return {name: tmp / f"{name}.pem" for name in ("ca", "server", "server-key", "client", "client-key")}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make test certificates")
def test_tcp_on_loopback_and_with_mutual_tls(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(tmp_path / "cfg")
    plain, secured = _free_port(), _free_port()
    certs = _certificates(tmp_path)
    daemon = _start(tmp_path, "-H", f"tcp://127.0.0.1:{plain}")  # loopback: no TLS needed
    try:
        _wait_for(tmp_path / "run" / "berth.sock", daemon)
        version = subprocess.run(["docker", "-H", f"tcp://127.0.0.1:{plain}", "version", "--format",
                                  "{{.Server.Version}}"], env=env, capture_output=True, text=True, timeout=30)
        assert version.returncode == 0 and version.stdout.strip(), version.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
    tls = ["--tlsverify", "--tlscacert", str(certs["ca"]), "--tlscert", str(certs["server"]),
           "--tlskey", str(certs["server-key"])]
    daemon = _start(tmp_path, "-H", f"tcp://127.0.0.1:{secured}", *tls)
    try:
        _wait_for(tmp_path / "run" / "berth.sock", daemon)
        client = ["--tlsverify", "--tlscacert", str(certs["ca"]), "--tlscert", str(certs["client"]),
                  "--tlskey", str(certs["client-key"])]
        ok = subprocess.run(["docker", "-H", f"tcp://127.0.0.1:{secured}", *client, "version", "--format",
                             "{{.Server.Version}}"], env=env, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0 and ok.stdout.strip(), ok.stderr
        no_cert = subprocess.run(["docker", "-H", f"tcp://127.0.0.1:{secured}", "--tlsverify", "--tlscacert",
                                  str(certs["ca"]), "version"], env=env, capture_output=True, text=True, timeout=30)
        assert no_cert.returncode != 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)


@pytest.mark.network
def test_docker_cli_container_lifecycle(berthd: tuple[subprocess.Popen[str], Path], tmp_path: Path,
                                        busybox_image: LayoutImage, registry: LocalRegistry) -> None:
    _, sock = berthd
    push_with_skopeo(busybox_image, "cli/bb:latest", registry)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    (tmp_path / "cfg").mkdir()
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp_path / "cfg"))

    def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)
        assert not check or result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
        return result

    image = f"{registry.domain}/cli/bb"
    docker("pull", "-q", image)
    cid = docker("create", "--name", "job", image, "sh", "-c", "echo hello; echo oops >&2; exit 4").stdout.strip()
    docker("start", "job")
    assert docker("wait", "job").stdout.strip() == "4"
    logs = docker("logs", "job")
    assert logs.stdout == "hello\n" and logs.stderr == "oops\n"
    ps = docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
    assert "job Exited (4)" in ps
    assert docker("inspect", "--format", "{{.State.ExitCode}} {{.Path}}", cid).stdout.strip() == "4 sh"

    docker("run", "-d", "--name", "sleeper", image, "sleep", "100")
    assert docker("ps", "--format", "{{.Names}}").stdout.split() == ["sleeper"]
    docker("stop", "-t", "1", "sleeper")
    assert docker("inspect", "--format", "{{.State.ExitCode}}", "sleeper").stdout.strip() == "137"
    docker("start", "sleeper")
    assert docker("exec", "sleeper", "echo", "hi").stdout == "hi\n"
    assert docker("exec", "-u", "1000:1000", "-w", "/bin", "-e", "X=1", "sleeper", "sh", "-c",
                  "echo $(id -u) $PWD $X").stdout == "1000 /bin 1\n"
    piped = subprocess.run(["docker", "exec", "-i", "sleeper", "sh", "-c", "cat; echo done"], env=env,
                           input="typed\n", capture_output=True, text=True, timeout=60)
    assert piped.stdout == "typed\ndone\n", piped.stderr
    top = docker("top", "sleeper").stdout.splitlines()
    assert top[0].split()[:2] == ["UID", "PID"] and len(top) == 2 and top[1].endswith("sleep 100")
    stats = docker("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", "sleeper").stdout.split()
    assert stats[:2] == ["sleeper", "1"] and stats[2].endswith(("B", "KiB", "MiB")), stats
    failing = docker("exec", "sleeper", "sh", "-c", "echo bad >&2; exit 3", check=False)
    assert (failing.returncode, failing.stderr) == (3, "bad\n")
    docker("pause", "sleeper")
    assert docker("inspect", "--format", "{{.State.Status}}", "sleeper").stdout.strip() == "paused"
    docker("unpause", "sleeper")
    pid = docker("inspect", "--format", "{{.State.Pid}}", "sleeper").stdout.strip()
    docker("restart", "-t", "1", "sleeper")
    after = docker("inspect", "--format", "{{.State.Status}} {{.RestartCount}} {{.State.Pid}}", "sleeper").stdout
    status, count, new_pid = after.split()
    assert (status, count) == ("running", "0") and new_pid != pid  # a restart by the user resets the count
    docker("pause", "sleeper")
    docker("stop", "-t", "1", "sleeper")  # a paused container is thawed to be stopped
    assert docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "sleeper").stdout.split() == [
        "exited", "137"]
    docker("rename", "sleeper", "napper")
    bad = docker("kill", "-s", "NOPE", "napper", check=False)
    assert bad.returncode != 0 and "Invalid signal" in bad.stderr
    docker("rm", "job", "napper")
    assert docker("ps", "-aq").stdout == ""
    assert docker("rmi", image).returncode == 0


@pytest.mark.network
def test_docker_run_in_the_foreground(berthd: tuple[subprocess.Popen[str], Path], tmp_path: Path,
                                      busybox_image: LayoutImage, registry: LocalRegistry) -> None:
    _, sock = berthd
    push_with_skopeo(busybox_image, "cli/fg:latest", registry)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    (tmp_path / "cfg").mkdir()
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp_path / "cfg"))
    image = f"{registry.domain}/cli/fg"
    subprocess.run(["docker", "pull", "-q", image], env=env, check=True, capture_output=True, timeout=60)
    hi = subprocess.run(["docker", "run", "--rm", image, "echo", "hi"], env=env, capture_output=True, text=True,
                        timeout=60)
    assert (hi.returncode, hi.stdout) == (0, "hi\n"), hi.stderr
    code = subprocess.run(["docker", "run", "--rm", image, "sh", "-c", "echo to-err >&2; exit 7"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert (code.returncode, code.stderr) == (7, "to-err\n")
    piped = subprocess.run(["docker", "run", "--rm", "-i", image, "sh", "-c", "cat; echo done"], env=env,
                           input="from stdin\n", capture_output=True, text=True, timeout=60)
    assert piped.stdout == "from stdin\ndone\n", piped.stderr
    listing = subprocess.run(["docker", "ps", "-aq"], env=env, capture_output=True, text=True, timeout=60)
    assert listing.stdout == ""  # --rm removed them


@pytest.mark.network
def test_live_restore_after_kill_9(tmp_path: Path, busybox_image: LayoutImage, registry: LocalRegistry) -> None:
    """berthd killed with SIGKILL: containers keep running under their monitors; the restarted daemon
    re-attaches, logs lose nothing, and a container that exited meanwhile shows its real code."""
    push_with_skopeo(busybox_image, "cli/live:latest", registry)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    (tmp_path / "cfg").mkdir()
    sock = tmp_path / "run" / "berth.sock"
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp_path / "cfg"))
    image = f"{registry.domain}/cli/live"

    def docker(*args: str) -> str:
        result = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
        return result.stdout

    proc = _start(tmp_path)
    try:
        _wait_for(sock, proc)
        docker("pull", "-q", image)
        docker("run", "-d", "--name", "ticker", image, "sh", "-c",
               "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); sleep 0.01; done; sleep 100")
        docker("run", "-d", "--name", "quitter", image, "sh", "-c", "sleep 1; exit 5")
        pid_before = docker("inspect", "--format", "{{.State.Pid}}", "ticker").strip()
        proc.kill()
        proc.wait(10)
        time.sleep(2)  # quitter exits and ticker keeps printing while no daemon runs
        sock.unlink(missing_ok=True)
        proc = _start(tmp_path)
        _wait_for(sock, proc)
        assert docker("inspect", "--format", "{{.State.Running}} {{.State.Pid}}", "ticker").split() == [
            "true", pid_before]
        assert docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "quitter").split() == [
            "exited", "5"]
        deadline = time.monotonic() + 30
        while True:
            lines = docker("logs", "ticker").splitlines()
            if len(lines) >= 300 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert lines == [f"line {i}" for i in range(300)]
        docker("rm", "-f", "ticker", "quitter")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
