"""PyInstaller entry point of ``berthd`` (the console script's function)."""

import sys

from backend.frozen import run_helper_if_asked

run_helper_if_asked()
from backend.daemon import console_main  # noqa: E402

sys.exit(console_main())
