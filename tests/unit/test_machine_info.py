"""backend.api.machines: MachineInfo parsed from the real ``berth machine ls --format json`` of a machine made by
``berth machine init`` (a tiny image that never boots), malformed documents refused with a clear error, and
MachineControl's verbs and one-line errors through the real CLI."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backend.api.errors import MachineError
from backend.api.machines import MachineControl, MachineInfo, MachineState, berth_command
from tests.fixtures.tiny_machine_image import TinyImage, tiny_machine_image  # noqa: F401 (fixture)

BERTH = str(Path(sys.executable).parent / "berth")


def _berth(home: Path, *args: str) -> str:
    return subprocess.run([BERTH, "machine", *args], env={**os.environ, "BERTH_MACHINE_HOME": str(home)},
                          capture_output=True, text=True, check=True, timeout=120).stdout


@pytest.fixture
def listed(tmp_path: Path, tiny_machine_image: TinyImage) -> tuple[Path, list[Any]]:  # noqa: F811
    """A machine home with ``vm1`` made by ``berth machine init``, and what ``ls --format json`` printed."""
    home = tmp_path / "machines"
    _berth(home, "init", "vm1", "--image", str(tiny_machine_image.tar), "--image-sha256", tiny_machine_image.sha256,
           "--cpus", "1", "--memory", "1024", "--disk-size", "8", "--idle-timeout", "60", "--no-share",
           "--accel", "tcg", "--restrict-network")
    return home, json.loads(_berth(home, "ls", "--format", "json"))


def test_from_json_of_real_ls_output(listed: tuple[Path, list[Any]], tiny_machine_image: TinyImage) -> None:  # noqa: F811
    home, docs = listed
    [info] = [MachineInfo.from_json(doc) for doc in docs]
    assert (info.name, info.state, info.status, info.running) == ("vm1", MachineState.STOPPED, "stopped", False)
    config = info.config
    assert (config.cpus, config.memory_mib, config.disk_gib, config.idle_timeout) == (1, 1024, 8, 60)
    assert (config.share, config.accel, config.restrict_network, config.api_port) == (None, "tcg", True, 0)
    assert config.image_sha256 == tiny_machine_image.sha256
    assert (info.socket, info.dir, info.tcp) == (f"unix://{home}/vm1/berth.sock", str(home / "vm1"), "")
    assert (info.ports, info.boot_seconds, info.error, info.provisioned, info.resting) == ((), 0.0, "", False, False)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("state"), "malformed machine 'vm1': 'state' is missing"),
    (lambda d: d.update(state="paused"), "state 'paused' is not one of stopped, starting, running"),
    (lambda d: d["config"].update(cpus="2"), "malformed machine 'vm1''s config: 'cpus' is str, not int"),
    (lambda d: d["config"].update(memory_mib=True), "'memory_mib' is bool, not int"),
    (lambda d: d["config"].pop("disk_gib"), "'disk_gib' is missing"),
    (lambda d: d.update(ports=[8080]), "malformed machine 'vm1': ports must be strings"),
    (lambda d: d.update(config=None), "'config' is NoneType, not dict"),
    (lambda d: d.update(boot_seconds="fast"), "'boot_seconds' is str, not int or float"),
    (lambda d: d.update(name=3), "malformed machine document: 'name' is int, not str"),
])
def test_malformed_documents_are_refused_clearly(listed: tuple[Path, list[Any]], change: Any, message: str) -> None:
    doc = copy.deepcopy(listed[1][0])
    change(doc)
    with pytest.raises(MachineError) as caught:
        MachineInfo.from_json(doc)
    assert message in caught.value.message


def test_not_an_object_is_refused() -> None:
    with pytest.raises(MachineError, match="expected an object, got list"):
        MachineInfo.from_json([])


def test_control_runs_the_cli(listed: tuple[Path, list[Any]], tiny_machine_image: TinyImage) -> None:  # noqa: F811
    home, _ = listed
    control = MachineControl(home)

    async def scenario() -> None:
        await control.set("vm1", cpus=2, disk_gib=10, idle_timeout=0)
        info = await control.inspect("vm1")
        assert (info.config.cpus, info.config.disk_gib, info.config.idle_timeout) == (2, 10, 0)
        with pytest.raises(MachineError) as shrink:
            await control.set("vm1", disk_gib=4)
        assert shrink.value.message == "--disk-size cannot shrink the disk (10 GiB)"
        with pytest.raises(MachineError) as wrong:
            await control.init("vm2", str(tiny_machine_image.tar), "0" * 64, no_share=True)
        assert wrong.value.message.endswith("expected " + "0" * 64 + ": refused")
        assert "\n" not in wrong.value.message and not wrong.value.message.startswith("berth:")
        assert [m.name for m in await control.ls()] == ["vm1"]
        await control.rm("vm1")
        assert await control.ls() == []
        with pytest.raises(MachineError) as missing:
            await control.inspect("vm1")
        assert missing.value.message == "no such machine: vm1"

    asyncio.run(scenario())
    assert not (home / "vm1").exists() and not (home / "vm2").exists()


def test_berth_command_from_source_runs_the_cli() -> None:
    proc = subprocess.run([*berth_command(), "machine", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "init" in proc.stdout
