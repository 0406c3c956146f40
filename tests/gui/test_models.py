"""The Qt models pass pytest-qt's model tester, empty, filled and while updated in place. No windows."""

from __future__ import annotations

import pytest

from app.models.containers import ContainerRow, ContainersModel, ProjectGroup
from app.models.images import ImageRow, ImagesModel
from app.models.networks import NetworkRow, NetworksModel
from app.models.table import ROW_ROLE, SORT_ROLE
from app.models.volumes import VolumeRow, VolumesModel
from backend.api.types import Port

pytestmark = pytest.mark.gui


def container(ident: str, name: str, state: str = "running", project: str = "", status: str = "Up 1 minute",
              ports: tuple[Port, ...] = ()) -> ContainerRow:
    return ContainerRow(ident, name, "busybox", state, status, ports, 1_700_000_000, project,
                        name.split("-")[1] if project else "")


def test_containers_model_groups_compose_projects(qtmodeltester) -> None:
    model = ContainersModel()
    qtmodeltester.check(model)
    model.set_rows([
        container("a1", "shop-web-1", project="shop", ports=(Port(80, "tcp", "0.0.0.0", 8080),)),
        container("a2", "shop-db-1", project="shop", state="exited", status="Exited (1) 2 minutes ago"),
        container("b1", "old-job", state="exited", status="Exited (0) 1 hour ago"),
    ])
    qtmodeltester.check(model)
    assert model.rowCount() == 2
    group = model.index(0, 0)
    assert isinstance(model.data(group, ROW_ROLE), ProjectGroup)
    assert model.rowCount(group) == 2
    assert [model.index(0, c).data() for c in (1, 2, 3)] == ["compose (2)", "running 1/2", "8080→80"]
    assert model.index(0, 2, group).data() == "running"
    assert model.index(1, 2, group).data() == "exited (1)"
    assert model.index(1, 0).data() == "old-job"
    assert model.data(model.index(1, 4), SORT_ROLE) == 1_700_000_000


def test_containers_model_updates_in_place(qtmodeltester) -> None:
    model = ContainersModel()
    model.set_rows([container("a1", "shop-web-1", project="shop"), container("b1", "solo")])
    qtmodeltester.check(model)
    model.set_rows([container("a1", "shop-web-1", project="shop", state="exited", status="Exited (137) now"),
                    container("a3", "shop-cache-1", project="shop"), container("c1", "new")])
    qtmodeltester.check(model)
    assert [row.name for row in model.containers()] == ["shop-web-1", "shop-cache-1", "new"]
    assert model.find("new") is not None and model.find("solo") is None
    model.set_rows([])
    qtmodeltester.check(model)
    assert model.rowCount() == 0


@pytest.mark.parametrize(("model", "rows"), [
    (ImagesModel(), [ImageRow("sha256:" + "a" * 64, ("busybox:latest",), 4_000_000, 1_700_000_000, 1),
                     ImageRow("sha256:" + "b" * 64, (), 10, 1_600_000_000, -1)]),
    (VolumesModel(), [VolumeRow("data", "local", "/var/lib/berth/volumes/data/_data", "2024-01-01T00:00:00Z")]),
    (NetworksModel(), [NetworkRow("n" * 64, "bridge", "bridge", ("172.17.0.0/16",), 2)]),
])
def test_flat_models(qtmodeltester, model, rows) -> None:
    qtmodeltester.check(model)
    model.set_rows(rows)
    qtmodeltester.check(model)
    assert model.rowCount() == len(rows)
    model.set_rows(rows[1:])
    qtmodeltester.check(model)
    assert model.rows == rows[1:]
