"""The Linux bundle and the .deb, built for real: PyInstaller, dpkg, the installed daemon serving the API.

One module builds the PyInstaller bundle (cached under ``~/.cache/berth-tests/bundle-<hash>``, keyed by the
content of every tracked source, resource and packaging file), checks its programs from a clean PATH, builds
the .deb from it, installs it with ``dpkg -i`` + ``apt-get -f install``, runs the installed berthd (its
container monitor runs the frozen way) and removes the package, checking nothing is left behind.
"""

from __future__ import annotations

import grp
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.version import VERSION
from tests.fixtures.berthd import Berthd
from tests.fixtures.images import LayoutImage, push_with_skopeo
from tests.fixtures.registry import LocalRegistry

pytestmark = [pytest.mark.slow, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ("backend", "app", "resources", "packaging", "pyproject.toml")
PROGRAMS = ("berthd", "berth", "berth-runtime", "berth-desktop")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _bundle_key() -> str:
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", *INPUTS], capture_output=True,
                           check=True).stdout.split(b"\0")
    digest = hashlib.sha256()
    for name in sorted(f for f in files if f):
        path = ROOT / name.decode()
        if path.is_file():
            digest.update(name + b"\0" + path.read_bytes())
    digest.update(subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "PyInstaller", "--version"],
                                 capture_output=True, check=True).stdout)
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def bundle(test_cache_dir: Path) -> Path:
    """dist/berth of the current sources, built once per change of its inputs."""
    target = test_cache_dir / f"bundle-{_bundle_key()}"
    if not (target / "berth" / "berthd").exists():
        for old in test_cache_dir.glob("bundle-*"):
            shutil.rmtree(old, ignore_errors=True)
        building = test_cache_dir / "bundle-building"
        shutil.rmtree(building, ignore_errors=True)
        result = subprocess.run(["bash", str(ROOT / "packaging" / "build-bundle.sh"), str(building)],
                                capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        building.rename(target)
    return target / "berth"


def _run(program: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(program), *args], capture_output=True, text=True, timeout=120,
                          env=env or CLEAN_ENV)


def test_bundle_programs_run_from_a_clean_path(bundle: Path, tmp_path: Path) -> None:
    for program in PROGRAMS:
        assert (bundle / program).is_file(), f"{program} missing from the bundle"
    assert _run(bundle / "berth", "--version").stdout.startswith(f"Berth version {VERSION}")
    assert _run(bundle / "berthd", "--version").stdout.startswith(f"Berth version {VERSION}, build ")
    assert _run(bundle / "berth-runtime", "--version").stdout.startswith(f"berth-runtime version {VERSION}")
    result = _run(bundle / "berth-desktop", "--self-test",
                  env={**CLEAN_ENV, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-test passed" in result.stdout
    # the machine: its agent runs from the bundle, and the guest's berthd comes from the bundle's own wheels
    agent = _run(bundle / "berth", "--berth-helper", "machine-agent")
    assert agent.returncode == 2 and "usage: python -m backend.machine.agent NAME" in agent.stderr
    wheels = sorted(p.name for p in (bundle / "guest-wheels").glob("wheels-*/*.whl"))
    assert any(name.startswith(f"berth-{VERSION}-") for name in wheels) and any("aiohttp" in n for n in wheels)


@pytest.fixture(scope="module")
def installed_deb(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The .deb built from the bundle, installed; removed (dpkg -r) afterwards by the last test."""
    out = tmp_path_factory.mktemp("deb")
    built = subprocess.run(["bash", str(ROOT / "packaging" / "deb" / "build-deb.sh"), str(bundle), str(out)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    deb = Path(built.stdout.strip().splitlines()[-1])
    group_existed = _group_exists("berth")
    installed = subprocess.run(["dpkg", "-i", str(deb)], capture_output=True, text=True, timeout=600)
    if installed.returncode != 0:  # missing dependencies: let apt bring them, as a user would
        fixed = subprocess.run(["apt-get", "-f", "install", "-y", "-q"], capture_output=True, text=True,
                               timeout=1200, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        assert fixed.returncode == 0, installed.stderr + fixed.stdout[-2000:] + fixed.stderr
    try:
        yield deb
    finally:
        subprocess.run(["dpkg", "--purge", "berth"], capture_output=True, timeout=300)
        if group_existed and not _group_exists("berth"):
            subprocess.run(["groupadd", "--system", "berth"], check=False)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def test_deb_installs_units_and_serves_the_api(installed_deb: Path, busybox_image: LayoutImage,
                                              registry: LocalRegistry) -> None:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "berth"], capture_output=True, text=True)
    assert status.stdout == f"install ok installed {VERSION}"
    for program in PROGRAMS:
        assert os.path.realpath(f"/usr/bin/{program}") == f"/usr/lib/berth/{program}"
    assert _group_exists("berth")
    units = ["/lib/systemd/system/berthd.service", "/lib/systemd/system/berthd.socket"]
    if shutil.which("systemd-analyze"):
        verified = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
    else:
        print("systemd-analyze not installed: unit files not verified")
    assert Path("/usr/share/applications/berth-desktop.desktop").is_file()
    assert Path("/usr/share/icons/hicolor/256x256/apps/berth.png").is_file()
    assert _run(Path("/usr/bin/berthd"), "--version").stdout.startswith(f"Berth version {VERSION}")

    daemon = Berthd(program=Path("/usr/bin/berthd"))
    try:
        daemon.start(timeout=60)
        assert daemon.docker("version", "--format", "{{.Server.Version}}").stdout.strip() == VERSION
        push_with_skopeo(busybox_image, "fixture/busybox:latest", registry)
        daemon.docker("pull", "-q", f"{registry.domain}/fixture/busybox:latest")
        ran = daemon.docker("run", "--rm", f"{registry.domain}/fixture/busybox:latest", "echo", "from-the-deb")
        assert ran.stdout.strip() == "from-the-deb"
        listed = subprocess.run(["/usr/bin/berth", "ps", "-a", "--format", "{{.Names}}"], env=daemon.env,
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
    finally:
        daemon.cleanup()


def test_dpkg_remove_leaves_nothing_behind(installed_deb: Path) -> None:
    members = grp.getgrnam("berth").gr_mem
    removed = subprocess.run(["dpkg", "-r", "berth"], capture_output=True, text=True, timeout=300)
    assert removed.returncode == 0, removed.stderr
    for path in ("/usr/lib/berth", "/usr/bin/berthd", "/usr/bin/berth", "/lib/systemd/system/berthd.service",
                 "/lib/systemd/system/berthd.socket", "/usr/share/applications/berth-desktop.desktop",
                 "/run/berth/berth.sock"):
        assert not os.path.lexists(path), f"{path} left behind"
    assert _group_exists("berth") == bool(members)  # kept only while users are in it
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "berth"], capture_output=True, text=True).stdout
    assert "ok installed" not in status
