"""Create requests and the OCI config built from them, as dockerd builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.engine.containers.create_request import (
    parse_create_request,
    parse_restart_policy,
    validate_name,
    validate_signal,
)
from backend.engine.containers.oci_spec import build_oci_spec, command, resolve_user
from backend.engine.errors import InvalidParameter

CLI_RUN_BODY: dict[str, Any] = {  # what docker CLI 28 sends for `docker run --rm busybox echo hi`
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": True,
    "AttachStderr": True, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": ["echo", "hi"], "Image": "busybox", "Volumes": {}, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": {},
    "HostConfig": {"Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
                   "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no",
                   "MaximumRetryCount": 0}, "AutoRemove": True, "CapAdd": None, "CapDrop": None,
                   "Dns": [], "MemorySwappiness": -1, "PidsLimit": 0, "Ulimits": [], "ConsoleSize": [0, 0],
                   "Memory": 0, "MemorySwap": 0, "NanoCpus": 0, "ShmSize": 0, "Tmpfs": None},
    "NetworkingConfig": {"EndpointsConfig": {"default": {}}},
}


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n# comment\nbroken line\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app,other\n")
    return tmp_path


def test_cli_body_parses() -> None:
    req = parse_create_request(CLI_RUN_BODY)
    assert req.image == "busybox" and req.cmd == ["echo", "hi"] and req.auto_remove
    assert req.restart_policy.name == "no" and req.env == []


@pytest.mark.parametrize("body, message", [
    ([], "config cannot be empty"),
    ({"Image": ""}, "image name is required"),
    ({"Image": "b", "HostConfig": {"Memory": 1024}}, "Minimum memory limit allowed is 6MB"),
    ({"Image": "b", "HostConfig": {"Memory": 10 << 20, "MemorySwap": 1 << 20}}, "Minimum memoryswap limit"),
    ({"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, "invalid restart policy 'sometimes'"),
    ({"Image": "b", "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}},
     "maximum retry count cannot be used with restart policy 'always'"),
    ({"Image": "b", "StopSignal": "SIGNOPE"}, "Invalid signal: SIGNOPE"),
    ({"Image": "b", "HostConfig": {"CapAdd": ["NOT_A_CAP"]}}, "unknown capability"),
    ({"Image": "b", "HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}}, "soft limit"),
    ({"Image": "b", "HostConfig": {"Memory": True}}, "expected int"),
    ({"Image": "b", "Cmd": [1, 2]}, "expected a list of strings"),
    ({"Image": "b", "HostConfig": {"Memory": 2**70}}, "out of range"),
])
def test_bad_bodies_are_refused_with_a_clear_message(body: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_create_request(body)


@pytest.mark.parametrize("name", ["x", "-bad", "a b", "a/b", "é"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidParameter, match=r"Invalid container name"):
        validate_name(name)


def test_signals_and_policies() -> None:
    assert validate_signal("KILL") == 9 and validate_signal("SIGTERM") == 15 and validate_signal("10") == 10
    assert validate_signal("SIGRTMIN+1") > validate_signal("SIGRTMIN")
    for bad in ("0", "65", "SIGFOO", "", "RTMIN+99"):
        with pytest.raises(InvalidParameter, match="Invalid signal"):
            validate_signal(bad)
    assert parse_restart_policy({"Name": "on-failure", "MaximumRetryCount": 2}).maximum_retry_count == 2


def test_entrypoint_and_cmd_rules() -> None:
    image = {"Entrypoint": ["/entry"], "Cmd": ["default"]}
    req = parse_create_request({"Image": "b"})
    assert command(req, image) == ["/entry", "default"]
    assert command(parse_create_request({"Image": "b", "Cmd": ["x"]}), image) == ["/entry", "x"]
    assert command(parse_create_request({"Image": "b", "Entrypoint": ["sh"]}), image) == ["sh"]
    assert command(parse_create_request({"Image": "b", "Entrypoint": [""], "Cmd": ["ls"]}), image) == ["", "ls"]
    with pytest.raises(InvalidParameter, match="No command specified"):
        command(req, {})


def test_users_resolve_in_the_image(rootfs: Path) -> None:
    assert resolve_user(str(rootfs), "") == (0, 0, [])
    assert resolve_user(str(rootfs), "app") == (1000, 1000, [10, 29])
    assert resolve_user(str(rootfs), "app:wheel") == (1000, 10, [29])
    assert resolve_user(str(rootfs), "4242:4343") == (4242, 4343, [])
    with pytest.raises(InvalidParameter, match="unable to find user nobody"):
        resolve_user(str(rootfs), "nobody")
    with pytest.raises(InvalidParameter, match="unable to find group nogroup"):
        resolve_user(str(rootfs), "app:nogroup")


def test_passwd_symlink_out_of_the_root_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (tmp_path / "host-passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to(tmp_path / "host-passwd")
    with pytest.raises(InvalidParameter, match="unable to find user evil"):
        resolve_user(str(root), "evil")


def test_spec_has_dockers_defaults_and_the_requested_limits(rootfs: Path) -> None:
    req = parse_create_request({
        "Image": "b", "Cmd": ["sh"], "Env": ["A=1"], "User": "app", "Tty": True,
        "HostConfig": {"Memory": 64 << 20, "NanoCpus": 1_500_000_000, "PidsLimit": 50, "CapAdd": ["NET_ADMIN"],
                       "CapDrop": ["MKNOD"], "ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"],
                       "Tmpfs": {"/run": "size=1m"}, "ShmSize": 1 << 20},
    })
    image = {"config": {"Env": ["A=0", "B=2"], "WorkingDir": "/srv"}}
    spec = build_oci_spec(req, image, str(rootfs), container_id="c" * 64, cgroups_path="/berth/" + "c" * 64)
    process = spec["process"]
    assert process["args"] == ["sh"] and process["cwd"] == "/srv" and process["terminal"]
    assert process["env"][:2] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                  "HOSTNAME=cccccccccccc"]
    assert {"A=1", "B=2", "TERM=xterm"} <= set(process["env"])
    assert process["user"]["uid"] == 1000 and process["noNewPrivileges"]
    assert "CAP_NET_ADMIN" in process["capabilities"]["bounding"]
    assert "CAP_MKNOD" not in process["capabilities"]["bounding"]
    assert spec["root"]["readonly"] and spec["hostname"] == "cccccccccccc"
    resources = spec["linux"]["resources"]
    assert resources["memory"]["limit"] == 64 << 20 and resources["memory"]["swap"] == 128 << 20
    assert resources["cpu"] == {"period": 100_000, "quota": 150_000} and resources["pids"]["limit"] == 50
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert "size=1m" in mounts["/run"]["options"] and "size=1048576" in mounts["/dev/shm"]["options"]


def test_privileged_lifts_the_confinement(rootfs: Path) -> None:
    req = parse_create_request({"Image": "b", "Cmd": ["sh"], "HostConfig": {"Privileged": True}})
    spec = build_oci_spec(req, {}, str(rootfs), container_id="d" * 64, cgroups_path="")
    assert "seccomp" not in spec["linux"] and spec["linux"]["maskedPaths"] == []
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]


def test_bad_security_opt(rootfs: Path) -> None:
    req = parse_create_request({"Image": "b", "Cmd": ["sh"], "HostConfig": {"SecurityOpt": ["seccomp={bad"]}})
    with pytest.raises(InvalidParameter, match="Decoding seccomp profile failed"):
        build_oci_spec(req, {}, str(rootfs), container_id="e" * 64, cgroups_path="")
