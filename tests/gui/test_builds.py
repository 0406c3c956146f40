"""Builds from the desktop app against a real berthd (offscreen): the Build dialog streams the output and lists
the steps (CACHED on a rebuild), the image appears, failures, build args, .dockerignore and cancel reach the real
build; the Builds page keeps the history; the Pull dialog searches a registry on 127.0.0.1 (never the internet);
long pulls and builds notify through the tray. The history, step tracking and the model are tested without windows.
"""

from __future__ import annotations

import io
import json
import secrets
import socket
import tarfile
from pathlib import Path

import pytest

from app.build_history import (
    MAX_OUTPUT_LINES,
    MAX_RECORDS,
    BuildHistory,
    BuildRecord,
    BuildRequest,
    BuildResult,
    StepState,
    StepTracker,
)
from app.dialogs.build import BuildDialog, write_context
from app.views.builds_page import BuildsModel
from tests.fixtures.registry import LoopbackServer, RecordedRequest, send_bytes
from tests.gui.conftest import eventually, run_async

pytestmark = pytest.mark.gui


class MemoryText:
    """A TextStore in memory."""

    def __init__(self, text: str = "") -> None:
        self.text = text

    def load(self) -> str:
        return self.text

    def save(self, text: str) -> None:
        self.text = text


def record(tag: str, result: BuildResult = BuildResult.SUCCEEDED, started: float = 1_700_000_000.0,
           message: str = "") -> BuildRecord:
    return BuildRecord(BuildRequest("/src/app", tags=(tag,)), started, 2.5, result, message, 1, 3)


# -- without a daemon ---------------------------------------------------------------------------------------


def test_step_tracker_follows_steps_cache_hits_and_the_end() -> None:
    now = [0.0]
    tracker = StepTracker(clock=lambda: now[0])
    tracker.feed("Step 1/3 : FROM busybox\n ---> abc\nStep 2/3 : RUN ech")
    assert [(s.number, s.instruction, s.state) for s in tracker.steps] == [(1, "FROM busybox", StepState.RUNNING)]
    now[0] = 1.5
    changed = tracker.feed("o hi\n ---> Using cache\n ---> def\nStep 3/3 : CMD sh\n")
    assert [s.number for s in changed] == [1, 2, 2, 2, 3]  # step 2: started, cache hit, ended
    now[0] = 4.0
    assert tracker.finish(StepState.FAILED) is tracker.steps[2]
    assert [(s.instruction, s.state, s.duration) for s in tracker.steps] == [
        ("FROM busybox", StepState.DONE, 1.5), ("RUN echo hi", StepState.CACHED, 0.0),
        ("CMD sh", StepState.FAILED, 2.5)]
    assert (tracker.cached, tracker.total) == (1, 3)


def test_history_is_newest_first_capped_and_keeps_the_output_tail(tmp_path: Path) -> None:
    store = MemoryText()
    history = BuildHistory(store, tmp_path / "logs")
    first = record("first:1")
    history.add(first, "".join(f"line {n}\n" for n in range(MAX_OUTPUT_LINES + 10)))
    output = history.output(first).splitlines()
    assert len(output) == MAX_OUTPUT_LINES and output[0] == "line 10"
    for n in range(MAX_RECORDS):
        history.add(record(f"app:{n}"), f"output {n}\n")
    records = history.records()
    assert len(records) == MAX_RECORDS and records[0].request.tags == (f"app:{MAX_RECORDS - 1}",)
    assert first.id not in {r.id for r in records} and history.output(first) == ""
    assert len(list((tmp_path / "logs").iterdir())) == MAX_RECORDS
    assert history.output(records[0]) == f"output {MAX_RECORDS - 1}\n"


def test_history_skips_malformed_entries(tmp_path: Path) -> None:
    good = record("good:1")
    bad_id = {**good.to_json(), "id": "../../etc/passwd"}
    store = MemoryText(json.dumps([{"id": "x"}, bad_id, good.to_json(), 7]))
    assert BuildHistory(store, tmp_path).records() == [good]
    assert BuildHistory(MemoryText("not json"), tmp_path).records() == []


def test_builds_model_passes_the_model_tester(qtmodeltester) -> None:
    model = BuildsModel()
    qtmodeltester.check(model)
    failed = record("app:2", BuildResult.FAILED, 1_700_000_100.0, "The command '/bin/sh -c exit 3' returned 3")
    model.set_rows([failed, record("app:1")])
    qtmodeltester.check(model)
    assert [model.index(0, c).data() for c in (0, 1, 3, 4, 5)] == [
        "app:2", "/src/app", "2.5 s", "failed: The command '/bin/sh -c exit 3' returned 3", "1/3"]
    model.set_rows([record("app:3", BuildResult.CANCELLED), failed])
    qtmodeltester.check(model)
    assert sorted(model.index(r, 4).data() for r in range(2)) == ["cancelled", failed.outcome]


def test_context_honours_dockerignore_and_an_outside_dockerfile(tmp_path: Path) -> None:
    folder = tmp_path / "ctx"
    (folder / "logs").mkdir(parents=True)
    (folder / "keep.txt").write_text("keep")
    (folder / "secret.txt").write_text("secret")
    (folder / "logs" / "a.log").write_text("log")
    (folder / ".dockerignore").write_text("secret.txt\nlogs\nDockerfile\n")
    (folder / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "Other.Dockerfile").write_text("FROM busybox\nCMD true\n")
    out = io.BytesIO()
    assert write_context(BuildRequest(str(folder)), out) == "Dockerfile"
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert sorted(tar.getnames()) == [".dockerignore", "Dockerfile", "keep.txt"]
    out = io.BytesIO()
    name = write_context(BuildRequest(str(folder), str(tmp_path / "Other.Dockerfile")), out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert name.startswith(".dockerfile.") and name in tar.getnames()
        member = tar.extractfile(name)
        assert member is not None and member.read() == b"FROM busybox\nCMD true\n"


# -- against berthd -----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    """The build outputs (AppDataLocation) go under the test's temp directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def tag(berthd_with_busybox):
    name = f"gui-build-{secrets.token_hex(4)}:1"
    yield name
    berthd_with_busybox.docker("rmi", "-f", name, check=False)


def dockerfile(folder: Path, text: str) -> BuildRequest:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(text)
    return BuildRequest(str(folder))


def finish(qtbot, dialog: BuildDialog, timeout: float = 60) -> BuildRecord:
    run_async(qtbot, eventually(lambda: dialog.record is not None, timeout, "the build's end"), timeout + 5)
    assert dialog.record is not None
    return dialog.record


def steps(dialog: BuildDialog) -> list[tuple[str, str, str]]:
    items = [dialog.steps.topLevelItem(n) for n in range(dialog.steps.topLevelItemCount())]
    return [(item.text(0), item.text(1), item.text(2)) for item in items if item is not None]


@pytest.mark.root
@pytest.mark.network
def test_build_streams_lists_steps_and_rebuild_marks_cached(qtbot, desktop, berthd_with_busybox, tag,
                                                            tmp_path) -> None:
    token = secrets.token_hex(4)
    run = f"RUN echo first-{token} && sleep 2 && echo second-{token} | tee /greeting"
    request = dockerfile(tmp_path / "app", f'FROM busybox\n{run}\nCMD ["cat", "/greeting"]\n')
    page = desktop.window.builds_page
    dialog = page.new_build()
    dialog.set_request(BuildRequest(request.folder, tags=(tag,)))
    dialog.start()
    run_async(qtbot, eventually(lambda: f"first-{token}" in dialog.output.toPlainText().splitlines(), 30,
                                "streamed output"))
    assert dialog.running and f"second-{token}" not in dialog.output.toPlainText().splitlines()  # it streams
    assert steps(dialog)[-1][2] == "running"
    built = finish(qtbot, dialog)
    assert built.result is BuildResult.SUCCEEDED and built.steps == 3
    assert steps(dialog) == [("1/3", "FROM busybox", "done"),
                             ("2/3", run, "done"),
                             ("3/3", 'CMD ["cat", "/greeting"]', "done")]
    assert all(dialog.steps.topLevelItem(n).text(3).endswith(" s") for n in range(3))
    assert f"Successfully tagged {tag}" in dialog.output.toPlainText()
    assert berthd_with_busybox.docker("run", "--rm", tag).stdout.strip() == f"second-{token}"
    run_async(qtbot, eventually(lambda: any(tag in row.tags for row in desktop.live.images.rows), 5, "Images page"))
    assert [r.id for r in page.builds.rows] == [built.id]
    assert page.builds.index(0, 4).data() == "succeeded"

    page.select(lambda row: isinstance(row, BuildRecord) and row.id == built.id)
    assert f"Successfully tagged {tag}" in page.output.toPlainText()  # the stored output of the selected build
    again = page.rebuild_selected()
    assert again is not None and again is not dialog
    rebuilt = finish(qtbot, again)
    assert rebuilt.result is BuildResult.SUCCEEDED and rebuilt.cached == 2
    assert [state for _, _, state in steps(again)] == ["done", "CACHED", "CACHED"]
    assert {r.id for r in page.builds.rows} == {built.id, rebuilt.id}
    assert desktop.window.builds_page.history.records()[0].id == rebuilt.id  # newest first
    rows = {page.builds.index(r, 5).data() for r in range(2)}
    assert rows == {"0/3", "2/3"}


@pytest.mark.root
@pytest.mark.network
def test_failing_run_shows_the_error_and_is_recorded_failed(qtbot, desktop, berthd_with_busybox, tag,
                                                            tmp_path) -> None:
    request = dockerfile(tmp_path / "bad", "FROM busybox\nRUN echo about-to-fail && exit 3\nCMD true\n")
    dialog = desktop.window.builds_page.new_build(BuildRequest(request.folder, tags=(tag,)), start=True)
    failed = finish(qtbot, dialog)
    assert failed.result is BuildResult.FAILED and "non-zero code: 3" in failed.message
    assert dialog.error.isVisibleTo(dialog) and dialog.error.text() == f"Error: {failed.message}"
    assert "\n" not in failed.message and "Traceback" not in dialog.output.toPlainText()
    assert "about-to-fail" in dialog.output.toPlainText()
    assert steps(dialog)[-1][2] == "failed" and len(steps(dialog)) == 2
    page = desktop.window.builds_page
    assert page.builds.rows[0].outcome == f"failed: {failed.message}"
    assert desktop.window.banner.text.startswith(f"Build {tag}: ")
    assert berthd_with_busybox.docker("image", "inspect", tag, check=False).returncode != 0
    assert berthd_with_busybox.docker("version").returncode == 0


@pytest.mark.root
@pytest.mark.network
def test_form_errors_are_shown_inline(qtbot, desktop, tmp_path) -> None:
    dialog = desktop.window.builds_page.new_build()
    dialog.folder.setText(str(tmp_path / "missing"))
    dialog.start()
    assert dialog.form_error.text() == f"{tmp_path / 'missing'} is not a folder" and dialog.record is None
    (tmp_path / "empty").mkdir()
    dialog.folder.setText(str(tmp_path / "empty"))
    dialog.start()
    assert dialog.form_error.text() == f"There is no Dockerfile at {tmp_path / 'empty' / 'Dockerfile'}"
    dockerfile(tmp_path / "empty", "FROM busybox\n")
    dialog.add_arg("", "orphan value")
    dialog.start()
    assert dialog.form_error.text().startswith("Build arg row 1: ") and not dialog.running


@pytest.mark.root
@pytest.mark.network
def test_build_args_reach_the_build(qtbot, desktop, berthd_with_busybox, tag, tmp_path) -> None:
    request = dockerfile(tmp_path / "args", 'FROM busybox\nARG GREETING\nRUN echo "greeting=$GREETING" > /g\n'
                                            'CMD ["cat", "/g"]\n')
    dialog = desktop.window.builds_page.new_build(BuildRequest(request.folder, tags=(tag,)))
    dialog.add_arg("GREETING", "hello from the form")
    dialog.no_cache.setChecked(True)
    dialog.start()
    assert finish(qtbot, dialog).result is BuildResult.SUCCEEDED
    assert berthd_with_busybox.docker("run", "--rm", tag).stdout.strip() == "greeting=hello from the form"
    assert desktop.window.builds_page.history.records()[0].request.build_args == (("GREETING", "hello from the form"),)


@pytest.mark.root
@pytest.mark.network
def test_dockerignore_is_honoured(qtbot, desktop, berthd_with_busybox, tag, tmp_path) -> None:
    request = dockerfile(tmp_path / "ignore", 'FROM busybox\nCOPY . /ctx\nCMD ["ls", "-a", "/ctx"]\n')
    folder = Path(request.folder)
    (folder / "keep.txt").write_text("keep")
    (folder / "secret.txt").write_text("secret")
    (folder / ".dockerignore").write_text("secret.txt\n")
    dialog = desktop.window.builds_page.new_build(BuildRequest(request.folder, tags=(tag,)), start=True)
    assert finish(qtbot, dialog).result is BuildResult.SUCCEEDED
    listed = berthd_with_busybox.docker("run", "--rm", tag).stdout.split()
    assert "keep.txt" in listed and "Dockerfile" in listed and "secret.txt" not in listed


@pytest.mark.root
@pytest.mark.network
def test_cancel_stops_the_build(qtbot, desktop, berthd_with_busybox, tag, tmp_path) -> None:
    token = secrets.token_hex(4)
    request = dockerfile(tmp_path / "slow", f"FROM busybox\nRUN echo slow-{token} && sleep 60\n")
    dialog = desktop.window.builds_page.new_build(BuildRequest(request.folder, tags=(tag,)), start=True)
    run_async(qtbot, eventually(lambda: f"slow-{token}" in dialog.output.toPlainText(), 30, "the slow step"))
    dialog.cancel_button.click()
    cancelled = finish(qtbot, dialog, 15)
    assert cancelled.result is BuildResult.CANCELLED and cancelled.duration < 30
    assert steps(dialog)[-1][2] == "cancelled" and not dialog.cancel_button.isEnabled()
    assert desktop.window.builds_page.builds.rows[0].outcome == "cancelled"
    assert berthd_with_busybox.docker("image", "inspect", tag, check=False).returncode != 0
    assert not desktop.window.banner.text  # a cancel is not an error


@pytest.mark.root
@pytest.mark.network
def test_long_build_and_pull_notify_through_the_tray(qtbot, desktop, berthd_with_busybox, registry, tag,
                                                     tmp_path) -> None:
    request = dockerfile(tmp_path / "note", "FROM busybox\nCMD true\n")
    dialog = desktop.window.builds_page.new_build(BuildRequest(request.folder, tags=(tag,)))
    dialog.notify_after = 0  # every build is "long"
    dialog.start()
    assert finish(qtbot, dialog).result is BuildResult.SUCCEEDED
    run_async(qtbot, eventually(lambda: ("Build finished", f"Built {tag} ({dialog.record.image_id[7:19]})")
                                in desktop.tray.notifications, 5, "the build notice"))
    pull = desktop.window.images_page.pull_dialog
    pull.notify_after = 0
    reference = f"{registry.domain}/fixture/busybox:latest"
    pull.start(reference)
    run_async(qtbot, eventually(lambda: ("Pull finished", f"Pulled {reference}") in desktop.tray.notifications, 30,
                                "the pull notice"))


def search_service(handler, request: RecordedRequest) -> None:
    results = [{"name": "library/busybox", "description": "Busybox base image.\nSecond line.", "star_count": 3100,
                "is_official": True, "is_automated": False},
               {"name": "someone/busybox-tools", "description": "", "star_count": 4, "is_official": False}]
    if request.path.startswith("/v1/search?"):
        send_bytes(handler, 200, json.dumps({"num_results": 2, "query": "busybox", "results": results}).encode(),
                   {"Content-Type": "application/json"})
    else:
        send_bytes(handler, 404)


@pytest.mark.root
@pytest.mark.network
def test_pull_dialog_search_shows_results_and_fills_the_reference(qtbot, desktop) -> None:
    # The engine searches Docker Hub unless the term names a registry: this one is on 127.0.0.1.
    pull = desktop.window.images_page.pull_dialog
    with LoopbackServer(search_service) as server:
        pull.search(f"{server.domain}/busybox")
        run_async(qtbot, eventually(lambda: pull.results.topLevelItemCount() == 2, 10, "the results"))
        assert "/v1/search?q=busybox" in server.requests[0].path
    rows = [[pull.results.topLevelItem(r).text(c) for c in range(4)] for r in range(2)]
    assert rows == [["library/busybox", "Busybox base image.", "3100", "OFFICIAL"],
                    ["someone/busybox-tools", "", "4", ""]]
    assert not pull.search_status.isVisibleTo(pull)
    pull.results.setCurrentItem(pull.results.topLevelItem(1))
    assert pull.reference.text() == "someone/busybox-tools"


@pytest.mark.root
@pytest.mark.network
def test_search_error_is_one_line_and_the_dialog_still_pulls(qtbot, desktop, registry) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on: the search cannot connect
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pull = desktop.window.images_page.pull_dialog
    pull.search(f"127.0.0.1:{port}/busybox")
    run_async(qtbot, eventually(lambda: pull.search_status.text().startswith("Search failed: "), 30, "the error"))
    assert "\n" not in pull.search_status.text() and "Traceback" not in pull.search_status.text()
    assert not pull.results.isVisibleTo(pull) and pull.search_button.isEnabled()
    reference = f"{registry.domain}/fixture/busybox:latest"
    pull.reference.setText(reference)
    pull.pull_button.click()
    run_async(qtbot, eventually(lambda: pull.status.text() == f"Pulled {reference}", 30, "the pull"))
    assert any(reference in row.tags for row in desktop.live.images.rows)
