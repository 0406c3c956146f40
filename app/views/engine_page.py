"""The Engine page: the engine's state with Start, Stop and Restart, and what ``/info`` says."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.actions import ActionRunner
from app.engine_control import EngineCommand, control_engine
from app.engine_session import EngineSession, EngineState
from app.formatting import describe_error, size
from backend.api.errors import APIError


class EnginePage(QWidget):
    """Shows the session's state; its buttons run systemctl through :mod:`app.engine_control`."""

    def __init__(self, session: EngineSession, runner: ActionRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session, self.runner = session, runner
        self.state = QLabel()
        self.details = QLabel()
        self.details.setWordWrap(True)
        buttons = QHBoxLayout()
        self.controls: list[QPushButton] = []
        for command in EngineCommand:
            button = QPushButton(command.value.capitalize())
            button.setToolTip(f"{command.value.capitalize()} the engine (systemd unit berthd)")
            button.clicked.connect(lambda _=False, c=command: self.control(c))
            buttons.addWidget(button)
            self.controls.append(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Engine</b>"))
        layout.addWidget(self.state)
        layout.addLayout(buttons)
        layout.addWidget(self.details)
        layout.addStretch(1)
        session.state_changed.connect(self._state_changed)
        session.connected.connect(lambda: self.runner.run("Engine information", self._load_info()))
        self._state_changed(session.state, session.message)

    def control(self, command: EngineCommand) -> None:
        """Start, stop or restart the engine."""
        self.runner.run(f"{command.value.capitalize()} the engine", control_engine(command), self.controls)

    def _state_changed(self, state: EngineState, message: str) -> None:
        self.state.setText(f"State: {state.value} — {message}")
        if state is not EngineState.RUNNING:
            self.details.setText("")

    async def _load_info(self) -> None:
        try:
            info = await self.session.client.info()
        except APIError as exc:
            self.details.setText(describe_error(exc))
            return
        self.details.setText(
            f"Version {info.server_version} on {info.operating_system} ({info.architecture}), kernel "
            f"{info.kernel_version}<br>{info.ncpu} CPUs, {size(info.mem_total)} memory, storage {info.driver}, "
            f"cgroup v{info.cgroup_version}<br>Data root {info.docker_root_dir}<br>"
            f"{info.containers} containers ({info.containers_running} running), {info.images} images")
