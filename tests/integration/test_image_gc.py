"""Image removal and prune after builds, as dockerd does them (``DOCKER_BUILDKIT=0 docker build`` against berthd):
``docker rmi`` deletes the unnamed parents of the image too (each reported and published as a ``delete`` event)
unless ``--no-prune``, or a parent is used by a container, named or has other children; an intermediate image
addressed by ID cannot be removed; ``docker image prune`` keeps the build cache (intermediate images are not
dangling) and ``prune -a`` keeps the parents of the images it keeps."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.berthd import Berthd

pytestmark = [pytest.mark.root, pytest.mark.network]

DOCKERFILE = "FROM busybox\nRUN echo {marker} > /marker\nCOPY f /f\nLABEL step=three\n"


@pytest.fixture
def tag(berthd_with_busybox: Berthd, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A unique image name, built with the classic builder; its images and containers are removed afterwards."""
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    name = f"gc-{secrets.token_hex(4)}"
    yield name
    d = berthd_with_busybox
    d.docker("rm", "-f", f"{name}-c", check=False)
    d.docker("rmi", "-f", f"{name}:latest", f"{name}:v2", check=False)
    d.docker("image", "prune", "-f", check=False)


def build(d: Berthd, path: Path, tag: str, marker: str = "one") -> str:
    """Build DOCKERFILE in ``path`` as ``tag``; returns the build output."""
    path.mkdir(exist_ok=True)
    (path / "Dockerfile").write_text(DOCKERFILE.format(marker=marker))
    (path / "f").write_text(f"file {marker}\n")
    result = d.docker("build", "-t", tag, str(path))
    return result.stdout + result.stderr


def chain(d: Berthd, image: str) -> list[str]:
    """The IDs of ``image`` and its parents built here, newest first, up to busybox (left out)."""
    base = d.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    ids = []
    current = d.docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
    while current and current != base:
        ids.append(current)
        current = d.docker("image", "inspect", "-f", "{{.Parent}}", current).stdout.strip()
    return ids


def all_images(d: Berthd) -> set[str]:
    return set(d.docker("images", "-a", "-q", "--no-trunc").stdout.split())


def test_rmi_deletes_unnamed_parents_and_reports_each(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    build(d, tmp_path / "ctx", tag)
    ids = chain(d, tag)
    assert len(ids) == 3 and set(ids) <= all_images(d)
    since = f"{time.time():.3f}"
    out = d.docker("rmi", tag).stdout
    assert out.splitlines() == [f"Untagged: {tag}:latest", *(f"Deleted: {i}" for i in ids)]
    assert not set(ids) & all_images(d)
    events = d.docker("events", "--since", since, "--until", f"{time.time() + 0.5:.3f}", "--filter", "type=image",
                      "--filter", "event=delete", "--format", "{{.ID}}").stdout.split()
    assert events == ids
    assert d.docker("image", "inspect", "busybox").returncode == 0


def test_rmi_no_prune_keeps_parents(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    build(d, tmp_path / "ctx", tag)
    ids = chain(d, tag)
    out = d.docker("rmi", "--no-prune", tag).stdout
    assert out.splitlines() == [f"Untagged: {tag}:latest", f"Deleted: {ids[0]}"]
    assert set(ids[1:]) <= all_images(d)
    # The parent left is now dangling (no name, no child): prune removes it and its own unnamed parent.
    pruned = d.docker("image", "prune", "-f").stdout
    assert all(f"deleted: {i}" in pruned for i in ids[1:])
    assert not set(ids) & all_images(d)


def test_parent_used_by_a_container_is_kept(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    build(d, tmp_path / "ctx", tag)
    ids = chain(d, tag)
    d.docker("create", "--name", f"{tag}-c", ids[1], "true")
    out = d.docker("rmi", tag).stdout
    assert out.splitlines() == [f"Untagged: {tag}:latest", f"Deleted: {ids[0]}"]
    assert set(ids[1:]) <= all_images(d)
    assert d.docker("image", "prune", "-f").stdout.count("deleted: ") == 0  # used, and a parent: not dangling
    d.docker("rm", f"{tag}-c")
    pruned = d.docker("image", "prune", "-f").stdout
    assert all(f"deleted: {i}" in pruned for i in ids[1:])


def test_intermediate_image_cannot_be_removed_by_id(berthd_with_busybox: Berthd, tag: str,
                                                      tmp_path: Path) -> None:
    d = berthd_with_busybox
    build(d, tmp_path / "ctx", tag)
    ids = chain(d, tag)
    for args in (("rmi", ids[1]), ("rmi", "-f", ids[1])):
        failed = d.docker(*args, check=False)
        assert failed.returncode == 1
        assert failed.stderr.strip() == (f"Error response from daemon: conflict: unable to delete {ids[1][7:19]} "
                                         "(cannot be forced) - image has dependent child images")
    missing = d.docker("rmi", "no-such-image:gc", check=False)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert chain(d, tag) == ids  # nothing was removed; the daemon still answers


def test_untagging_a_base_keeps_it_for_its_children(berthd_with_busybox: Berthd, tag: str,
                                                     tmp_path: Path) -> None:
    d = berthd_with_busybox
    build(d, tmp_path / "ctx", tag)
    ids = chain(d, tag)
    d.docker("tag", ids[1], f"{tag}:v2")
    assert d.docker("rmi", f"{tag}:v2").stdout.splitlines() == [f"Untagged: {tag}:v2"]
    assert chain(d, tag) == ids


def test_prune_keeps_the_build_cache(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    build(d, tmp_path / "ctx", tag, marker="old")
    old = chain(d, tag)
    build(d, tmp_path / "ctx", tag, marker="new")  # the old image loses its name: dangling, with its steps
    new = chain(d, tag)
    assert not set(old) & set(new)
    pruned = d.docker("image", "prune", "-f").stdout
    assert all(f"deleted: {i}" in pruned for i in old) and not any(i in pruned for i in new)
    assert not set(old) & all_images(d) and set(new) <= all_images(d)
    output = build(d, tmp_path / "ctx", tag, marker="new")
    assert output.count("Using cache") == 3, output
    assert chain(d, tag) == new


def test_prune_all_keeps_parents_of_kept_images(berthd_with_busybox: Berthd, tag: str, tmp_path: Path) -> None:
    d = berthd_with_busybox
    build(d, tmp_path / "ctx", tag)
    ids = chain(d, tag)
    busybox = d.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    d.docker("tag", ids[2], f"{tag}:v2")
    d.docker("create", "--name", f"{tag}-c", tag, "true")
    try:
        out = d.docker("image", "prune", "-a", "-f").stdout
        # Named parents of the kept image lose their names (as with dockerd) but stay, as does every step.
        assert f"untagged: {tag}:v2" in out and "untagged: busybox:latest" in out and "deleted: " not in out
    finally:
        d.docker("tag", busybox, "busybox:latest")
    assert chain(d, tag) == ids


def test_copied_whiteout_names_are_whiteouts_in_the_image(berthd_with_busybox: Berthd, tag: str,
                                                          tmp_path: Path) -> None:
    """The context keeps ``.wh.*`` files as files (``COPY .wh.x`` finds it); once COPY or ADD has put them in
    a layer they are whiteouts, as with dockerd (its layer tar carries them by name)."""
    d = berthd_with_busybox
    (tmp_path / "wh").mkdir()
    (tmp_path / "wh" / ".wh.x").write_text("")
    (tmp_path / "opq").mkdir()
    (tmp_path / "opq" / ".wh..wh..opq").write_text("")
    (tmp_path / "opq" / "new").write_text("new\n")
    (tmp_path / ".wh.single").write_text("")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\n"
        "RUN mkdir -p /opt /srv && for f in x y; do echo $f > /opt/$f; echo $f > /srv/$f; done && touch /single\n"
        "COPY wh/ /opt/\nCOPY opq/ /srv/\nCOPY .wh.single /\n")
    d.docker("build", "-t", tag, str(tmp_path))
    listing = d.docker("run", "--rm", tag, "sh", "-c", "ls -A /opt; echo --; ls -A /srv; test -e /single || echo gone")
    assert listing.stdout.split() == ["y", "--", "new", "gone"]
