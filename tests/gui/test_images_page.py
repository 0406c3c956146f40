"""The Images page against a real berthd (offscreen): the Run dialog makes real containers (and the command it
copies makes an equivalent one through the berth CLI), bad input is shown inline, tag and push reach the local
registry with per-layer progress, delete warns about the containers using an image, history lists the layers.
The images model passes qtmodeltester without windows."""

from __future__ import annotations

import json
import secrets
import shlex
import socket
import urllib.request

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QCheckBox, QLineEdit

from app.application import Desktop
from app.dialogs.history import HistoryDialog
from app.dialogs.push import PushDialog
from app.dialogs.run import RunDialog
from app.dialogs.tag import TagDialog, split_reference
from app.engine_session import EngineState
from app.models.containers import ContainerRow
from app.models.images import ImageRow, ImagesModel
from app.settings import Settings
from app.views.images_page import ImagesPage
from tests.gui.conftest import eventually, run_async

pytestmark = [pytest.mark.gui, pytest.mark.root, pytest.mark.network]


@pytest.fixture
def desktop(qtbot, berthd_with_busybox, qloop, tmp_path):
    app = Desktop(berthd_with_busybox.url, Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)),
                  notify=False)
    app.start()
    run_async(qtbot, eventually(lambda: app.session.state is EngineState.RUNNING, 10, "the engine"))
    run_async(qtbot, app.live.settle())
    yield app
    run_async(qtbot, app.close())


def unique(prefix: str = "gui-img") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def page_of(app: Desktop) -> ImagesPage:
    return app.window.images_page


def select_image(qtbot, page: ImagesPage, tag: str) -> None:
    run_async(qtbot, eventually(lambda: any(tag in r.tags for r in page.images.rows), 15, f"image {tag}"))
    page.select(lambda r: isinstance(r, ImageRow) and tag in r.tags)


def inspect(berthd, name: str) -> dict:
    return json.loads(berthd.docker("inspect", name).stdout)[0]


def equivalent(doc: dict) -> tuple:
    """What the Run dialog sets, as docker inspect reports it."""
    host = doc["HostConfig"]
    return (doc["Config"]["Image"], doc["Config"]["Cmd"], sorted(e for e in doc["Config"]["Env"] if "GREETING" in e),
            host["PortBindings"], host["RestartPolicy"], host["NetworkMode"], host["Binds"])


def open_run_dialog(qtbot, page: ImagesPage, *, double_click: bool = False) -> RunDialog:
    select_image(qtbot, page, "busybox:latest")
    if double_click:
        page.view.doubleClicked.emit(page.view.selectionModel().selectedRows()[0])
    else:
        page.run_button.click()
    assert isinstance(page.dialog, RunDialog)
    return page.dialog


def test_images_model_in_use_and_dangling(qtmodeltester) -> None:
    model = ImagesModel()
    busybox = ImageRow("sha256:" + "a" * 64, ("busybox:latest", "box:1"), 4_000_000, 1_700_000_000, -1)
    dangling = ImageRow("sha256:" + "b" * 64, (), 10, 1_600_000_000, -1)
    model.set_rows([busybox, dangling])
    qtmodeltester.check(model)
    changed = []
    model.dataChanged.connect(lambda first, last: changed.append((first.row(), first.column(), last.column())))
    model.count_users([ContainerRow("c1", "web", "busybox", "running", "Up", (), 1, image_id=busybox.id),
                       ContainerRow("c2", "job", "busybox", "exited", "Exited", (), 1, image_id=busybox.id)])
    qtmodeltester.check(model)
    assert changed == [(0, 4, 4)]
    assert [model.index(0, c).data() for c in range(5)][::4] == ["busybox:latest, box:1", "2 containers"]
    assert model.headerData(0, Qt.Orientation.Horizontal) == "Repository:tag"
    assert model.index(0, 4).data(Qt.ItemDataRole.ToolTipRole) == "job, web"
    assert model.index(1, 0).data() == "<none>" and model.index(1, 4).data() == ""
    assert model.users(busybox) == ("job", "web") and model.in_use(dangling) == 0
    model.count_users([])
    assert model.index(0, 4).data() == ""
    qtmodeltester.check(model)


def test_split_reference() -> None:
    assert split_reference("app") == ("app", None)
    assert split_reference("app:1.0") == ("app", "1.0")
    assert split_reference("127.0.0.1:5000/team/app") == ("127.0.0.1:5000/team/app", None)
    assert split_reference("127.0.0.1:5000/team/app:v2") == ("127.0.0.1:5000/team/app", "v2")


def test_run_dialog_runs_a_container_and_its_command_makes_the_same(qtbot, desktop, berthd_with_busybox) -> None:
    name, port = unique(), free_port()
    dialog = open_run_dialog(qtbot, page_of(desktop))
    dialog.name.setText(name)
    dialog.ports.add_row()[0].setText(f"127.0.0.1:{port}:80")
    dialog.env.add_row()[0].setText("GREETING=hello $(world) 'x'")
    dialog.command.setText("sh -c 'echo started; sleep 60'")
    dialog.restart.setCurrentText("on-failure")
    dialog.retries.setValue(2)
    try:
        dialog.run_button.click()
        assert dialog.task is not None
        run_async(qtbot, dialog.task)
        assert not desktop.window.banner.text
        doc = inspect(berthd_with_busybox, name)
        assert doc["State"]["Running"] is True
        assert "GREETING=hello $(world) 'x'" in doc["Config"]["Env"]
        assert doc["Config"]["Cmd"] == ["sh", "-c", "echo started; sleep 60"]
        assert doc["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        run_async(qtbot, eventually(lambda: (r := desktop.live.containers.find(name)) is not None and r.running,
                                    5, "the container on the Containers page"))
        run_async(qtbot, eventually(lambda: desktop.live.images.in_use(next(
            r for r in desktop.live.images.rows if "busybox:latest" in r.tags)) >= 1, 5, "in use"))

        dialog.copy_button.click()
        command = QGuiApplication.clipboard().text()
        assert command.startswith(f"berth run -d --name {name} -p 127.0.0.1:{port}:80 ")
        expected = equivalent(doc)
        berthd_with_busybox.docker("rm", "-f", name)  # free the name and the port for the copied command
        argv = shlex.split(command)
        assert argv[0] == "berth"
        berthd_with_busybox.berth(*argv[1:])
        copy = inspect(berthd_with_busybox, name)
        assert copy["State"]["Running"] is True
        assert equivalent(copy) == expected
    finally:
        berthd_with_busybox.docker("rm", "-f", name, check=False)


def test_run_dialog_shows_bad_input_inline_and_sends_nothing(qtbot, desktop, berthd_with_busybox) -> None:
    name = unique()
    dialog = open_run_dialog(qtbot, page_of(desktop), double_click=True)
    dialog.name.setText(name)
    dialog.ports.add_row()[0].setText("8080:abc")
    dialog.env.add_row()[0].setText("NOEQUALS")
    dialog.command.setText("echo 'unclosed")
    dialog.run_button.click()
    assert dialog.task is None
    for key, words in (("ports", "8080:abc: invalid containerPort: abc"), ("env", "use KEY=VALUE"),
                       ("command", "no closing quotation")):
        assert dialog.errors[key].isVisibleTo(dialog) and words in dialog.errors[key].text()
    assert not dialog.errors["name"].isVisibleTo(dialog)
    assert "red" in dialog.status.text()
    dialog.copy_button.click()  # no command for a bad form either
    assert not dialog.status.text().startswith("Copied")
    assert berthd_with_busybox.docker("inspect", name, check=False).returncode != 0
    # fixed, the same dialog runs; an engine error (a name in use) is one line, the daemon stays up
    dialog.ports.rows[0][0].setText("80")
    dialog.env.rows[0][0].setText("A=1")
    dialog.command.setText("sleep 60")
    try:
        dialog.run_button.click()
        assert not dialog.errors["ports"].isVisibleTo(dialog)
        run_async(qtbot, dialog.task)
        assert inspect(berthd_with_busybox, name)["State"]["Running"] is True
        again = open_run_dialog(qtbot, page_of(desktop))
        again.name.setText(name)
        again.run_button.click()
        run_async(qtbot, again.task)
        run_async(qtbot, eventually(lambda: desktop.window.banner.text, 5, "the banner"))
        assert "\n" not in again.status.text() and "Traceback" not in desktop.window.banner.text
        assert name in again.status.text() and again.isVisible()
        assert berthd_with_busybox.docker("version").returncode == 0
    finally:
        berthd_with_busybox.docker("rm", "-f", name, check=False)


def test_run_dialog_volumes_network_and_attached_run_opens_logs(qtbot, desktop, berthd_with_busybox,
                                                                 tmp_path) -> None:
    name = unique()
    (tmp_path / "hello.txt").write_text("from the host\n")
    page = page_of(desktop)
    dialog = open_run_dialog(qtbot, page)
    assert [dialog.network.itemText(i) for i in range(dialog.network.count())][:1] == ["(default)"]
    assert "bridge" in [dialog.network.itemText(i) for i in range(dialog.network.count())]
    dialog.network.setCurrentText("bridge")
    dialog.name.setText(name)
    source, _, _, target, read_only = dialog.volumes.add_row()
    assert isinstance(source, QLineEdit) and isinstance(target, QLineEdit) and isinstance(read_only, QCheckBox)
    source.setText(str(tmp_path))
    target.setText("/host")
    read_only.setChecked(True)
    dialog.command.setText("sh -c 'cat /host/hello.txt; touch /host/x || echo read-only; sleep 60'")
    dialog.detach.setChecked(False)
    try:
        dialog.run_button.click()
        run_async(qtbot, dialog.task)
        run_async(qtbot, eventually(lambda: any(w.row.name == name for w in desktop.window.detail_windows.values()),
                                    5, "the logs window"))
        doc = inspect(berthd_with_busybox, name)
        assert doc["HostConfig"]["Binds"] == [f"{tmp_path}:/host:ro"]
        assert doc["HostConfig"]["NetworkMode"] == "bridge"
        logs = lambda: berthd_with_busybox.docker("logs", name).stdout  # noqa: E731
        run_async(qtbot, eventually(lambda: "read-only" in logs(), 5, "the output"))
        assert "from the host" in logs() and not (tmp_path / "x").exists()
    finally:
        for window in list(desktop.window.detail_windows.values()):
            window.close()
        berthd_with_busybox.docker("rm", "-f", name, check=False)


def test_tag_then_push_to_the_local_registry_with_progress(qtbot, desktop, berthd_with_busybox, registry) -> None:
    page = page_of(desktop)
    repo = f"{registry.domain}/gui/{unique('busybox')}"
    select_image(qtbot, page, "busybox:latest")
    page.show_tag()
    tag_dialog = page.dialog
    assert isinstance(tag_dialog, TagDialog)
    tag_dialog.reference.setText("has space:1")
    tag_dialog.tag_button.click()
    assert tag_dialog.task is None and "without spaces" in tag_dialog.error.text()
    tag_dialog.reference.setText("UPPER/Case:1")  # the engine refuses it: its words, inline, one line
    tag_dialog.tag_button.click()
    run_async(qtbot, tag_dialog.task)
    assert tag_dialog.error.isVisibleTo(tag_dialog) and "\n" not in tag_dialog.error.text()
    assert tag_dialog.error.text() and tag_dialog.isVisible()
    tag_dialog.reference.setText(f"{repo}:v1")
    tag_dialog.tag_button.click()
    run_async(qtbot, tag_dialog.task)
    assert not tag_dialog.error.isVisibleTo(tag_dialog)
    try:
        select_image(qtbot, page, f"{repo}:v1")
        page.show_push()
        push = page.dialog
        assert isinstance(push, PushDialog)
        shown = [push.reference.itemText(i) for i in range(push.reference.count())]
        assert f"{repo}:v1" in shown and "busybox:latest" in shown
        push.reference.setCurrentText(f"{repo}:v1")
        push.push_button.click()
        assert push.task is not None
        run_async(qtbot, push.task)
        assert push.status.text() == f"Pushed {repo}:v1"
        layers = push.layers.layers()
        assert len(layers) >= 2  # the layer and the config
        assert all(status in ("Pushed", "Layer already exists") and value == maximum
                   for status, value, maximum in layers.values())
        path = repo.removeprefix(registry.domain + "/")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{registry.url}/v2/{path}/tags/list", timeout=5) as resp:
            assert json.load(resp)["tags"] == ["v1"]
    finally:
        berthd_with_busybox.docker("rmi", f"{repo}:v1", check=False)


def test_push_error_is_one_line(qtbot, desktop, berthd_with_busybox) -> None:
    page = page_of(desktop)
    push = PushDialog(desktop.client, desktop.runner, ["nosuch-image:1"], page)
    push.push_button.click()
    run_async(qtbot, push.task)
    assert push.status.text().startswith("Push of nosuch-image:1 failed: ") and "\n" not in push.status.text()
    run_async(qtbot, eventually(lambda: desktop.window.banner.text.startswith("Push nosuch-image:1: "), 5, "banner"))


def test_delete_warns_about_users_then_forces(qtbot, desktop, berthd_with_busybox) -> None:
    source, user, image = unique(), unique(), f"{unique()}:1"
    berthd_with_busybox.docker("run", "--name", source, "busybox", "sh", "-c", "echo data > /made-here")
    berthd_with_busybox.docker("commit", source, image)
    berthd_with_busybox.docker("create", "--name", user, image, "true")
    page = page_of(desktop)
    questions: list[str] = []
    try:
        select_image(qtbot, page, image)
        run_async(qtbot, eventually(lambda: page.images.users(page.selected_images()[0]) == (user,), 5, "users"))
        page.confirm = lambda question: questions.append(question) is not None  # records, answers No
        page.delete_button.click()
        assert questions == [f"{image} is used by 1 container: {user} — delete anyway (force)?"]
        assert berthd_with_busybox.docker("image", "inspect", image, check=False).returncode == 0
        page.confirm = lambda question: True
        page.delete_button.click()
        run_async(qtbot, eventually(lambda: not any(image in r.tags for r in page.images.rows), 10, "deleted"))
        assert berthd_with_busybox.docker("image", "inspect", image, check=False).returncode != 0
        assert not desktop.window.banner.text
    finally:
        berthd_with_busybox.docker("rm", "-f", source, user, check=False)
        berthd_with_busybox.docker("rmi", "-f", image, check=False)


def test_delete_of_an_unused_image_asks_plainly(qtbot, desktop, berthd_with_busybox) -> None:
    source, image = unique(), f"{unique()}:1"
    berthd_with_busybox.docker("run", "--name", source, "busybox", "sh", "-c", "echo > /x")
    berthd_with_busybox.docker("commit", source, image)
    berthd_with_busybox.docker("rm", source)
    page = page_of(desktop)
    questions: list[str] = []
    try:
        select_image(qtbot, page, image)
        page.confirm = lambda question: not questions.append(question)
        page.delete_button.click()
        assert questions == [f"Delete {image}?"]
        run_async(qtbot, eventually(lambda: not any(image in r.tags for r in page.images.rows), 10, "deleted"))
    finally:
        berthd_with_busybox.docker("rmi", "-f", image, check=False)


def test_history_lists_the_layers(qtbot, desktop, berthd_with_busybox) -> None:
    page = page_of(desktop)
    select_image(qtbot, page, "busybox:latest")
    page.show_history()
    dialog = page.dialog
    assert isinstance(dialog, HistoryDialog)
    run_async(qtbot, dialog.task)
    cli = berthd_with_busybox.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "busybox").stdout
    expected = cli.splitlines()
    assert dialog.layers.topLevelItemCount() == len(expected) >= 1
    assert [dialog.layers.topLevelItem(i).text(2) for i in range(len(expected))] == expected
    assert dialog.layers.topLevelItem(0).text(1).endswith("ago")
    assert dialog.status.text().startswith(f"{len(expected)} entries")


def test_pull_dialog_shows_each_layers_progress(qtbot, desktop, berthd_with_busybox, registry) -> None:
    source, image = unique(), f"{registry.domain}/gui/{unique('pulled')}:1"
    berthd_with_busybox.docker("run", "--name", source, "busybox", "sh", "-c", "echo new > /layer")
    berthd_with_busybox.docker("commit", source, image)
    berthd_with_busybox.docker("rm", source)
    berthd_with_busybox.docker("push", image)
    berthd_with_busybox.docker("rmi", image)  # the committed layer goes with it; busybox's stays
    page = page_of(desktop)
    try:
        page.show_pull()
        dialog = page.pull_dialog
        dialog.reference.setText(image)
        dialog.pull_button.click()
        run_async(qtbot, eventually(lambda: dialog.pull_button.isEnabled(), 30, "the pull"))
        assert dialog.status.text() == f"Pulled {image}"
        statuses = sorted(status for status, value, maximum in dialog.layers.layers().values() if value == maximum)
        assert statuses == ["Already exists", "Pull complete"]
        run_async(qtbot, eventually(lambda: any(image in r.tags for r in page.images.rows), 5, "the image"))
    finally:
        berthd_with_busybox.docker("rmi", "-f", image, check=False)
