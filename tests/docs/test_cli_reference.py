"""The reference pages generated from the code (docs/reference/) are the ones committed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_reference_is_current() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_cli_reference.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"docs/reference is stale: run scripts/gen_cli_reference.py\n{result.stderr}"
