"""berth's flag parsing: run/create flags into the create body, docker's parsers, usage errors, dispatch.

``main`` is called in-process with an engine address where nothing listens, so every case here either
fails before talking to an engine or proves that it tried (one line, no traceback)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from backend.cli import main as cli_main
from backend.cli.auth import registry_key, registry_of
from backend.cli.context import UsageError, config_dir, new_parser
from backend.cli.images import canonical, split_tag
from backend.cli.run_options import (
    add_container_flags,
    build_create_body,
    parse_bytes,
    parse_cpus,
    parse_env,
    parse_mount,
    parse_publish,
    parse_restart,
    parse_ulimit,
    parse_volumes,
)


def run_args(*argv: str) -> argparse.Namespace:
    parser = new_parser("berth run", "", add_help=False)
    parser.add_argument("-d", "--detach", action="store_true")
    add_container_flags(parser)
    return parser.parse_args(list(argv))


def test_run_flags_make_dockers_create_body() -> None:
    args = run_args("--rm", "-i", "-t", "--name", "web", "-e", "A=1", "-e", "FROM_ENV", "-e", "UNSET", "-l", "k=v",
                    "-w", "/srv", "-u", "1000:1000", "-h", "box", "-p", "127.0.0.1:8080:80/udp", "-p", "9000",
                    "-v", "/host:/ctr:ro", "-v", "/anon", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m",
                    "-m", "64m", "--memory-swap", "-1", "--cpus", "1.5", "--pids-limit", "50",
                    "--ulimit", "nofile=100:200", "--shm-size", "1g", "--tmpfs", "/run:size=1m", "--read-only",
                    "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                    "--init", "--stop-signal", "SIGINT", "--stop-timeout", "3", "--entrypoint", "",
                    "busybox", "sh", "-c", "echo hi")
    body = build_create_body(args, {"FROM_ENV": "yes"})
    assert body["Image"] == "busybox" and body["Cmd"] == ["sh", "-c", "echo hi"]
    assert body["Entrypoint"] == [""]
    assert body["Env"] == ["A=1", "FROM_ENV=yes"]
    assert (body["Tty"], body["OpenStdin"], body["StdinOnce"], body["AttachStdin"]) == (True, True, True, True)
    assert body["Labels"] == {"k": "v"} and body["WorkingDir"] == "/srv" and body["Hostname"] == "box"
    assert body["ExposedPorts"] == {"80/udp": {}, "9000/tcp": {}}
    assert body["Volumes"] == {"/anon": {}}
    assert (body["StopSignal"], body["StopTimeout"]) == ("SIGINT", 3)
    host = body["HostConfig"]
    assert host["AutoRemove"] is True
    assert host["PortBindings"] == {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                    "9000/tcp": [{"HostIp": "", "HostPort": ""}]}
    assert host["Binds"] == ["/host:/ctr:ro"]
    assert host["Mounts"] == [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}}]
    assert (host["Memory"], host["MemorySwap"]) == (64 << 20, -1)
    assert (host["NanoCpus"], host["PidsLimit"]) == (1_500_000_000, 50)
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 100, "Hard": 200}]
    assert host["ShmSize"] == 1 << 30 and host["Tmpfs"] == {"/run": "size=1m"}
    assert host["ReadonlyRootfs"] and host["Init"] and host["CapAdd"] == ["NET_ADMIN"] and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]


def test_detached_run_attaches_nothing() -> None:
    body = build_create_body(run_args("-d", "busybox"), {}, detach=True)
    assert not (body["AttachStdin"] or body["AttachStdout"] or body["AttachStderr"])
    assert body["Cmd"] is None and "Entrypoint" not in body


def test_rm_and_restart_conflict() -> None:
    with pytest.raises(UsageError, match="--restart and --rm"):
        build_create_body(run_args("--rm", "--restart", "always", "busybox"), {})


@pytest.mark.parametrize(("text", "value"), [("100", 100), ("1k", 1024), ("64m", 64 << 20), ("1.5GiB", 3 << 29),
                                             ("2 MB", 2 << 20)])
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text, "--memory") == value


@pytest.mark.parametrize("call", [
    lambda: parse_bytes("lots", "--memory"), lambda: parse_cpus("many"), lambda: parse_restart("sometimes"),
    lambda: parse_restart("always:3"), lambda: parse_ulimit("nofile"), lambda: parse_publish(["70000:80"]),
    lambda: parse_publish(["80/icmp"]), lambda: parse_volumes(["relative"]), lambda: parse_mount("type=nfs,target=/x"),
    lambda: parse_mount("source=/x"), lambda: parse_env(["=x"], [], {}), lambda: parse_env([], ["/nonexistent"], {}),
])
def test_bad_values_are_usage_errors(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        call()


def test_parsers() -> None:
    assert parse_restart("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert parse_ulimit("nproc=10") == {"Name": "nproc", "Soft": 10, "Hard": 10}
    assert parse_publish(["8000-8001:80-81"])[1] == {"80/tcp": [{"HostIp": "", "HostPort": "8000"}],
                                                     "81/tcp": [{"HostIp": "", "HostPort": "8001"}]}
    assert parse_publish(["[::1]:8080:80"])[1] == {"80/tcp": [{"HostIp": "::1", "HostPort": "8080"}]}
    assert parse_volumes(["named:/data"]) == (["named:/data"], {})
    assert parse_mount("type=bind,src=/a,dst=/b,readonly") == {"Type": "bind", "Source": "/a", "Target": "/b",
                                                               "ReadOnly": True}


def test_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\nA=1\nHOME_VAR\n")
    assert parse_env(["B=2"], [str(env_file)], {"HOME_VAR": "h"}) == ["A=1", "HOME_VAR=h", "B=2"]


def test_references_and_registries() -> None:
    assert canonical("busybox") == "docker.io/library/busybox:latest"
    assert canonical("me/app:1") == "docker.io/me/app:1"
    assert canonical("127.0.0.1:5000/x") == "127.0.0.1:5000/x:latest"
    assert canonical("x@sha256:ab") == "docker.io/library/x@sha256:ab"
    assert split_tag("127.0.0.1:5000/x") == ("127.0.0.1:5000/x", None)
    assert split_tag("127.0.0.1:5000/x:v1") == ("127.0.0.1:5000/x", "v1")
    assert registry_of("busybox") == registry_key(None) == registry_key("docker.io") == "https://index.docker.io/v1/"
    assert registry_of("localhost:5000/x") == "localhost:5000"
    assert registry_key("https://reg.example:443/v2/") == "reg.example:443"


def test_config_dir_order(tmp_path: Path) -> None:
    assert config_dir("/flag", {"BERTH_CONFIG": "/b", "DOCKER_CONFIG": "/d"}) == Path("/flag")
    assert config_dir(None, {"BERTH_CONFIG": "/b", "DOCKER_CONFIG": "/d"}) == Path("/b")
    assert config_dir(None, {"DOCKER_CONFIG": "/d"}) == Path("/d")
    assert config_dir(None, {}) == Path.home() / ".docker"


NOWHERE = ["-H", "unix:///nonexistent/berth.sock"]


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["ps", "--bogus"], 125, "berth: unknown flag: --bogus"),
    (["ps", "-Z"], 125, "berth: unknown shorthand flag: 'Z' in -Z"),
    (["frobnicate"], 125, "berth: unknown command: berth frobnicate"),
    (["container", "frob"], 125, "berth: unknown command: berth container frob"),
    (["--bogus", "ps"], 125, "berth: unknown flag: --bogus"),
    (["run", "--restart", "sometimes", "busybox"], 125, "berth: invalid restart policy 'sometimes'"),
    (["run", "-m", "lots", "busybox"], 125, "invalid size"),
    (["run", "--pull", "sometimes", "busybox"], 125, "berth: argument --pull: invalid choice"),
    (["stop"], 125, "the following arguments are required"),
    (["logs", "--tail", "many", "x"], 125, "invalid value for --tail"),
    (["ps"], 1, "berth: cannot reach the engine at unix:///nonexistent/berth.sock"),
    (["ps", "--format", "{{.Nope"], 1, "berth: cannot reach the engine"),
    ([], 125, "a command is required"),
])
def test_usage_errors_are_one_line(argv: list[str], code: int, message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main([*NOWHERE, *argv]) == code
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1, err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["--version"]) == 0
    assert "Berth version" in capsys.readouterr().out
    assert cli_main.main(["--help"]) == 0
    assert "Management Commands" in capsys.readouterr().out
    assert cli_main.main(["run", "--help"]) == 0
    assert "--publish" in capsys.readouterr().out
    assert cli_main.main(["container", "ls", "--help"]) == 0
    assert "--filter" in capsys.readouterr().out


def test_every_verb_builds_its_parser() -> None:
    import importlib

    for verb, module in cli_main._VERBS.items():
        command = importlib.import_module(f"backend.cli.{module}").COMMANDS[verb]
        command.configure(new_parser(f"berth {verb}", command.help, add_help=command.help_flag))
    for verbs in cli_main._GROUPS.values():
        assert set(verbs.values()) <= set(cli_main._VERBS)
