"""``bench/run.py --quick``: every scenario runs against every system and the report is written.

Fails only when a scenario errors (the harness's exit status), never on a figure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_quick_run_completes(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the benchmarks need root")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=880, cwd=ROOT)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = (tmp_path / "benchmarks.md").read_text()
    for row in ("docker run --rm true", "create + start of 10 containers", "Pull of a 5-layer image",
                "Compose up -d", "Runtime cycle", "GUI cold start", "Daemon idle RSS"):
        assert row in report
    assert (tmp_path / "benchmarks.png").read_bytes().startswith(b"\x89PNG")


def test_unknown_scenario_is_one_clear_line() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--only", "nonsense"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "unknown scenario nonsense" in proc.stderr
    assert "Traceback" not in proc.stderr
