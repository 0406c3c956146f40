"""File browsing against a real berthd (offscreen): listings by exec and through the archive API, the browser
widget entering directories, uploads and downloads, odd names, volumes through a helper container."""

from __future__ import annotations

import secrets
import stat
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QModelIndex, QSettings
from PySide6.QtWidgets import QWidget

from app.actions import ActionRunner
from app.application import Desktop
from app.engine_session import EngineState
from app.file_listing import FileEntry, Listing, Strategy, list_by_archive, list_directory, parse_stat_output
from app.models.volumes import VolumeRow
from app.settings import Settings
from app.views.files_tab import HELPER_LABEL, FilesTab, VolumeFilesWindow, browse_volumes
from app.widgets.file_browser import FileBrowser, FileTreeModel, breadcrumbs
from backend.api.client import EngineClient
from tests.gui.conftest import eventually, run_async

pytestmark = [pytest.mark.gui, pytest.mark.root, pytest.mark.network]

SETUP = ("echo root:x:0:0:root:/root:/bin/sh > /etc/passwd; mkdir -p '/data/a dir' /data/sub/deeper; "
         "echo hello > '/data/a dir/it'\"'\"'s here.txt'; ln -s /etc/passwd /data/link; "
         "echo payload > /data/sub/deeper/f; sleep 600")


def name() -> str:
    return f"files-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def client(berthd_with_busybox, qloop) -> Iterator[EngineClient]:
    yield EngineClient(berthd_with_busybox.url)


@pytest.fixture(scope="module")
def box(berthd_with_busybox, qloop) -> Iterator[str]:
    """A running busybox container with /etc/passwd and a /data tree."""
    n = name()
    berthd_with_busybox.docker("run", "-d", "--name", n, "busybox", "sh", "-c", SETUP)
    berthd_with_busybox.docker("exec", n, "sh", "-c", "while [ ! -e /data/sub/deeper/f ]; do sleep 0.05; done")
    yield n
    berthd_with_busybox.docker("rm", "-f", n)


def names(listing: Listing) -> dict[str, object]:
    return {e.name: e for e in listing.entries}


def test_list_root_and_etc_by_exec(qtbot, client, box) -> None:
    root = run_async(qtbot, list_directory(client, box, "/"))
    assert root.strategy is Strategy.EXEC
    assert {"bin", "etc", "data", "proc"} <= set(names(root))
    assert names(root)["bin"].is_dir
    etc = run_async(qtbot, list_directory(client, box, "/etc"))
    passwd = names(etc)["passwd"]
    assert passwd.size == len("root:x:0:0:root:/root:/bin/sh\n") and passwd.mode_text == "-rw-r--r--"
    data = names(run_async(qtbot, list_directory(client, box, "/data")))
    assert data["link"].is_link and data["link"].link_target == "/etc/passwd"
    assert data["a dir"].is_dir and list(data)[:2] == ["a dir", "sub"]  # directories first
    spaced = names(run_async(qtbot, list_directory(client, box, "/data/a dir")))
    assert spaced["it's here.txt"].size == 6


def test_archive_listing_matches_exec(qtbot, client, box) -> None:
    by_exec = run_async(qtbot, list_directory(client, box, "/data"))
    by_archive = run_async(qtbot, list_by_archive(client, box, "/data"))
    assert by_archive.strategy is Strategy.ARCHIVE and not by_archive.truncated
    assert [(e.name, e.mode, e.link_target) for e in by_archive.entries] == \
           [(e.name, e.mode, e.link_target) for e in by_exec.entries]


def test_parse_stat_output_with_newlines_in_names_and_targets() -> None:
    out = (b"3/81a4/100/d/./new\nline/d/./new\nline\n"
           b"9/a1ff/100/d/./ln/'d/./ln' -> 'to\nwhere'\n"
           b"5/a1ff/100/d/./gnu/d/./gnu -> x -> y\n")
    entries = parse_stat_output(out, "d")
    assert [(e.name, e.link_target) for e in entries] == [("new\nline", ""), ("ln", "to\nwhere"), ("gnu", "x -> y")]


# -- the model, without windows ----------------------------------------------------------------------


def entry(name: str, kind: int = stat.S_IFREG, size: int = 0, target: str = "") -> FileEntry:
    return FileEntry(name, size, kind | 0o755, 1_700_000_000.0, target)


def test_tree_model_is_lazy_per_directory(qtmodeltester) -> None:
    model = FileTreeModel()
    qtmodeltester.check(model)
    asked: list[str] = []
    model.fetch_requested.connect(asked.append)
    model.show_root(Listing("/srv", (entry("app", stat.S_IFDIR), entry("empty", stat.S_IFDIR), entry("f", size=42),
                                     entry("l", stat.S_IFLNK, 3, "app")), Strategy.EXEC))
    assert [model.index(r, 0).data() for r in range(4)] == ["app", "empty", "f", "l"]
    assert [model.index(2, c).data() for c in (1, 2, 4)] == ["42B", "-rwxr-xr-x", ""]
    assert model.index(3, 4).data() == "app" and model.path_at(model.index(0, 0)) == "/srv/app"
    app = model.index(0, 0)
    assert model.hasChildren(app) and not model.hasChildren(model.index(2, 0)) and not model.hasChildren(
        model.index(3, 0))
    model.fetchMore(app)  # (the tester, attached since check(), may have fetched it already)
    model.fetchMore(app)
    assert asked.count("/srv/app") == 1 and not model.canFetchMore(app)  # asked once while loading
    qtmodeltester.check(model)
    model.set_children(Listing("/srv/app", (entry("main.py", size=7),), Strategy.ARCHIVE))
    qtmodeltester.check(model)
    assert model.rowCount(app) == 1 and model.index(0, 0, app).data() == "main.py"
    assert model.path_at(model.index(0, 0, app)) == "/srv/app/main.py"
    assert model.parent(model.index(0, 0, app)) == app
    model.set_children(Listing("/srv/empty", (), Strategy.EXEC))
    assert not model.hasChildren(model.index(1, 0))
    model.set_children(Listing("/srv/app", (entry("a"), entry("b")), Strategy.EXEC))  # refreshed in place
    qtmodeltester.check(model)
    assert model.rowCount(app) == 2
    model.set_children(Listing("/elsewhere", (entry("x"),), Strategy.EXEC))  # not shown: dropped
    model.show_root(Listing("/", (), Strategy.EXEC))
    qtmodeltester.check(model)
    assert model.rowCount() == 0 and model.root_path == "/" and model.path_at(QModelIndex()) == "/"


def test_fetch_failed_allows_asking_again(qtmodeltester) -> None:
    model = FileTreeModel()
    model.show_root(Listing("/", (entry("d", stat.S_IFDIR),), Strategy.EXEC))
    model.fetchMore(model.index(0, 0))
    assert not model.canFetchMore(model.index(0, 0))
    model.fetch_failed("/d")
    assert model.canFetchMore(model.index(0, 0))


def test_breadcrumbs() -> None:
    assert breadcrumbs("/", "/") == [("/", "/")]
    assert breadcrumbs("/etc/ssl", "/") == [("/", "/"), ("etc", "/etc"), ("ssl", "/etc/ssl")]
    assert breadcrumbs("/volume/a b", "/volume") == [("/volume", "/volume"), ("a b", "/volume/a b")]


# -- the widget against the daemon --------------------------------------------------------------------


def listed(qtbot, browser: FileBrowser, path: str) -> dict[str, FileEntry]:
    run_async(qtbot, eventually(lambda: browser.current == path and not browser.runner.busy, 20, f"listing {path}"))
    assert not browser.banner.text, browser.banner.text
    return {e.name: e for e in (browser.model.entry_at(browser.model.index(r, 0))
                                for r in range(browser.model.rowCount())) if e}


def row_of(browser: FileBrowser, name: str) -> QModelIndex:
    for r in range(browser.proxy.rowCount()):
        index = browser.proxy.index(r, 0)
        if index.data() == name:
            return index
    raise AssertionError(f"{name} not shown")


def test_browser_enters_directories_and_expands_lazily(qtbot, client, box) -> None:
    browser = FileBrowser(client, box)
    qtbot.addWidget(browser)
    browser.show()
    browser.open("/")
    assert {"bin", "data", "etc"} <= set(listed(qtbot, browser, "/"))
    assert "listed by exec" in browser.status.text() and not browser.buttons["Up"].isEnabled()
    browser.view.doubleClicked.emit(row_of(browser, "data"))
    assert {"a dir", "sub", "link"} <= set(listed(qtbot, browser, "/data"))
    assert browser.path_box.text() == "/data" and 'href="/data"' in browser.crumbs.text()
    sub = row_of(browser, "sub")
    browser.view.expand(sub)  # the view fetches the subdirectory's entries
    run_async(qtbot, eventually(lambda: browser.proxy.rowCount(sub) == 1, 20, "sub's entries"))
    assert browser.proxy.index(0, 0, sub).data() == "deeper"
    browser.view.doubleClicked.emit(row_of(browser, "link"))  # a symlink to a file: not a directory
    run_async(qtbot, eventually(lambda: browser.banner.text, 20, "the banner"))
    assert browser.banner.text == "List /data/link: /data/link is not a directory"
    browser.banner.clear()
    browser.crumbs.linkActivated.emit("/")
    listed(qtbot, browser, "/")
    browser.open("/no/such/dir")
    run_async(qtbot, eventually(lambda: browser.banner.text, 20, "the banner"))
    text = browser.banner.text
    assert text == "List /no/such/dir: /no/such/dir: no such file or directory"
    assert browser.current == "/"  # still showing what it showed


def test_upload_then_read_back_with_the_docker_cli(qtbot, client, box, berthd_with_busybox, tmp_path) -> None:
    local = tmp_path / "up it's.txt"
    local.write_text("uploaded from the desktop\n")
    folder = tmp_path / "tree"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "n.txt").write_text("nested")
    browser = FileBrowser(client, box)
    qtbot.addWidget(browser)
    browser.open("/data/a dir")
    listed(qtbot, browser, "/data/a dir")
    browser.upload([local, folder])
    run_async(qtbot, eventually(lambda: not browser.runner.busy, 20, "the upload"))
    assert not browser.banner.text, browser.banner.text
    names = listed(qtbot, browser, "/data/a dir")
    assert names["up it's.txt"].size == len("uploaded from the desktop\n") and names["tree"].is_dir
    docker = berthd_with_busybox.docker
    assert docker("exec", box, "cat", "/data/a dir/up it's.txt").stdout == "uploaded from the desktop\n"
    assert docker("exec", box, "cat", "/data/a dir/tree/inner/n.txt").stdout == "nested"
    assert docker("exec", box, "ls", "-ln", "/data/a dir/up it's.txt").stdout.split()[2:4] == ["0", "0"]


def test_download_a_file_and_a_directory(qtbot, client, box, tmp_path) -> None:
    browser = FileBrowser(client, box)
    qtbot.addWidget(browser)
    browser.download(["/etc/passwd", "/data"], tmp_path)
    run_async(qtbot, eventually(lambda: not browser.runner.busy, 20, "the download"))
    assert not browser.banner.text, browser.banner.text
    assert (tmp_path / "passwd").read_text() == "root:x:0:0:root:/root:/bin/sh\n"
    assert (tmp_path / "data" / "a dir" / "it's here.txt").read_text() == "hello\n"
    assert (tmp_path / "data" / "sub" / "deeper" / "f").read_text() == "payload\n"
    # an absolute link out of the chosen folder is not written
    assert not (tmp_path / "data" / "link").exists() and "skipped 1" in browser.status.text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "passwd"]


def test_stopped_container_is_listed_through_the_archive(qtbot, client, berthd_with_busybox) -> None:
    n = name()
    docker = berthd_with_busybox.docker
    docker("run", "--name", n, "busybox", "sh", "-c", "mkdir '/x y'; echo 12345 > \"/x y/q'uote\"")
    try:
        browser = FileBrowser(client, n)
        qtbot.addWidget(browser)
        browser.open("/x y")
        names = listed(qtbot, browser, "/x y")
        assert names["q'uote"].size == 6 and "listed by archive" in browser.status.text()
    finally:
        docker("rm", "-f", n)


def test_files_tab_and_volume_browser_in_the_app(qtbot, berthd_with_busybox, qloop, tmp_path) -> None:
    docker = berthd_with_busybox.docker
    tag = secrets.token_hex(4)
    volume, writer = f"files-vol-{tag}", f"files-w-{tag}"
    docker("run", "--name", writer, "-v", f"{volume}:/data", "busybox", "sh", "-c", "echo in-volume > /data/note")
    app = Desktop(berthd_with_busybox.url, Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)),
                  notify=False)
    app.start()
    try:
        run_async(qtbot, eventually(lambda: app.session.state is EngineState.RUNNING, 10, "the engine"))
        run_async(qtbot, eventually(lambda: app.live.containers.find(writer) is not None, 5, "the container"))
        detail = app.window.open_detail(app.live.containers.find(writer))
        tabs = detail.tabs
        files = next(tabs.widget(i) for i in range(tabs.count()) if tabs.tabText(i) == "Files")
        assert isinstance(files, FilesTab)
        tabs.setCurrentWidget(files)
        assert "bin" in listed(qtbot, files, "/")  # the container has exited: listed through the archive
        detail.close()

        page = app.window.pages["Volumes"]
        run_async(qtbot, eventually(lambda: any(r.name == volume for r in page.model.rows), 5, "the volume"))
        page.select(lambda r: isinstance(r, VolumeRow) and r.name == volume)
        page.browse_button.click()
        run_async(qtbot, eventually(lambda: page.findChildren(VolumeFilesWindow), 20, "the volume window"))
        window = page.findChildren(VolumeFilesWindow)[0]
        helper = window.helper
        labels = docker("inspect", "-f", "{{json .Config.Labels}}", helper).stdout
        assert HELPER_LABEL in labels and volume in labels
        names = listed(qtbot, window.browser, "/volume")
        assert names["note"].size == len("in-volume\n")
        window.browser.up()  # never above the volume
        assert window.browser.current == "/volume"
        window.close()
        run_async(qtbot, eventually(lambda: docker("inspect", helper, check=False).returncode != 0, 20,
                                    "the helper's removal"))
        assert docker("volume", "inspect", volume).returncode == 0  # the volume itself stays
    finally:
        run_async(qtbot, app.close())
        docker("rm", "-f", writer, check=False)
        docker("volume", "rm", volume, check=False)


def test_volume_browser_reports_a_missing_volume(qtbot, client, berthd_with_busybox) -> None:
    runner = ActionRunner()
    messages: list[str] = []
    runner.failed.connect(messages.append)
    parent = QWidget()
    qtbot.addWidget(parent)
    browse_volumes([VolumeRow("no-such-volume", "local", "", "")], client, runner, parent)
    run_async(qtbot, eventually(lambda: messages, 20, "the error"))
    assert messages[0].startswith("Browse volume no-such-volume: ") and "\n" not in messages[0]
    assert berthd_with_busybox.docker("version").returncode == 0
