"""The app against an engine socket it may not open says so in one line with the fix (the missing socket and
a name conflict from the Run dialog are covered in test_desktop.py and test_images_page.py).

Root may open any socket, so the test takes CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of this thread's
effective set while the app connects to a socket with mode 000, as a user outside the berth group would
meet it (the capabilities stay permitted and are put back afterwards). No daemon is needed."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QSettings

from app.application import Desktop
from app.engine_session import EngineState
from app.settings import Settings
from backend.engine.runtime.syscalls import capset
from tests.gui.conftest import eventually, run_async

pytestmark = [pytest.mark.gui, pytest.mark.root]
DAC = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


def capabilities() -> tuple[int, int, int]:
    """This thread's effective, permitted and inheritable sets."""
    with open(f"/proc/self/task/{os.getpid()}/status") as status:
        fields = dict(line.split(":\t", 1) for line in status if line.startswith("Cap"))
    return int(fields["CapEff"], 16), int(fields["CapPrm"], 16), int(fields["CapInh"], 16)


@contextlib.contextmanager
def without_dac_override() -> Iterator[None]:
    effective, permitted, inheritable = capabilities()
    capset(effective & ~DAC, permitted, inheritable)
    try:
        yield
    finally:
        capset(effective, permitted, inheritable)


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's file capabilities, so must start as root")
def test_permission_denied_on_the_socket_is_one_line_with_the_fix(qtbot, qloop, tmp_path) -> None:
    path = tmp_path / "berth.sock"
    settings = Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        os.chmod(path, 0)
        app = Desktop(f"unix://{path}", settings, notify=False)
        try:
            with without_dac_override():
                app.start()
                run_async(qtbot, eventually(lambda: app.session.state is EngineState.STOPPED, 10, "stopped"))
        finally:
            run_async(qtbot, app.close())
    text = app.window.banner.text
    assert text.startswith("Permission denied on the engine's socket") and f"unix://{path}" in text
    assert "sudo usermod -aG berth $USER" in text and "\n" not in text and "Traceback" not in text
    assert app.window.pill.text() == "● Stopped"
