"""PyInstaller entry point of ``berth-desktop`` (the console script's function)."""

import sys

from backend.frozen import run_helper_if_asked

run_helper_if_asked()
from app.application import main  # noqa: E402

sys.exit(main())
