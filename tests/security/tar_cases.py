"""The hostile tar entries of the corpus, each with what every channel must answer.

A case builds one tar (a layer, an archive for ``docker cp``, a build context) and says, per channel,
the error message substring expected, or ``None`` when the tar is accepted because everything in it
stays inside its target (``/abs`` names and symlinks are resolved inside the root as in a chroot).
Channels: ``layer`` (``docker load``, ``docker import`` and a pull from the registry apply it as an image
layer), ``cp`` (``docker cp -`` into a container's ``/``) and ``context`` (a ``docker build`` context).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from tests.security.hostile import (
    CLIMB,
    MARKER,
    SENTINEL,
    Tar,
    end_of_archive,
    gzip_zeros_tar,
    header,
    pax_entry,
    pax_record,
    zstd_zeros_tar,
)

SAME = "same as layer"
ESCAPES = "escapes"
OVERWRITE = "cannot overwrite"  # docker cp sends noOverwriteDirNonDir=true, as Docker refuses then


@dataclass(frozen=True)
class TarCase:
    id: str
    build: Callable[[], bytes]
    layer: str | None
    cp: str | None = SAME
    context: str | None = SAME
    core: bool = False
    """One of the representatives of each class that every channel tries (the rest: load and cp)."""

    def expect(self, channel: str) -> str | None:
        """The error substring expected on ``channel`` (``None``: accepted and confined)."""
        value = self.layer if channel == "layer" else getattr(self, channel)
        return self.layer if value == SAME else value


S = SENTINEL.lstrip("/")


def _truncated_data() -> bytes:
    data = Tar().file("big", b"x" * 5000).bytes()
    return data[:512 + 1000]


def _truncated_header() -> bytes:
    return Tar().file("a", b"a").file("b", b"b").bytes()[:1024 + 200]


def _sparse() -> bytes:
    return Tar(tarfile.GNU_FORMAT).raw(header(b"sparse", kind=b"S", size=0)).raw(end_of_archive()).bytes()


def _huge_pax_size() -> bytes:
    return Tar().raw(pax_entry(pax_record("size", b"99999999999999999999"))).raw(header(b"f")).raw(
        end_of_archive()).bytes()


def _huge_pax_path() -> bytes:
    return Tar().raw(pax_entry(pax_record("path", b"a/" * (1 << 20)))).raw(header(b"f")).raw(
        end_of_archive()).bytes()


def _pax_path_escape() -> bytes:
    return Tar().raw(pax_entry(pax_record("path", f"{CLIMB}{S}/pax".encode()))).raw(header(b"innocent")).raw(
        end_of_archive()).bytes()


def _global_pax_path() -> bytes:
    return Tar().raw(pax_entry(pax_record("path", b"../escape"), kind=b"g")).raw(header(b"f")).raw(
        end_of_archive()).bytes()


def _gnu_longname(length: int) -> bytes:
    name = b"d/" * (length // 2) + b"f"
    return Tar().raw(header(b"././@LongLink", kind=b"L", size=len(name) + 1) + name + b"\0" + b"\0" * (
        (-(len(name) + 1)) % 512)).raw(header(b"short")).raw(end_of_archive()).bytes()


def _deep_tree() -> bytes:
    tar = Tar()
    path = ""
    for _ in range(1500):
        path += "d/"
        tar.dir(path)
    return tar.file(path + "bottom").bytes()


def _many_entries() -> bytes:
    tar = Tar(tarfile.USTAR_FORMAT)
    for i in range(20_000):
        tar.file(f"many/{i}", b"")
    return tar.bytes()


CASES: list[TarCase] = [
    # traversal and absolute names
    TarCase("dotdot", lambda: Tar().file("../escape").bytes(), ESCAPES, core=True),
    TarCase("dotdot-deep", lambda: Tar().file(f"a/{CLIMB}{S}/escape").bytes(), ESCAPES),
    TarCase("dotdot-dir", lambda: Tar().dir(f"{CLIMB}{S}/newdir").bytes(), ESCAPES),
    TarCase("dotdot-symlink-name", lambda: Tar().symlink(f"../{CLIMB}{S}/evil", "/").bytes(), ESCAPES),
    TarCase("absolute-file", lambda: Tar().file(f"{SENTINEL}/escape").bytes(), None),
    TarCase("absolute-over-marker", lambda: Tar().file(MARKER, b"overwritten").bytes(), None, core=True),
    TarCase("pax-path-escape", _pax_path_escape, ESCAPES, core=True),
    # symlink escapes (resolved inside the root: accepted and confined)
    TarCase("symlink-abs-parent", lambda: Tar().symlink("s", SENTINEL).file("s/escape").bytes(), None, core=True),
    TarCase("symlink-rel-parent", lambda: Tar().symlink("s", f"{CLIMB}{S}").file("s/escape").bytes(), None),
    TarCase("symlink-to-root", lambda: Tar().symlink("root", "/").file(f"root/{S}/escape").bytes(), None),
    TarCase("symlink-chain", lambda: Tar().dir("x").symlink("x/up", "..").symlink("y", "x/up/x/up/x/up")
            .file(f"y/{S}/escape").bytes(), None, core=True),
    TarCase("symlink-then-file", lambda: Tar().symlink("m", MARKER).file("m", b"overwritten").bytes(), None, core=True),
    TarCase("symlink-then-dir", lambda: Tar().symlink("d", SENTINEL).dir("d", 0o777).bytes(), None, cp=OVERWRITE),
    TarCase("symlink-loop", lambda: Tar().symlink("a", "b").symlink("b", "a").file("a/x").bytes(),
            "symbolic links"),
    TarCase("symlink-dir-swap", lambda: Tar().dir("d").file("d/f").symlink("d", SENTINEL).file("d/f2").bytes(),
            None, cp=OVERWRITE),
    # hardlinks
    TarCase("hardlink-absolute", lambda: Tar().hardlink("h", MARKER).bytes(), "hardlink", core=True),
    TarCase("hardlink-dotdot", lambda: Tar().hardlink("h", f"{CLIMB}{MARKER.lstrip('/')}").bytes(), "hardlink",
            cp=ESCAPES),
    TarCase("hardlink-via-symlink", lambda: Tar().symlink("s", "/tmp").hardlink(
        "h", f"s/{MARKER.rsplit('/', 1)[1]}").bytes(), "hardlink", cp=ESCAPES, core=True),
    TarCase("hardlink-to-dir", lambda: Tar().dir("d").hardlink("h", "d").bytes(), "hardlink"),
    TarCase("hardlink-to-self", lambda: Tar().hardlink("h", "h").bytes(), "hardlink"),
    # whiteouts
    TarCase("whiteout-dotdot", lambda: Tar().file(".wh...").bytes(), "whiteout", core=True),
    TarCase("whiteout-empty", lambda: Tar().file("d/.wh.").bytes(), "whiteout"),
    TarCase("whiteout-as-dir", lambda: Tar().file("a/.wh.b/c").bytes(), "whiteout"),
    TarCase("opaque-at-root", lambda: Tar().file(".wh..wh..opq").bytes(), None, cp="whiteout", context=None),
    TarCase("opaque-escape", lambda: Tar().file(f"{CLIMB}{S}/.wh..wh..opq").bytes(), ESCAPES, core=True),
    TarCase("whiteout-escape", lambda: Tar().file(f"{CLIMB}{S}/.wh.etc").bytes(), ESCAPES),
    TarCase("overlay-xattr", lambda: Tar().dir("d").add(
        "d/x", pax={"SCHILY.xattr.trusted.overlay.opaque": "y"}).bytes(), "overlay"),
    # devices
    TarCase("device-mem", lambda: Tar().add("mem", tarfile.CHRTYPE, devmajor=1, devminor=1).bytes(), None,
            cp="device", context=None),
    TarCase("device-huge-major", lambda: Tar().add("dev", tarfile.BLKTYPE, devmajor=1 << 20).bytes(), "device",
            cp="device", core=True),
    TarCase("fifo", lambda: Tar().add("fifo", tarfile.FIFOTYPE).bytes(), None),
    # headers
    TarCase("pax-huge-size", _huge_pax_size, "truncated"),
    TarCase("pax-huge-path", _huge_pax_path, "header", core=True),
    TarCase("pax-global-path", _global_pax_path, "global"),
    TarCase("gnu-longname-huge", lambda: _gnu_longname(2 << 20), "header"),
    TarCase("name-too-long", lambda: Tar().file("n/" * 2100 + "f").bytes(), "long", core=True),
    TarCase("component-too-long", lambda: Tar().file("x" * 300).bytes(), "long"),
    TarCase("uid-huge", lambda: Tar().file("f", pax={"uid": "99999999999"}).bytes(), "out of range"),
    TarCase("sparse", _sparse, "sparse"),
    # duplicates and size
    TarCase("duplicate-file", lambda: Tar().file("f", b"one").file("f", b"two").bytes(), None, core=True),
    TarCase("dir-then-file", lambda: Tar().dir("p").file("p/inner").file("p", b"file").bytes(), None, cp=OVERWRITE),
    TarCase("file-then-dir", lambda: Tar().file("p", b"file").dir("p").file("p/inner").bytes(), None, cp=OVERWRITE),
    TarCase("deep-tree", _deep_tree, None, core=True),
    TarCase("many-entries", _many_entries, None),
    TarCase("zstd-bomb", lambda: zstd_zeros_tar(256 << 20), "ratio", core=True),
    TarCase("gzip-bomb", lambda: gzip_zeros_tar(64 << 20), "ratio", cp="ratio", context="ratio", core=True),
    # truncation and garbage
    TarCase("truncated-data", _truncated_data, "truncated", core=True),
    TarCase("truncated-header", _truncated_header, "truncated"),
    TarCase("not-a-tar", lambda: b"this is not a tar archive\n" * 40, "corrupt", core=True),
]
CORE = [case for case in CASES if case.core]
