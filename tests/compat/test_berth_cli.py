"""The berth CLI against a real berthd: every verb a user reaches for, docker's output shapes, bad input
(one line, non-zero exit, daemon still up) and an interactive shell driven through a pty."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pty
import secrets
import select
import signal
import struct
import subprocess
import tarfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.berthd import BIN, Berthd
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import AUTH_PASSWORD, AUTH_USER, LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture
def sleeper(berthd_with_busybox: Berthd) -> Iterator[str]:
    """A running container (``sleep 1000``) with a unique name, removed afterwards."""
    name = unique("cli")
    berthd_with_busybox.berth("run", "-d", "--name", name, "busybox", "sleep", "1000")
    yield name
    berthd_with_busybox.berth("rm", "-f", name, check=False)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def test_version_and_info(berthd_with_busybox: Berthd) -> None:
    out = berthd_with_busybox.berth("version").stdout
    assert out.startswith("Client:\n Version:")
    assert "Server:" in out and "API version:       1.41" in out
    assert berthd_with_busybox.berth("version", "--format", "{{.Server.ApiVersion}}").stdout == "1.41\n"
    info = berthd_with_busybox.berth("info").stdout
    assert " Containers: " in info and " Images: " in info
    assert berthd_with_busybox.berth("system", "info", "--format", "{{.OSType}}").stdout == "linux\n"


def test_run_foreground_streams_and_exit_codes(berthd_with_busybox: Berthd) -> None:
    daemon = berthd_with_busybox
    assert daemon.berth("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    result = daemon.berth("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    result = daemon.berth("run", "--rm", "-i", "busybox", "sh", "-c", "read line; echo got $line", input="piped\n")
    assert result.stdout == "got piped\n"
    name = unique("fg")
    daemon.berth("run", "--name", name, "-e", "GREETING=hey", "busybox", "sh", "-c", "echo $GREETING")
    assert daemon.berth("logs", name).stdout == "hey\n"
    assert daemon.berth("ps", "-a", "--filter", f"name={name}", "--format", "{{.State}}").stdout == "exited\n"
    daemon.berth("rm", name)


def test_run_is_quick(berthd_with_busybox: Berthd) -> None:
    """The whole `run --rm busybox true`, CLI start-up included (generous bound: the machine is shared)."""
    started = time.monotonic()
    berthd_with_busybox.berth("run", "--rm", "busybox", "true")
    assert time.monotonic() - started < 2.0


def test_detached_container_lifecycle(berthd_with_busybox: Berthd, sleeper: str) -> None:
    daemon = berthd_with_busybox
    rows = daemon.berth("ps").stdout.splitlines()
    assert rows[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    row = next(r for r in rows if r.endswith(sleeper))
    assert '"sleep 1000"' in row and " Up " in row
    cid = daemon.berth("inspect", "-f", "{{.Id}}", sleeper).stdout.strip()
    assert daemon.berth("ps", "-q", "--filter", f"name={sleeper}").stdout == cid[:12] + "\n"
    assert daemon.berth("inspect", "--format", "{{.State.Status}} {{.Name}}", sleeper).stdout == \
        f"running /{sleeper}\n"
    assert json.loads(daemon.berth("container", "inspect", sleeper).stdout)[0]["Id"] == cid

    top = daemon.berth("top", sleeper).stdout.splitlines()
    assert "PID" in top[0].split() and any("sleep 1000" in line for line in top[1:])
    stats = daemon.berth("stats", "--no-stream", sleeper).stdout.splitlines()
    assert stats[0].startswith("CONTAINER ID   NAME") and sleeper in stats[1]
    assert daemon.berth("stats", "--no-stream", "--format", "{{.Name}}", sleeper).stdout == sleeper + "\n"

    assert daemon.berth("pause", sleeper).stdout == sleeper + "\n"
    assert "Paused" in daemon.berth("ps", "--filter", f"name={sleeper}", "--format", "{{.Status}}").stdout
    daemon.berth("unpause", sleeper)
    daemon.berth("stop", "-t", "1", sleeper)
    assert daemon.berth("inspect", "-f", "{{.State.Running}}", sleeper).stdout == "false\n"
    daemon.berth("start", sleeper)
    daemon.berth("restart", "-t", "1", sleeper)
    assert daemon.berth("inspect", "-f", "{{.State.Running}}", sleeper).stdout == "true\n"

    renamed = unique("renamed")
    daemon.berth("rename", sleeper, renamed)
    assert daemon.berth("container", "ls", "--filter", f"name={renamed}", "--format", "{{.Names}}").stdout == \
        renamed + "\n"
    assert daemon.berth("rm", "-f", renamed).stdout == renamed + "\n"
    assert daemon.berth("ps", "-a", "-q", "--filter", f"id={cid}").stdout == ""


def test_exec(berthd_with_busybox: Berthd, sleeper: str) -> None:
    daemon = berthd_with_busybox
    assert daemon.berth("exec", sleeper, "echo", "ok").stdout == "ok\n"
    result = daemon.berth("exec", sleeper, "sh", "-c", "echo out; echo err >&2; exit 4", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (4, "out\n", "err\n")
    result = daemon.berth("exec", "-i", sleeper, "sh", input="echo from-stdin\necho $((6*7))\n")
    assert result.stdout == "from-stdin\n42\n"
    assert daemon.berth("exec", "-e", "X=1", "-w", "/bin", sleeper, "sh", "-c", "echo $X $PWD").stdout == "1 /bin\n"
    daemon.berth("exec", "-d", sleeper, "sh", "-c", "echo bg > /dev/null")


def test_logs(berthd_with_busybox: Berthd) -> None:
    daemon = berthd_with_busybox
    name = unique("logs")
    daemon.berth("run", "-d", "--name", name, "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; done; "
                 "echo oops >&2")
    try:
        daemon.berth("wait", name)
        result = daemon.berth("logs", name)
        assert (result.stdout, result.stderr) == ("line1\nline2\nline3\n", "oops\n")
        assert daemon.berth("logs", "--tail", "1", name).stderr == "oops\n"
        stamped = daemon.berth("logs", "-t", "-n", "2", name).stdout
        assert stamped.endswith(" line3\n") and "T" in stamped.split()[0]
        assert daemon.berth("logs", "--since", "1h", name).stdout.count("line") == 3
        assert daemon.berth("logs", "-f", name, timeout=20).stdout.count("line") == 3
    finally:
        daemon.berth("rm", "-f", name, check=False)


def test_cp_both_ways(berthd_with_busybox: Berthd, sleeper: str, tmp_path: Path) -> None:
    daemon = berthd_with_busybox
    daemon.berth("exec", sleeper, "busybox", "mkdir", "/data")
    (tmp_path / "f1").write_text("one\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f2").write_text("two\n")
    daemon.berth("cp", str(tmp_path / "f1"), f"{sleeper}:/data/")
    daemon.berth("cp", str(tmp_path / "f1"), f"{sleeper}:/data/renamed")
    daemon.berth("container", "cp", str(tmp_path / "dir"), f"{sleeper}:/data/dir")
    assert daemon.berth("exec", sleeper, "cat", "/data/f1", "/data/renamed", "/data/dir/f2").stdout == \
        "one\n" "one\n" "two\n"

    out = tmp_path / "out"
    out.mkdir()
    daemon.berth("cp", f"{sleeper}:/data", str(out))
    assert (out / "data" / "dir" / "f2").read_text() == "two\n"
    daemon.berth("cp", f"{sleeper}:/data/renamed", str(out / "copy"))
    assert (out / "copy").read_text() == "one\n"

    archive = subprocess.run([str(BIN / "berth"), "cp", f"{sleeper}:/data/f1", "-"], env=daemon.env,
                             capture_output=True, check=True).stdout
    (tmp_path / "a.tar").write_bytes(archive)
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert tar.getnames() == ["f1"]
    subprocess.run([str(BIN / "berth"), "cp", "-", f"{sleeper}:/data/dir"], env=daemon.env, input=archive,
                   check=True, capture_output=True)
    assert daemon.berth("exec", sleeper, "cat", "/data/dir/f1").stdout == "one\n"

    error = one_line_error(daemon.berth("cp", f"{sleeper}:/no/such/file", str(out), check=False))
    assert "Error response from daemon:" in error


def test_diff_and_export(berthd_with_busybox: Berthd, sleeper: str, tmp_path: Path) -> None:
    daemon = berthd_with_busybox
    daemon.berth("exec", sleeper, "busybox", "mkdir", "/made")
    assert "A /made" in daemon.berth("diff", sleeper).stdout.splitlines()
    daemon.berth("export", "-o", str(tmp_path / "fs.tar"), sleeper)
    with tarfile.open(tmp_path / "fs.tar") as tar:
        assert "bin/busybox" in tar.getnames()
    exported = subprocess.run([str(BIN / "berth"), "container", "export", sleeper], env=daemon.env,
                              capture_output=True, check=True).stdout
    assert exported[257:262] == b"ustar"


def test_images_tag_rmi_save_load(berthd_with_busybox: Berthd, tmp_path: Path) -> None:
    daemon = berthd_with_busybox
    tag = f"cli-test/tagged:{secrets.token_hex(3)}"
    daemon.berth("tag", "busybox", tag)
    repo, version = tag.split(":")
    rows = daemon.berth("images").stdout.splitlines()
    assert rows[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(r.split()[:2] == [repo, version] for r in rows[1:])
    image_id = daemon.berth("image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
    assert daemon.berth("images", "-q", repo).stdout == image_id.removeprefix("sha256:")[:12] + "\n"
    assert json.loads(daemon.berth("images", "--format", "json", repo).stdout)["Tag"] == version
    assert "CREATED BY" in daemon.berth("history", "busybox").stdout

    daemon.berth("save", "-o", str(tmp_path / "img.tar"), tag)
    assert daemon.berth("rmi", tag).stdout == f"Untagged: {tag}\n"
    assert daemon.berth("load", "-i", str(tmp_path / "img.tar")).stdout == f"Loaded image: {tag}\n"
    with open(tmp_path / "img.tar", "rb") as archive:
        result = subprocess.run([str(BIN / "berth"), "load"], env=daemon.env, capture_output=True, text=True,
                                stdin=archive)
    assert result.stdout == f"Loaded image: {tag}\n"
    daemon.berth("image", "rm", tag)
    error = one_line_error(daemon.berth("rmi", tag, check=False))
    assert error.startswith("Error response from daemon: ")


def test_pull_and_push_with_the_local_registry(berthd_with_busybox: Berthd, busybox_image: LayoutImage,
                                              registry: LocalRegistry) -> None:
    daemon = berthd_with_busybox
    push_with_skopeo(busybox_image, "cli/pulled:v1", registry)
    source = f"{registry.domain}/cli/pulled:v1"
    out = daemon.berth("pull", source).stdout
    assert "v1: Pulling from cli/pulled" in out or "Pulling from" in out
    assert out.splitlines()[-1] == source
    assert daemon.berth("pull", "-q", source).stdout == source + "\n"

    target = f"{registry.domain}/cli/pushed:{secrets.token_hex(3)}"
    daemon.berth("tag", "busybox", target)
    pushed = daemon.berth("push", target).stdout
    assert "digest: sha256:" in pushed
    daemon.berth("rmi", target, source)
    daemon.berth("pull", "-q", target)
    name = unique("pulled")
    assert daemon.berth("run", "--rm", "--name", name, target, "echo", "from-registry").stdout == "from-registry\n"
    daemon.berth("rmi", target)


def test_run_pulls_a_missing_image(berthd_with_busybox: Berthd, busybox_image: LayoutImage,
                                   registry: LocalRegistry) -> None:
    push_with_skopeo(busybox_image, "cli/missing:latest", registry)
    image = f"{registry.domain}/cli/missing"
    result = berthd_with_busybox.berth("run", "--rm", image, "echo", "pulled-and-ran")
    assert result.stdout == "pulled-and-ran\n"
    assert f"Unable to find image '{image}:latest' locally" in result.stderr
    result = berthd_with_busybox.berth("run", "--rm", "--pull", "never", f"{registry.domain}/cli/absent",
                                       "true", check=False)
    assert result.returncode == 125 and "Error response from daemon" in result.stderr
    berthd_with_busybox.berth("rmi", image)


def test_saved_credentials_go_to_the_registry(berthd_with_busybox: Berthd, auth_registry: LocalRegistry) -> None:
    """Credentials as `docker login` saves them in config.json are sent on push and pull; logout drops them.
    (berthd does not serve POST /auth yet, so `berth login` itself is not exercised here.)"""
    daemon = berthd_with_busybox
    config = Path(daemon.env["DOCKER_CONFIG"]) / "config.json"
    secret = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {auth_registry.domain: {"auth": secret}}}))
    target = f"{auth_registry.domain}/cli/private:v1"
    daemon.berth("tag", "busybox", target)
    try:
        daemon.berth("push", "-q", target)
        daemon.berth("rmi", target)
        daemon.berth("pull", "-q", target)
        assert daemon.berth("logout", auth_registry.domain).stdout == \
            f"Removing login credentials for {auth_registry.domain}\n"
        assert json.loads(config.read_text())["auths"] == {}
        daemon.berth("rmi", target)
        assert one_line_error(daemon.berth("pull", target, check=False))
    finally:
        daemon.berth("rmi", target, check=False)


def test_events_since(berthd_with_busybox: Berthd) -> None:
    daemon = berthd_with_busybox
    since = str(int(time.time()) - 1)
    name = unique("ev")
    daemon.berth("run", "--rm", "--name", name, "busybox", "true")
    lines = daemon.berth("events", "--since", since, "--until", "0s", "--filter", "type=container").stdout
    mine = [line for line in lines.splitlines() if f"name={name}" in line]
    assert any(" container start " in line for line in mine), lines
    docs = daemon.berth("system", "events", "--since", since, "--until", "0s", "--format", "json").stdout
    assert any(json.loads(line)["Actor"]["Attributes"].get("name") == name for line in docs.splitlines())


def test_format_cases(berthd_with_busybox: Berthd, sleeper: str) -> None:
    daemon = berthd_with_busybox
    row = json.loads(daemon.berth("ps", "--filter", f"name={sleeper}", "--format", "json").stdout)
    assert row["Names"] == sleeper and row["State"] == "running" and row["Command"] == '"sleep 1000"'
    table = daemon.berth("ps", "--filter", f"name={sleeper}", "--format", "table {{.Names}}\t{{.Image}}").stdout
    assert table.splitlines() == ["NAMES".ljust(max(10, len(sleeper) + 3)) + "IMAGE",
                                  sleeper.ljust(max(10, len(sleeper) + 3)) + "busybox"]
    assert daemon.berth("inspect", "-f", '{{index .Config.Cmd 0}} {{json .Config.Cmd}}', sleeper).stdout == \
        'sleep ["sleep","1000"]\n'
    error = one_line_error(daemon.berth("ps", "--format", "{{.Nope}}", check=False))
    assert error.startswith("berth: template parsing error:") and "Nope" in error
    error = one_line_error(daemon.berth("inspect", "-f", "{{.Nope}}", sleeper, check=False))
    assert "Nope" in error
    df = daemon.berth("system", "df").stdout.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]


def test_bad_input_is_one_line_and_the_daemon_stays_up(berthd_with_busybox: Berthd, sleeper: str) -> None:
    daemon = berthd_with_busybox
    assert one_line_error(daemon.berth("run", "--bogus", "busybox", check=False)).startswith(
        "berth: unknown flag: --bogus")
    assert daemon.berth("ps", "--bogus", check=False).returncode == 125
    assert one_line_error(daemon.berth("kill", "-s", "BOGUS", sleeper, check=False)) == \
        "Error response from daemon: Invalid signal: BOGUS"
    result = daemon.berth("run", "--restart", "sometimes", "busybox", "true", check=False)
    assert result.returncode == 125 and "invalid restart policy" in one_line_error(result)
    result = daemon.berth("run", "--name", "bad name!", "busybox", "true", check=False)
    assert result.returncode == 125
    assert one_line_error(result).startswith("Error response from daemon: Invalid container name")
    assert one_line_error(daemon.berth("stop", "no-such-container", check=False)).startswith(
        "Error response from daemon:")
    assert one_line_error(daemon.berth("inspect", "no-such-thing", check=False)).endswith(
        "No such object: no-such-thing")
    assert one_line_error(daemon.berth("exec", "no-such-container", "true", check=False))
    assert one_line_error(daemon.berth("logs", "--since", "yesterday", sleeper, check=False))
    assert one_line_error(daemon.berth("-H", "unix:///nonexistent.sock", "ps", check=False)).startswith(
        "berth: cannot reach the engine")
    assert daemon.berth("version", "--format", "{{.Server.Version}}").stdout.strip()


def test_update_wait_kill_and_start_attached(berthd_with_busybox: Berthd, sleeper: str) -> None:
    daemon = berthd_with_busybox
    assert daemon.berth("update", "-m", "64m", "--restart", "on-failure:2", sleeper).stdout == sleeper + "\n"
    assert daemon.berth("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}",
                        sleeper).stdout == "67108864 on-failure\n"
    assert daemon.berth("update", sleeper, check=False).returncode == 125
    daemon.berth("update", "--restart", "no", sleeper)
    daemon.berth("kill", sleeper)
    assert daemon.berth("wait", sleeper).stdout == "137\n"
    name = unique("attached")
    daemon.berth("create", "--name", name, "busybox", "sh", "-c", "echo started; exit 5")
    result = daemon.berth("start", "-a", name, check=False)
    assert (result.returncode, result.stdout) == (5, "started\n")
    daemon.berth("rm", name)


def test_container_prune(berthd_with_busybox: Berthd) -> None:
    daemon = berthd_with_busybox
    name = unique("prune")
    daemon.berth("run", "--name", name, "busybox", "true")
    cid = daemon.berth("inspect", "-f", "{{.Id}}", name).stdout.strip()
    out = daemon.berth("container", "prune", "-f").stdout
    assert cid in out.splitlines() and "Total reclaimed space:" in out
    assert daemon.berth("container", "prune", input="n\n").stdout.startswith("WARNING!")


def _read_until(fd: int, buffer: bytearray, token: bytes, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while token not in buffer and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return token in buffer
            if not data:
                break
            buffer += data
    return token in buffer


def test_interactive_shell_through_a_pty(berthd_with_busybox: Berthd) -> None:
    """`run -it` on a terminal: raw mode, typed input echoed by the container's pty, the size sent at start
    and on SIGWINCH, the shell's exit code as berth's."""
    name = unique("it")
    pid, fd = pty.fork()
    if pid == 0:  # the child: berth on the pty
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            os.execve(str(BIN / "berth"), ["berth", "run", "-it", "--rm", "--name", name, "busybox", "sh"],
                      berthd_with_busybox.env)
        finally:
            os._exit(127)
    output = bytearray()
    try:
        assert _read_until(fd, output, b"# "), output
        os.write(fd, b"echo hel''lo\r")
        assert _read_until(fd, output, b"hello\r\n"), output
        os.write(fd, b"stty size\r")
        assert _read_until(fd, output, b"30 100\r\n"), output
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # the kernel sends SIGWINCH
        time.sleep(0.5)
        os.write(fd, b"stty size\r")
        assert _read_until(fd, output, b"40 120\r\n"), output
        os.write(fd, b"exit 3\r")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            _read_until(fd, output, b"\0", 0.2)
        else:
            raise AssertionError(f"berth did not exit: {bytes(output)!r}")
        assert os.waitstatus_to_exitcode(status) == 3
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_ctrl_c_is_proxied_to_the_container_then_ends_berth(berthd_with_busybox: Berthd) -> None:
    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(BIN / "berth"), *args], env=berthd_with_busybox.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    trapping = start("run", "--rm", "busybox", "sh", "-c", "trap 'echo got-int; exit 7' INT; "
                     "while true; do sleep 0.1; done")
    time.sleep(2)
    trapping.send_signal(signal.SIGINT)
    out, err = trapping.communicate(timeout=20)
    assert (trapping.returncode, out, err) == (7, "got-int\n", "")

    name = unique("ignores-int")
    ignoring = start("run", "--name", name, "busybox", "sleep", "1000")  # PID 1 ignores SIGINT
    try:
        time.sleep(2)
        ignoring.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert ignoring.poll() is None
        ignoring.send_signal(signal.SIGINT)
        out, err = ignoring.communicate(timeout=20)
        assert (ignoring.returncode, err) == (130, "")
    finally:
        if ignoring.poll() is None:
            ignoring.kill()
            ignoring.wait()
        berthd_with_busybox.berth("rm", "-f", name, check=False)
