"""scripts/uninstall.sh removes what scripts/install.sh put in place and keeps the user's data unless asked.

Run against a fake installation in a temp directory (prefix, command links, unit files, socket, data root)
and a temp group, through the script's BERTH_* overrides, so the machine's own Berth is untouched.
"""

from __future__ import annotations

import grp
import os
import secrets
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "uninstall.sh"
COMMANDS = ("berthd", "berth", "berth-runtime", "berth-desktop")


def _fake_install(tmp: Path) -> dict[str, str]:
    prefix, bindir, units, data = tmp / "opt" / "berth", tmp / "bin", tmp / "units", tmp / "data"
    (prefix / "bin").mkdir(parents=True)
    bindir.mkdir()
    units.mkdir()
    (data / "image").mkdir(parents=True)
    (data / "image" / "keep-me").write_text("user data")
    for cmd in COMMANDS:
        (prefix / "bin" / cmd).write_text("#!/bin/sh\n")
        (bindir / cmd).symlink_to(prefix / "bin" / cmd)
    (bindir / "other-tool").symlink_to("/bin/true")
    for unit in ("berthd.service", "berthd.socket"):
        (units / unit).write_text("[Unit]\n")
    (tmp / "berth.sock").write_text("")
    group = f"bt{secrets.token_hex(4)}"
    subprocess.run(["groupadd", "--system", group], check=True)
    return {"BERTH_PREFIX": str(prefix), "BERTH_BINDIR": str(bindir), "BERTH_UNITDIR": str(units),
            "BERTH_DATA_ROOT": str(data), "BERTH_SOCKET": str(tmp / "berth.sock"), "BERTH_GROUP": group}


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("purge", [False, True])
def test_uninstall_leaves_nothing_but_data(tmp_path: Path, purge: bool) -> None:
    env = _fake_install(tmp_path)
    args = ["--purge-data"] if purge else []
    result = subprocess.run(["bash", str(SCRIPT), *args], env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not Path(env["BERTH_PREFIX"]).exists()
    for cmd in COMMANDS:
        assert not os.path.lexists(Path(env["BERTH_BINDIR"]) / cmd)
    assert (Path(env["BERTH_BINDIR"]) / "other-tool").is_symlink()  # not ours: kept
    assert list(Path(env["BERTH_UNITDIR"]).iterdir()) == []
    assert not Path(env["BERTH_SOCKET"]).exists()
    assert not _group_exists(env["BERTH_GROUP"])
    assert (Path(env["BERTH_DATA_ROOT"]) / "image" / "keep-me").exists() != purge
    assert ("--purge-data removes them" in result.stdout) != purge


def test_bad_argument_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(SCRIPT), "--everything"], capture_output=True, text=True,
                            env={**os.environ, "BERTH_PREFIX": str(tmp_path / "nothing")})
    assert result.returncode == 2 and "usage" in result.stderr
