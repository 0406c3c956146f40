"""The main window: sidebar of pages (and About), top bar (search, Run…, Pull…), the error banner and the engine
status pill.

The sidebar's footer has the context switcher (the engine this window manages). The banner shows the newest
action error, and the engine's state while it is not running (with a Start
button). The pages are live from the session's events through :class:`app.live.LiveData`. Delete acts on the
current page's selection; Ctrl+1…8 switch pages; Ctrl+F finds in the current table. The geometry, the page,
each table's columns and sort order and the detail view's tab are kept in the settings.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.actions import ActionRunner
from app.dialogs.about import AboutDialog
from app.engine_control import EngineCommand
from app.engine_session import EngineSession, EngineState
from app.live import LiveData
from app.models.containers import ContainerRow
from app.settings import Settings
from app.views.builds_page import BuildsPage, default_history
from app.views.container_detail import ContainerDetail
from app.views.containers_page import ContainersPage
from app.views.engine_page import EnginePage
from app.views.images_page import ImagesPage
from app.views.networks_page import NetworksPage
from app.views.settings_page import SettingsPage
from app.views.stacks_page import StacksPage
from app.views.table_page import TablePage
from app.views.troubleshoot_page import TroubleshootPage
from app.views.volumes_page import VolumesPage
from app.widgets.banner import ErrorBanner
from app.widgets.context_switcher import ContextSwitcher

STATE_DOTS = {EngineState.RUNNING: "#2e9e44", EngineState.STARTING: "#2f7ed8", EngineState.STOPPED: "#8a8f98",
              EngineState.ERROR: "#d23c3c"}


class MainWindow(QMainWindow):
    """The dashboard. Closing it hides it (the tray stays) and emits ``closed``; ``detail_windows`` are the
    open detail views."""

    closed = Signal()

    def __init__(self, session: EngineSession, live: LiveData, runner: ActionRunner, settings: Settings) -> None:
        super().__init__()
        self.session, self.live, self.runner, self.settings = session, live, runner, settings
        self.setWindowTitle("Berth")
        self.resize(1100, 680)
        client = session.client
        self.containers_page = ContainersPage(live.containers, client, runner)
        self.images_page = ImagesPage(live, client, runner)
        self.engine_page = EnginePage(session, runner, settings)
        self.builds_page = BuildsPage(client, runner, default_history(settings.store))
        self.pages: dict[str, QWidget] = {
            "Containers": self.containers_page,
            "Images": self.images_page,
            "Volumes": VolumesPage(live.volumes, live.containers, client, runner),
            "Networks": NetworksPage(live.networks, client, runner),
            "Builds": self.builds_page,
            "Engine": self.engine_page,
            "Settings": SettingsPage(settings, session, runner),
            "Troubleshoot": TroubleshootPage(session, runner, settings),
            "Stacks": StacksPage(session, runner),
        }
        self.sidebar = QListWidget()
        self.sidebar.setFixedWidth(170)
        self.stack = QStackedWidget()
        for number, (name, page) in enumerate(self.pages.items(), start=1):
            self.sidebar.addItem(name)
            self.stack.addWidget(page)
            QShortcut(QKeySequence(f"Ctrl+{number}"), self, lambda n=number: self.show_page(n - 1))
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.pill = QPushButton()
        self.pill.setFlat(True)
        self.pill.setToolTip("The engine's state; click for the Engine page")
        self.pill.clicked.connect(lambda: self.show_page(list(self.pages).index("Engine")))
        side = QVBoxLayout()
        side.addWidget(QLabel("<b>Berth</b>"))
        side.addWidget(self.sidebar, 1)
        self.context_switcher = ContextSwitcher(session, runner)
        side.addWidget(self.context_switcher)
        side.addWidget(self.pill)
        about = QPushButton("About Berth")
        about.setFlat(True)
        about.setToolTip("Versions of the app and the engine")
        about.clicked.connect(self.show_about)
        side.addWidget(about)
        self.about_dialog: AboutDialog | None = None
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search the current page…  Ctrl+K")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._search)
        self.sidebar.currentRowChanged.connect(lambda: self._search(self.search.text()))
        QShortcut(QKeySequence("Ctrl+K"), self, self.search.setFocus)
        QShortcut(QKeySequence("F5"), self, live.reload_all)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self, self.find_in_page)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self, self.delete_selected)
        run = QPushButton("Run…")
        run.setToolTip("Run a container (from the selected image on the Images page)")
        run.clicked.connect(self.images_page.show_run)
        pull = QPushButton("Pull…")
        pull.setToolTip("Pull an image")
        pull.clicked.connect(self.images_page.show_pull)
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(run)
        top.addWidget(pull)
        self.banner = ErrorBanner()
        content = QVBoxLayout()
        content.addLayout(top)
        content.addWidget(self.banner)
        content.addWidget(self.stack, 1)
        root = QHBoxLayout()
        root.addLayout(side)
        root.addLayout(content, 1)
        central = QWidget()
        central.setLayout(root)
        self.setCentralWidget(central)
        self.detail_windows: dict[str, ContainerDetail] = {}
        self.containers_page.open_detail.connect(self.open_detail)
        self.images_page.open_detail.connect(self.open_detail)
        runner.failed.connect(self.banner.show_message)
        session.state_changed.connect(self._engine_state)
        self._engine_state(session.state, session.message)
        if settings.geometry is not None:
            self.restoreGeometry(settings.geometry)
        for name, page in self.tables().items():
            state = settings.table_state(name)
            if state is not None and page.view.header().restoreState(state):
                header = page.view.header()
                page.view.sortByColumn(header.sortIndicatorSection(), header.sortIndicatorOrder())
        self.show_page(settings.page)

    def show_page(self, number: int) -> None:
        """Switch to page ``number`` (0-based, in sidebar order)."""
        if 0 <= number < len(self.pages):
            self.sidebar.setCurrentRow(number)

    def tables(self) -> dict[str, TablePage]:
        """The pages that are tables, by name."""
        return {name: page for name, page in self.pages.items() if isinstance(page, TablePage)}

    def find_in_page(self) -> None:
        """Focus the current page's filter box (Ctrl+F), when the page is a table."""
        page = self.stack.currentWidget()
        if isinstance(page, TablePage):
            page.filter.setFocus()
            page.filter.selectAll()

    def delete_selected(self) -> None:
        """Delete the current page's selection (each page confirms first); pages without one ignore it."""
        delete = getattr(self.stack.currentWidget(), "delete_selected", None)
        if callable(delete):
            delete()

    def show_about(self) -> AboutDialog:
        """Open the About dialog (it asks the engine for its versions)."""
        self.about_dialog = AboutDialog(self.session.client, self.runner, self)
        self.about_dialog.show()
        return self.about_dialog

    def open_detail(self, row: ContainerRow) -> ContainerDetail:
        """Open (or raise) the detail window of ``row`` on the last tab used; the log follows while it is open."""
        window = self.detail_windows.get(row.id)
        if window is None:
            window = ContainerDetail(self.session, self.runner, row)
            window.tabs.setCurrentIndex(self.settings.detail_tab)
            window.tabs.currentChanged.connect(lambda index: setattr(self.settings, "detail_tab", index))
            self.detail_windows[row.id] = window
            window.destroyed.connect(lambda: self.detail_windows.pop(row.id, None))
        window.show()
        window.raise_()
        return window

    def _search(self, text: str) -> None:
        page = self.stack.currentWidget()
        if isinstance(page, TablePage):
            page.filter.setText(text)

    def _engine_state(self, state: EngineState, message: str) -> None:
        self.pill.setText(f"● {state.value.capitalize()}")
        self.pill.setStyleSheet(f"color: {STATE_DOTS[state]}; text-align: left;")
        if state in (EngineState.STOPPED, EngineState.ERROR):
            self.banner.show_message(message, "Start engine", lambda: self.engine_page.control(EngineCommand.START))
        elif state is EngineState.RUNNING and self.banner.text == self._last_engine_message:
            self.banner.clear()
        self._last_engine_message = message if state is not EngineState.RUNNING else ""

    _last_engine_message = ""

    def closeEvent(self, event: QCloseEvent) -> None:
        self.settings.geometry = self.saveGeometry()
        self.settings.page = self.sidebar.currentRow()
        for name, page in self.tables().items():
            self.settings.set_table_state(name, page.view.header().saveState())
        self.settings.store.sync()
        for window in list(self.detail_windows.values()):
            window.close()
        super().closeEvent(event)
        self.closed.emit()
