"""The Run dialog's form (app/run_form.py): the create body and the ``berth run`` command come from the same
values, and the command, read back by the berth CLI's own parser, makes the same body — hostile values included."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from app.run_form import FormInvalid, RunForm, VolumeMount, berth_command, run_request
from backend.cli.context import new_parser
from backend.cli.run_options import add_container_flags, build_create_body

COMPARED = ("Image", "Cmd", "Env", "ExposedPorts", "Volumes", "AttachStdout", "AttachStderr")
COMPARED_HOST = ("NetworkMode", "RestartPolicy", "PortBindings", "Binds")


def cli_body(command: str) -> tuple[dict[str, Any], str | None]:
    """The body and name berth's own ``run`` flags make from the copied ``command``."""
    argv = shlex.split(command)
    assert argv[:2] == ["berth", "run"]
    parser = new_parser("berth run", "", add_help=False)
    parser.add_argument("-d", "--detach", action="store_true")
    add_container_flags(parser)
    args = parser.parse_args(argv[2:])
    return build_create_body(args, environ={}, detach=args.detach), args.name


def assert_same_container(form: RunForm) -> None:
    body, name = run_request(form)
    expected, expected_name = cli_body(berth_command(form))
    assert name == expected_name
    assert {k: body[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    assert {k: body["HostConfig"][k] for k in COMPARED_HOST} == {k: expected["HostConfig"][k] for k in COMPARED_HOST}


FULL = RunForm(image="busybox:latest", name="web-1", ports=("8080:80", "127.0.0.1:9000-9001:90-91/udp", ""),
               env=("A=1", "EMPTY=", ""), volumes=(VolumeMount("/srv/data", "/data", True),
                                                 VolumeMount("cache", "/cache"), VolumeMount("", "/anon")),
               command="sh -c 'echo hi; sleep 60'", restart="on-failure:3", network="backend", detach=True)


def test_full_form_makes_the_create_body() -> None:
    body, name = run_request(FULL)
    assert name == "web-1"
    assert body["Image"] == "busybox:latest"
    assert body["Cmd"] == ["sh", "-c", "echo hi; sleep 60"]
    assert body["Env"] == ["A=1", "EMPTY="]
    assert body["ExposedPorts"] == {"80/tcp": {}, "90/udp": {}, "91/udp": {}}
    assert body["Volumes"] == {"/anon": {}}
    host = body["HostConfig"]
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                    "90/udp": [{"HostIp": "127.0.0.1", "HostPort": "9000"}],
                                    "91/udp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}]}
    assert host["Binds"] == ["/srv/data:/data:ro", "cache:/cache"]
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["NetworkMode"] == "backend"
    assert (body["AttachStdout"], body["AttachStderr"]) == (False, False)


def test_full_form_makes_the_command() -> None:
    assert berth_command(FULL) == (
        "berth run -d --name web-1 -p 8080:80 -p 127.0.0.1:9000-9001:90-91/udp -e A=1 -e EMPTY= "
        "-v /srv/data:/data:ro -v cache:/cache -v /anon --restart on-failure:3 --network backend "
        "busybox:latest sh -c 'echo hi; sleep 60'")


def test_minimal_form() -> None:
    form = RunForm(image="busybox")
    assert berth_command(form) == "berth run -d busybox"
    body, name = run_request(form)
    assert name is None and body["Cmd"] is None and body["Env"] is None
    assert body["HostConfig"]["NetworkMode"] == "default"
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}


@pytest.mark.parametrize("form", [
    FULL,
    RunForm(image="busybox"),
    RunForm(image="busybox", detach=False, restart="always", command="true"),
    RunForm(image="busybox", restart="unless-stopped", network="default", ports=("9000",)),
    # hostile values: spaces, command substitution, quotes, a value that looks like a flag, a newline
    RunForm(image="busybox", env=("A=a b", "B=$(x)", "C='", 'D="`id`"', "E=-x", "-F=1", "G=line\nnext"),
            command="echo 'a b' \"$(x)\" \\' --help -x", volumes=(VolumeMount("/tmp/a b/$(x)'", "/in ' q"),)),
    RunForm(image="127.0.0.1:5000/team/app:1.0", name="a.b_c-d", command="sh -c 'echo \"$HOME\"; exit 3'"),
])
def test_command_round_trips_through_the_cli_parser(form: RunForm) -> None:
    assert_same_container(form)


def test_hostile_values_are_quoted() -> None:
    command = berth_command(RunForm(image="busybox", env=("A=a b", "B=$(x)", "C='"), command="echo $(x) ';'"))
    assert command == "berth run -d -e 'A=a b' -e 'B=$(x)' -e 'C='\"'\"'' busybox echo '$(x)' ';'"
    assert shlex.split(command)[-3:] == ["echo", "$(x)", ";"]


@pytest.mark.parametrize(("form", "field", "words"), [
    (RunForm(image=""), "image", "choose an image"),
    (RunForm(image="busy box"), "image", "without spaces"),
    (RunForm(image="busybox", name="-x"), "name", "use letters"),
    (RunForm(image="busybox", name="a b"), "name", "use letters"),
    (RunForm(image="busybox", ports=("8080:80", "abc")), "ports", "abc: invalid containerPort: abc"),
    (RunForm(image="busybox", ports=("70000:80",)), "ports", "invalid hostPort: 70000"),
    (RunForm(image="busybox", ports=("80/xyz",)), "ports", "invalid proto: xyz"),
    (RunForm(image="busybox", ports=("1.2.3:80:80",)), "ports", "invalid IP address"),
    (RunForm(image="busybox", env=("NOVALUE",)), "env", "use KEY=VALUE"),
    (RunForm(image="busybox", env=("=x",)), "env", "use KEY=VALUE"),
    (RunForm(image="busybox", env=("A B=1",)), "env", "spaces"),
    (RunForm(image="busybox", volumes=(VolumeMount("/a", "rel"),)), "volumes", "must be absolute"),
    (RunForm(image="busybox", volumes=(VolumeMount("/a", "/"),)), "volumes", "not /"),
    (RunForm(image="busybox", volumes=(VolumeMount("rel/path", "/x"),)), "volumes", "absolute host path"),
    (RunForm(image="busybox", volumes=(VolumeMount("/a:b", "/x"),)), "volumes", "':'"),
    (RunForm(image="busybox", volumes=(VolumeMount("", "/x", True),)), "volumes", "read-only"),
    (RunForm(image="busybox", command="echo 'open"), "command", "no closing quotation"),
    (RunForm(image="busybox", restart="sometimes"), "restart", "use no, always"),
    (RunForm(image="busybox", restart="always:3"), "restart", "only on-failure"),
    (RunForm(image="busybox", restart="on-failure:x"), "restart", "only on-failure"),
    (RunForm(image="busybox", network="a b"), "network", "not a network"),
])
def test_bad_input_names_the_field(form: RunForm, field: str, words: str) -> None:
    for build in (run_request, berth_command):
        with pytest.raises(FormInvalid) as caught:
            build(form)  # type: ignore[operator]
        assert list(caught.value.errors) == [field]
        assert words in caught.value.errors[field]
        assert "\n" not in caught.value.errors[field]


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(FormInvalid) as caught:
        run_request(RunForm(image="busybox", name="!", ports=("x",), env=("y",), restart="z"))
    assert set(caught.value.errors) == {"name", "ports", "env", "restart"}
