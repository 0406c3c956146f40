"""PyInstaller entry point of ``berth`` (the console script's function)."""

import sys

from backend.frozen import run_helper_if_asked

run_helper_if_asked()
from backend.cli.main import console_main  # noqa: E402

sys.exit(console_main())
