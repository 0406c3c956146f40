"""Where the berth CLI used to differ from the docker CLI: Go-template names, pull wording, run's exit codes,
ps's publish/expose filters, compose logs prefixes, context create/use output. Against a real berthd."""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.berthd import BIN, Berthd
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.root, pytest.mark.network]


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip()


@pytest.fixture
def names(berthd_with_busybox: Berthd) -> Iterator[list[str]]:
    """Container names a test creates; removed afterwards."""
    created: list[str] = []
    yield created
    for name in created:
        berthd_with_busybox.berth("rm", "-f", name, check=False)


def test_version_takes_docker_field_names(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    template = ("{{.Server.APIVersion}} {{.Client.APIVersion}} {{.Server.ApiVersion}} {{.Server.Os}} "
                "{{.Client.Os}} {{.Server.MinAPIVersion}}")
    assert d.berth("version", "--format", template).stdout == "1.41 1.41 1.41 linux linux 1.12\n"
    facts = d.berth("version", "--format", "{{.Server.KernelVersion}} {{.Server.GoVersion}} {{.Client.GoVersion}}")
    kernel, server_python, client_python = facts.stdout.split()
    assert kernel == os.uname().release and server_python == client_python == f"python{platform.python_version()}"
    client = json.loads(d.berth("version", "--format", "{{json .Client}}").stdout)
    assert "APIVersion" not in client and client["ApiVersion"] == "1.41"
    error = one_line_error(d.berth("version", "--format", "{{.Server.NoSuchField}}", check=False))
    assert 'map has no entry for key "NoSuchField"' in error


def test_inspect_takes_go_id(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    name = unique("parity")
    names.append(name)
    d.berth("create", "--name", name, "busybox", "true")
    ids = d.berth("inspect", "--format", "{{.ID}} {{.Id}}", name).stdout.split()
    assert ids[0] == ids[1] and len(ids[0]) == 64
    assert d.berth("image", "inspect", "--format", "{{.ID}}", "busybox").stdout.startswith("sha256:")


def test_list_templates_take_docker_placeholders(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    name, volume = unique("parity"), unique("parityvol")
    names.append(name)
    d.berth("create", "--name", name, "--label", "com.example.some-key=7", "-v", f"{volume}:/data", "busybox", "true")
    try:
        table = d.berth("ps", "-a", "--filter", f"name={name}", "--format",
                        'table {{.Names}}\t{{.Label "com.example.some-key"}}\t{{.LocalVolumes}}').stdout
        assert table.split("\n")[0].split() == ["NAMES", "some", "key", "LOCAL", "VOLUMES"]
        assert table.split("\n")[1].split() == [name, "7", "1"]
        row = json.loads(d.berth("ps", "-a", "--filter", f"name={name}", "--format", "json").stdout)
        assert "Label" not in row and row["LocalVolumes"] == "1"
        volumes = d.berth("volume", "ls", "--filter", f"name={volume}", "--format",
                          '{{.Name}} {{.Label "x"}}|{{.Links}} {{.Size}} {{.Scope}}').stdout
        assert volumes == f"{volume} |N/A N/A local\n"
        images = d.berth("images", "busybox", "--format", "{{.Repository}} {{.SharedSize}} {{.UniqueSize}} "
                         "{{.VirtualSize}}").stdout.split()
        assert images[:3] == ["busybox", "N/A", "N/A"] and images[3].endswith("B")
        networks = d.berth("network", "ls", "--filter", "name=bridge", "--format", '{{.Name}} {{.Label "a"}}|').stdout
        assert networks == "bridge |\n"
        history = d.berth("history", "busybox", "--format", "{{.CreatedAt}}").stdout.split("\n")[0]
        assert history[10] == "T" and (history.endswith("Z") or history[-3] == ":")
        error = one_line_error(d.berth("ps", "-a", "--format", "{{.Label}}", check=False))
        assert "wrong number of args" in error
        error = one_line_error(d.berth("ps", "-a", "--format", '{{.Names "x"}}', check=False))
        assert "can't give argument to non-function" in error
    finally:
        d.berth("rm", "-f", name, check=False)
        d.berth("volume", "rm", volume, check=False)


def test_pull_names_the_repository_path(berthd_with_busybox: Berthd, busybox_image: LayoutImage,
                                        registry: LocalRegistry) -> None:
    d = berthd_with_busybox
    repo = f"team/{unique('tools')}"
    push_with_skopeo(busybox_image, f"{repo}:1.0", registry)
    out = d.berth("pull", f"{registry.domain}/{repo}:1.0").stdout
    assert f"1.0: Pulling from {repo}\n" in out
    out = d.docker("pull", f"{registry.domain}/{repo}:1.0").stdout
    assert f"1.0: Pulling from {repo}\n" in out
    d.berth("rmi", f"{registry.domain}/{repo}:1.0")


@pytest.mark.parametrize(("command", "code", "message"), [
    ("no-such-command", 127, 'exec: "no-such-command": executable file not found in $PATH'),
    ("/no/such/file", 127, 'exec: "/no/such/file": stat /no/such/file: no such file or directory'),
    ("/etc", 126, 'exec: "/etc": permission denied'),
])
def test_run_exit_codes_for_commands_that_cannot_run(berthd_with_busybox: Berthd, command: str, code: int,
                                                     message: str) -> None:
    d = berthd_with_busybox
    result = d.berth("run", "--rm", "busybox", command, check=False)
    assert result.returncode == code and message in one_line_error(result)
    assert d.docker("run", "--rm", "busybox", command, check=False).returncode == code
    result = d.berth("run", "--rm", "busybox", "sh", "-c", "exit 126", check=False)
    assert result.returncode == 126 and result.stderr == ""
    assert d.berth("run", "--rm", "--bogus-flag", "busybox", check=False).returncode == 125


def test_ps_publish_and_expose_filters(berthd_with_busybox: Berthd, names: list[str]) -> None:
    d = berthd_with_busybox
    published, exposed = unique("pub"), unique("exp")
    names += [published, exposed]
    d.berth("create", "--name", published, "-p", "127.0.0.1::80", "-p", "127.0.0.1::53/udp", "busybox", "true")
    d.berth("create", "--name", exposed, "--expose", "8080", "busybox", "true")

    def shown(*flags: str, cli: str = "berth") -> set[str]:
        args = ("ps", "-a", "--format", "{{.Names}}", *(f for flag in flags for f in ("--filter", flag)))
        out = (d.berth(*args) if cli == "berth" else d.docker(*args)).stdout.split()
        return set(out) & {published, exposed}

    for cli in ("berth", "docker"):
        assert shown("publish=80", cli=cli) == {published}
        assert shown("publish=53/udp", cli=cli) == {published}
        assert shown("publish=53", cli=cli) == set()
        assert shown("publish=8080", cli=cli) == set()
        assert shown("expose=8000-8090/tcp", cli=cli) == {exposed}
        assert shown("expose=80", cli=cli) == {published}
        assert shown("expose=8080/udp", cli=cli) == set()
        assert shown("publish=80", "expose=8080", cli=cli) == set()
    for value, message in (("publish=80:80", "filter for 'publish' should not contain ':': 80:80"),
                           ("expose=abc", "error while looking up for expose abc"),
                           ("expose=99999", "error while looking up for expose 99999")):
        error = one_line_error(d.berth("ps", "--filter", value, check=False))
        assert message in error
    assert d.docker("version").returncode == 0


def test_compose_logs_prefix_is_the_padded_container_name(berthd_with_busybox: Berthd, tmp_path: Path) -> None:
    d = berthd_with_busybox
    project = unique("par")
    (tmp_path / "compose.yaml").write_text(
        "services:\n"
        "  web:\n    image: busybox\n    command: echo from-web\n"
        "  database:\n    image: busybox\n    command: echo from-db\n")
    compose = ("compose", "-p", project, "-f", str(tmp_path / "compose.yaml"))
    try:
        d.berth(*compose, "up", "-d")
        d.berth("wait", f"{project}-web-1", f"{project}-database-1")
        lines = d.berth(*compose, "logs", "--no-color").stdout.splitlines()
        width = len(f"{project}-database-1")
        assert f"{project}-web-1".ljust(width) + "  | from-web" in lines
        assert f"{project}-database-1  | from-db" in lines
        assert "\x1b[" not in d.berth(*compose, "logs").stdout  # no colours without a tty
    finally:
        d.berth(*compose, "down", check=False)


def test_context_create_and_use_print_as_docker(berthd_with_busybox: Berthd) -> None:
    d = berthd_with_busybox
    name = unique("ctx")
    created = d.berth("context", "create", name, "--docker", f"host={d.url}")
    assert (created.stdout, created.stderr) == (f"{name}\n", f'Successfully created context "{name}"\n')
    used = d.berth("context", "use", name)
    assert (used.stdout, used.stderr) == (f"{name}\n", f'Current context is now "{name}"\n')
    merged = subprocess.run([str(BIN / "berth"), "context", "use", "default"], env=d.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, check=True, timeout=60)
    assert merged.stdout == 'default\nCurrent context is now "default"\n'  # stdout first, as docker's
    removed = d.berth("context", "rm", name)
    assert removed.stdout == f"{name}\n"
