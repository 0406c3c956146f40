"""Compose model: interpolation, .env, merge, validation and hostile files (pure, fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.compose.config import project_yaml, service_names, volume_names
from backend.compose.interpolation import InterpolationError, parse_env_file, substitute
from backend.compose.loader import parse_yaml
from backend.compose.merge import merge_values
from backend.compose.model import ComposeError, DependsOnCondition, PortConfig, Project, load_project
from backend.compose.validate import normalise_project_name

ENV = {"A": "a", "EMPTY": "", "PORT": "8080"}


@pytest.mark.parametrize(("template", "expected"), [
    ("$A", "a"), ("${A}", "a"), ("x${A}y", "xay"), ("$A-$A", "a-a"), ("${MISSING}", ""), ("$$A", "$A"),
    ("$${A}", "${A}"), ("${MISSING:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""), ("${MISSING-d}", "d"),
    ("${A:-d}", "a"), ("${A:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"), ("${MISSING+alt}", ""),
    ("${MISSING:-${A}}", "a"), ("${MISSING:-${NOPE:-deep}}", "deep"), ("${A:?msg}", "a"), ("${EMPTY?msg}", ""),
    ("${PORT}:80", "8080:80"), ("no vars", "no vars"), ("${MISSING:-a b}", "a b"),
])
def test_substitute(template: str, expected: str) -> None:
    assert substitute(template, ENV) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("${MISSING:?need it}", "required variable MISSING is missing a value: need it"),
    ("${EMPTY:?}", "required variable EMPTY"), ("${MISSING?x}", "MISSING"), ("${A", "unclosed"),
    ("${}", "invalid interpolation format"), ("$1", "lone '$'"), ("${A!x}", "invalid interpolation format"),
])
def test_substitute_errors(template: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message.replace("$", r"\$")):
        substitute(template, ENV)


def test_env_file_syntax() -> None:
    text = ("# comment\nexport A=1\nB = \"x\\ny $A\"\nC='lit $A'\nD=plain # comment\nE\nHOME\n"
            "M=\"multi\nline\"\nZ=${A}z\n")
    assert parse_env_file(text, ".env", {"HOME": "/root"}) == {
        "A": "1", "B": "x\ny 1", "C": "lit $A", "D": "plain", "HOME": "/root", "M": "multi\nline", "Z": "1z"}


@pytest.mark.parametrize("text", ["1A=x", "A=\"open", "A='open", "not a line"])
def test_env_file_errors(text: str) -> None:
    with pytest.raises(InterpolationError, match=r"\.env: line 1"):
        parse_env_file(text, ".env")


@pytest.mark.parametrize(("base", "override", "expected"), [
    ({"image": "a"}, {"image": "b"}, {"image": "b"}),
    ({"command": ["a", "b"]}, {"command": ["c"]}, {"command": ["c"]}),
    ({"entrypoint": ["a"]}, {"entrypoint": ["b"]}, {"entrypoint": ["b"]}),
    ({"healthcheck": {"test": ["CMD", "a"], "retries": 3}}, {"healthcheck": {"test": ["CMD", "b"]}},
     {"healthcheck": {"test": ["CMD", "b"], "retries": 3}}),
    ({"ports": ["80:80"]}, {"ports": ["80:80", "443:443"]}, {"ports": ["80:80", "443:443"]}),
    ({"expose": ["1", "2"]}, {"expose": ["2", "3"]}, {"expose": ["1", "2", "3"]}),
    ({"dns": ["1.1.1.1"]}, {"dns": ["8.8.8.8"]}, {"dns": ["1.1.1.1", "8.8.8.8"]}),
    ({"volumes": ["a:/data", "b:/x"]}, {"volumes": ["c:/data"]}, {"volumes": ["c:/data", "b:/x"]}),
    ({"secrets": ["s1"]}, {"secrets": [{"source": "s1", "target": "t"}]},
     {"secrets": [{"source": "s1", "target": "t"}]}),
    ({"environment": {"A": "1", "B": "2"}}, {"environment": {"B": "3"}}, {"environment": {"A": "1", "B": "3"}}),
    ({"labels": {"a": "1"}}, {"labels": {"b": "2"}}, {"labels": {"a": "1", "b": "2"}}),
    ({"deploy": {"replicas": 1, "resources": {"limits": {"cpus": "1"}}}},
     {"deploy": {"resources": {"limits": {"memory": "1g"}}}},
     {"deploy": {"replicas": 1, "resources": {"limits": {"cpus": "1", "memory": "1g"}}}}),
])
def test_merge_rules(base: dict[str, Any], override: dict[str, Any], expected: dict[str, Any]) -> None:
    assert merge_values(base, override) == expected


@pytest.mark.parametrize(("name", "expected"), [("MyApp", "myapp"), ("my app.v2", "myappv2"), ("a_b-c", "a_b-c")])
def test_project_name_normalised(name: str, expected: str) -> None:
    assert normalise_project_name(name) == expected


@pytest.mark.parametrize("name", ["", "-x", "_x", "!!!"])
def test_project_name_invalid(name: str) -> None:
    with pytest.raises(ComposeError, match="invalid project name"):
        normalise_project_name(name)


def load(tmp_path: Path, *texts: str, env: dict[str, str] | None = None, **kwargs: Any) -> Project:
    files = []
    for i, text in enumerate(texts):
        path = tmp_path / ("compose.yaml" if i == 0 else f"compose.{i}.yaml")
        path.write_text(text)
        files.append(str(path))
    return load_project(files, environment=env or {}, **kwargs)


def test_full_project(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=15\nWEB_PORT=8080\n")
    project = load(tmp_path, """
version: "3.8"
name: Shop
services:
  web:
    build: {context: ./web, args: [V=1]}
    command: python app.py --debug
    ports: ["${WEB_PORT}:80", {target: 443, published: "8443", protocol: tcp}]
    depends_on: {db: {condition: service_healthy}, cache: {condition: service_started}}
    environment: [A=1, B]
    volumes: ["data:/data", "./src:/src:ro", {type: tmpfs, target: /tmp, tmpfs: {size: 64m}}]
    networks: {front: {aliases: [www]}}
    deploy: {replicas: 2, resources: {limits: {memory: 512m, cpus: "0.5"}}}
    stop_grace_period: 1m30s
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 64}
  db:
    image: postgres:${TAG}
    healthcheck: {test: pg_isready, interval: 10s, timeout: 5s, retries: 5, start_period: 1m}
    volumes: [data:/var/lib/postgresql/data]
  cache:
    image: redis
    networks: [front]
    scale: 3
networks: {front: {}}
volumes: {data: {}, ext: {external: true}}
""")
    assert project.name == "shop"
    assert project.warnings and "version" in project.warnings[0]
    web, db = project.services["web"], project.services["db"]
    assert web.command == ["python", "app.py", "--debug"]
    assert web.ports == [PortConfig(80, "8080"), PortConfig(443, "8443")]
    assert web.depends_on["db"].condition is DependsOnCondition.HEALTHY
    assert web.environment == {"A": "1", "B": None}
    assert web.build is not None and web.build.context == str(tmp_path / "web") and web.build.args == {"V": "1"}
    assert [v.type for v in web.volumes] == ["volume", "bind", "tmpfs"] and web.volumes[1].read_only
    assert web.volumes[2].tmpfs_size == 64 * 1024 * 1024
    assert web.networks["front"].aliases == ["www"]
    assert web.replicas == 2 and web.memory_limit == 512 * 1024 * 1024 and web.cpu_limit == 0.5
    assert web.stop_grace_period == 90.0 and web.ulimits["nproc"].soft == 64
    assert db.image == "postgres:15"
    assert db.healthcheck is not None and db.healthcheck.test == ["CMD-SHELL", "pg_isready"]
    assert db.healthcheck.interval == 10.0 and db.healthcheck.start_period == 60.0
    assert project.services["cache"].replicas == 3
    assert project.volumes["data"].name == "shop_data" and project.volumes["ext"].name == "ext"
    assert project.networks["front"].name == "shop_front" and project.networks["default"].name == "shop_default"
    assert service_names(project) == ["web", "db", "cache"] and volume_names(project) == ["data", "ext"]
    assert "image: postgres:15" in project_yaml(project)


def test_project_name_precedence(tmp_path: Path) -> None:
    text = "name: fromfile\nservices: {a: {image: x}}\n"
    assert load(tmp_path, text).name == "fromfile"
    assert load(tmp_path, text, env={"COMPOSE_PROJECT_NAME": "fromenv"}).name == "fromenv"
    assert load(tmp_path, text, env={"COMPOSE_PROJECT_NAME": "fromenv"}, project_name="Flag").name == "flag"
    assert load(tmp_path, "services: {a: {image: x}}\n").name == normalise_project_name(tmp_path.name)


def test_several_files_merge(tmp_path: Path) -> None:
    project = load(tmp_path, "services:\n  web: {image: a, ports: ['80:80'], environment: [A=1], command: [x, y]}\n",
                   "services:\n  web: {image: b, ports: ['81:81'], environment: {B: '2'}, command: z}\n"
                   "  other: {image: c}\n")
    web = project.services["web"]
    assert web.image == "b" and [p.target for p in web.ports] == [80, 81]
    assert web.environment == {"A": "1", "B": "2"} and web.command == ["z"]
    assert list(project.services) == ["web", "other"]


def test_reset_and_override_tags(tmp_path: Path) -> None:
    project = load(tmp_path, "services:\n  web: {image: a, ports: ['80:80'], dns: [1.1.1.1]}\n",
                   "services:\n  web: {ports: !reset [], dns: !override [8.8.8.8]}\n")
    assert project.services["web"].ports == [] and project.services["web"].dns == ["8.8.8.8"]


def test_extends_and_file(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "common.yaml").write_text("services:\n  app: {image: base, build: ., environment: [X=1]}\n")
    project = load(tmp_path, """
services:
  base: {image: b, environment: {A: "1"}, command: [a]}
  child: {extends: base, environment: {B: "2"}}
  other: {extends: {file: base/common.yaml, service: app}, environment: [Y=2]}
""")
    child, other = project.services["child"], project.services["other"]
    assert child.image == "b" and child.environment == {"A": "1", "B": "2"} and child.command == ["a"]
    assert other.build is not None and other.build.context == str(tmp_path / "base")
    assert other.environment == {"X": "1", "Y": "2"}


def test_profiles(tmp_path: Path) -> None:
    text = "services:\n  a: {image: x}\n  dbg: {image: y, profiles: [debug]}\n"
    assert list(load(tmp_path, text).services) == ["a"]
    assert list(load(tmp_path, text, profiles=["debug"]).services) == ["a", "dbg"]
    assert list(load(tmp_path, text, env={"COMPOSE_PROFILES": "debug"}).services) == ["a", "dbg"]
    assert list(load(tmp_path, text).enable(["dbg"]).services) == ["a", "dbg"]


def test_env_file_and_interpolation_of_values_only(tmp_path: Path) -> None:
    (tmp_path / "web.env").write_text("FROM_FILE=1\nA=file\n")
    project = load(tmp_path, "services:\n  web:\n    image: x\n    env_file: web.env\n"
                   "    environment: {A: mine, $$KEY: v}\n")
    assert project.services["web"].environment == {"FROM_FILE": "1", "A": "mine", "$$KEY": "v"}


@pytest.mark.parametrize(("text", "message"), [
    ("services:\n  web:\n    image: a\n    image: b\n", "compose.yaml: services.web: duplicate key 'image'"),
    ("services:\n  web:\n    image: x\n    ports:\n      - 22:22\n",
     "compose.yaml: services.web.ports[0]: 22:22 was read by YAML as the number 1342 (base 60); quote it"),
    ("services:\n  web: !!python/object/apply:os.system [ls]\n", "compose.yaml: services.web: unsupported YAML tag"),
    ("services:\n  web: {image: x, colour: red}\n", "compose.yaml: services.web.colour: unknown key"),
    ("servics: {}\n", "compose.yaml: servics: unknown key"),
    ("services:\n  web: {image: x, ports: ['80:80:80:80']}\n",
     "compose.yaml: services.web.ports[0]: invalid port '80:80:80:80'"),
    ("services:\n  web: {image: x, ports: ['99999:80']}\n", "services.web.ports[0]: invalid port '99999:80'"),
    ("services:\n  web: {image: x, restart: sometimes}\n", "services.web.restart: invalid restart policy"),
    ("services:\n  web: {image: x, mem_limit: lots}\n", "services.web.mem_limit: invalid size 'lots'"),
    ("services:\n  web: {image: x, healthcheck: {interval: soon}}\n",
     "services.web.healthcheck.interval: invalid duration 'soon'"),
    ("services:\n  web: {image: x, depends_on: {db: {condition: service_ready}}}\n  db: {image: y}\n",
     "services.web.depends_on.db.condition: invalid condition 'service_ready'"),
    ("services:\n  web: {image: x, depends_on: [nope]}\n", "services.web.depends_on: depends on undefined service"),
    ("services:\n  web: {image: x, networks: [nope]}\n", "services.web.networks: service refers to undefined network"),
    ("services:\n  web: {image: x, volumes: ['data:/d']}\n", "services.web.volumes[0]: service refers to undefined"),
    ("services:\n  web: {image: x, volumes: ['a:b:c:d']}\n", "services.web.volumes[0]: invalid volume"),
    ("services:\n  web: {image: x, environment: [=x]}\n", "services.web.environment[0]: invalid entry"),
    ("services:\n  web: {image: x, tty: maybe}\n", "services.web.tty: must be a boolean"),
    ("services:\n  web: {image: x, scale: -1}\n", "services.web.scale: must be an integer >= 0"),
    ("services:\n  web: {command: x}\n", "services.web: has neither an image nor a build section"),
    ("services:\n  web: {image: '${NEED:?set NEED}'}\n", "services.web.image: required variable NEED"),
    ("services:\n  web: {image: 'cost $5'}\n", "services.web.image: invalid interpolation format"),
    ("services:\n  web: {image: x, extends: web}\n", "services.web.extends: circular extends"),
    ("services:\n  web: {image: x, ports: [{published: 80}]}\n", "services.web.ports[0]: a port needs a target"),
    ("services:\n  web: {image: x, ulimits: {nofile: {soft: 1}}}\n",
     "services.web.ulimits.nofile: needs soft and hard"),
    ("- a\n- b\n", "compose.yaml: the top level must be a mapping"),
    ("services: [\n", "compose.yaml: invalid YAML"),
    ("a: &a [*a]\n", "nested more than"),
    ("x: !custom 1\n", "unsupported YAML tag '!custom'"),
])
def test_hostile_and_invalid_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ComposeError) as info:
        load(tmp_path, text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_alias_bomb_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    with pytest.raises(ComposeError, match="too many YAML nodes"):
        parse_yaml("\n".join(lines), "compose.yaml")


def test_size_cap() -> None:
    with pytest.raises(ComposeError, match="file too large"):
        parse_yaml("a: " + "x" * (5 * 1024 * 1024), "compose.yaml")


def test_no_file_found(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="no configuration file provided"):
        load_project([], working_dir=tmp_path, environment={})
