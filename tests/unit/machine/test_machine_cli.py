"""``berth machine`` without booting: bad input gives one line and exit 1, and a wrong SHA-256 creates nothing."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from backend.cli.main import main


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BERTH_MACHINE_HOME", str(tmp_path / "machines"))
    return tmp_path / "machines"


@pytest.mark.parametrize(("args", "message"), [
    (["machine", "start", "nope"], "berth: no such machine: nope"),
    (["machine", "inspect"], "berth: no such machine: default"),
    (["machine", "init", "x", "--image", "u", "--image-sha256", "zz"],
     "berth: invalid --image-sha256 'zz': expected 64 hex digits"),
    (["machine", "init", "Bad/Name", "--image", "u", "--image-sha256", "0" * 64], "berth: invalid machine name"),
    (["machine", "init", "x", "--image", "/nonexistent.tar", "--image-sha256", "0" * 64],
     "berth: reading image /nonexistent.tar: No such file or directory"),
    (["machine", "init", "x", "--image", "u", "--image-sha256", "0" * 64, "--cpus", "0"], "berth: --cpus must be"),
])
def test_bad_input_is_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_bad_flag_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["machine", "init", "--memory", "lots", "--image", "u", "--image-sha256", "0" * 64]) == 125
    assert "invalid size" in capsys.readouterr().err


def test_wrong_sha256_creates_nothing(tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "image.tar"
    with tarfile.open(image, "w") as tar:
        info = tarfile.TarInfo("disk.qcow2")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"qcow"))
    wrong = hashlib.sha256(b"something else").hexdigest()
    assert main(["machine", "init", "dev", "--image", str(image), "--image-sha256", wrong]) == 1
    assert "refused" in capsys.readouterr().err
    assert not (home / "dev").exists() and list((home / "_cache" / "images").iterdir()) == []
    assert main(["machine", "ls"]) == 0
    assert capsys.readouterr().out.splitlines() == ["NAME   STATE   CPUS   MEMORY   DISK   PORTS"]
