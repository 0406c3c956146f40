"""Running Berth's Python helper processes from source and from a frozen (PyInstaller) bundle alike.

From source the engine starts its helpers (the container monitor, the runtime's fork server) with the real
interpreter: ``python -S -c ...`` or ``python -m MODULE``. A frozen bundle has no interpreter to call: there
``sys.executable`` is the bundled program itself, so helpers are started as ``<program> --berth-helper NAME
ARGS...`` and every bundled program's entry point (packaging/pyinstaller/entry_*.py) calls
:func:`run_helper_if_asked` first.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

HELPER_FLAG = "--berth-helper"
# Helper name -> module with a ``main(argv)`` function.
HELPERS = {
    "monitor": "backend.engine.runtime.monitor",
    "forkserver": "backend.engine.runtime.forkserver",
    "machine-agent": "backend.machine.agent",
}
# From source the monitor runs without site (no .pth processing): it needs only the standard library and
# this project, which its caller puts on PYTHONPATH; equivalent to ``python -m`` without runpy's imports.
_SOURCE_ARGS = {
    "monitor": ["-S", "-c", "import sys; from backend.engine.runtime.monitor import main; sys.exit(main())"],
    "forkserver": ["-m", "backend.engine.runtime.forkserver"],
    "machine-agent": ["-m", "backend.machine.agent"],
}


def is_frozen() -> bool:
    """Whether this process runs from a frozen bundle."""
    return bool(getattr(sys, "frozen", False))


def helper_argv(name: str, python: str | None = None) -> list[str]:
    """The command line that starts helper ``name`` (its own arguments follow). Raises KeyError."""
    if name not in HELPERS:
        raise KeyError(name)
    if is_frozen():
        return [sys.executable, HELPER_FLAG, name]
    return [python or sys.executable, *_SOURCE_ARGS[name]]


def run_helper_if_asked(argv: Sequence[str] | None = None) -> None:
    """If this process was started as a helper (``<program> --berth-helper NAME ...``), run it and exit."""
    args = list(sys.argv if argv is None else argv)
    if len(args) < 3 or args[1] != HELPER_FLAG:
        return
    name, rest = args[2], args[3:]
    if name not in HELPERS:
        sys.exit(f"unknown helper: {name}")
    main = importlib.import_module(HELPERS[name]).main
    sys.argv = [f"{args[0]} {name}", *rest]
    result = main(rest)
    sys.exit(result if isinstance(result, int) else 0)
