"""Mount specs: dockerd's Linux parser cases (volume/mounts/linux_parser_test.go) and their messages."""

from __future__ import annotations

import pytest

from backend.engine.errors import InvalidParameter
from backend.engine.volumes.specs import (
    MountType,
    parse_bind,
    parse_mount,
    parse_volumes_from,
    tmpfs_data,
    validate_volume_name,
)

VALID = [
    "/home", "/home:/home", "/home:/something/else", "/with space", "/home:/with space", "relative:/absolute-path",
    "hostPath:/containerPath:ro", "/hostPath:/containerPath:rw", "/rw:/ro", "/hostPath:/containerPath:shared",
    "/hostPath:/containerPath:rshared", "/hostPath:/containerPath:slave", "/hostPath:/containerPath:rslave",
    "/hostPath:/containerPath:private", "/hostPath:/containerPath:rprivate", "/hostPath:/containerPath:ro,shared",
    "/hostPath:/containerPath:ro,slave", "/hostPath:/containerPath:ro,private", "/hostPath:/containerPath:ro,z,shared",
    "/hostPath:/containerPath:ro,Z,slave", "/hostPath:/containerPath:Z,ro,slave", "/hostPath:/containerPath:slave,Z,ro",
    "/hostPath:/containerPath:Z,slave,ro", "/hostPath:/containerPath:slave,ro,Z",
    "/hostPath:/containerPath:rslave,ro,Z", "/hostPath:/containerPath:ro,rshared,Z",
    "/hostPath:/containerPath:ro,Z,rprivate", "vol:/data:nocopy",
]

INVALID = {
    "": "invalid volume specification",
    "./": "mount path must be absolute",
    "../": "mount path must be absolute",
    "/:../": "mount path must be absolute",
    "/:path": "mount path must be absolute",
    ":": "invalid volume specification",
    "/tmp:": "invalid volume specification",
    ":test": "invalid volume specification",
    ":/test": "invalid volume specification",
    "tmp:": "invalid volume specification",
    ":test:": "invalid volume specification",
    "::": "invalid volume specification",
    ":::": "invalid volume specification",
    "/tmp:::": "invalid volume specification",
    ":/tmp::": "invalid volume specification",
    "/path:rw": "invalid volume specification",
    "/path:ro": "invalid volume specification",
    "/rw:rw": "invalid volume specification",
    "path:ro": "invalid volume specification",
    "/path:/path:sw": "invalid mode",
    "/path:/path:rwz": "invalid mode",
    "/path:/path:ro,rshared,rslave": "invalid mode",
    "/path:/path:ro,z,rshared,rslave": "invalid mode",
    "/path:shared": "invalid volume specification",
    "/path:slave": "invalid volume specification",
    "/path:private": "invalid volume specification",
    "name:/absolute-path:shared": "invalid volume specification",
    "name:/absolute-path:rshared": "invalid volume specification",
    "name:/absolute-path:slave": "invalid volume specification",
    "name:/absolute-path:rslave": "invalid volume specification",
    "name:/absolute-path:private": "invalid volume specification",
    "name:/absolute-path:rprivate": "invalid volume specification",
    "/tmp:tmp": "mount path must be absolute",
    "/tmp:/tmp4:foo": "invalid mode: foo",
    "/x:/": "destination can't be '/'",
    "/x:/a/../..": "destination can't be '/'",
}


@pytest.mark.parametrize("raw", VALID)
def test_docker_valid_binds_parse(raw: str) -> None:
    parse_bind(raw)


@pytest.mark.parametrize(("raw", "message"), sorted(INVALID.items()))
def test_docker_invalid_binds_give_dockers_errors(raw: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_bind(raw)


def test_full_messages_match_dockerd() -> None:
    with pytest.raises(InvalidParameter) as info:
        parse_bind("name:/absolute-path:shared")
    assert str(info.value) == ("invalid volume specification: 'name:/absolute-path:shared': invalid mount config for "
                               'type "volume": field BindOptions must not be specified')
    with pytest.raises(InvalidParameter) as info:
        parse_bind("/:path")
    assert str(info.value) == ("invalid volume specification: '/:path': invalid mount config for type \"bind\": "
                               "invalid mount path: 'path' mount path must be absolute")


@pytest.mark.parametrize(("raw", "kind", "dest", "source", "rw"), [
    ("/tmp:/tmp1", MountType.BIND, "/tmp1", "/tmp", True),
    ("/tmp:/tmp2:ro", MountType.BIND, "/tmp2", "/tmp", False),
    ("/tmp:/tmp3:rw", MountType.BIND, "/tmp3", "/tmp", True),
    ("name:/named1", MountType.VOLUME, "/named1", "name", True),
    ("name:/named3:ro", MountType.VOLUME, "/named3", "name", False),
    ("local/name:/tmp:rw", MountType.VOLUME, "/tmp", "local/name", True),
    ("/data/", MountType.VOLUME, "/data", "", True),
    ("/host/../etc:/a/b/../c", MountType.BIND, "/a/c", "/etc", True),
])
def test_binds_split_as_docker_does(raw: str, kind: MountType, dest: str, source: str, rw: bool) -> None:
    spec = parse_bind(raw)
    assert (spec.type, spec.destination, spec.source, not spec.read_only) == (kind, dest, source, rw)


def test_bind_modes() -> None:
    spec = parse_bind("/h:/c:ro,rshared,z")
    assert (spec.read_only, spec.propagation, spec.mode, spec.create_source) == (True, "rshared", "ro,rshared,z", True)
    assert parse_bind("/h:/c").propagation == "rprivate"
    assert parse_bind("v:/c").propagation == ""
    assert not parse_bind("v:/c:nocopy").copy_data


def test_mounts_objects() -> None:
    bind = parse_mount({"Type": "bind", "Source": "/tmp", "Target": "/x", "ReadOnly": True,
                        "BindOptions": {"Propagation": "rslave"}})
    assert (bind.type, bind.source, bind.read_only, bind.propagation, bind.create_source) == (
        MountType.BIND, "/tmp", True, "rslave", False)
    volume = parse_mount({"Type": "volume", "Source": "v1", "Target": "/v",
                          "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}}})
    assert (volume.source, volume.copy_data, volume.volume_labels) == ("v1", False, {"a": "b"})
    tmpfs = parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700}})
    assert tmpfs.tmpfs_data == "mode=700,size=1m"


@pytest.mark.parametrize(("doc", "message"), [
    ({"Type": "bind", "Source": "/definitely/not/here", "Target": "/x"},
     'invalid mount config for type "bind": bind source path does not exist: /definitely/not/here'),
    ({"Type": "bind", "Target": "/x"}, 'invalid mount config for type "bind": field Source must not be empty'),
    ({"Type": "bind", "Source": "rel", "Target": "/x"}, "invalid mount path: 'rel' mount path must be absolute"),
    ({"Type": "bind", "Source": "/tmp", "Target": "/x", "BindOptions": {"Propagation": "sideways"}},
     "invalid propagation mode: sideways"),
    ({"Type": "bind", "Source": "/tmp", "Target": "/x", "VolumeOptions": {}}, "field VolumeOptions must not be"),
    ({"Type": "volume", "Target": "/x", "ReadOnly": True},
     "must not set ReadOnly mode when using anonymous volumes"),
    ({"Type": "volume", "Source": "v", "Target": "/x", "BindOptions": {}}, "field BindOptions must not be"),
    ({"Type": "tmpfs", "Source": "x", "Target": "/x"}, "field Source must not be specified"),
    ({"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"SizeBytes": "big"}}, "invalid tmpfs size"),
    ({"Type": "nfs", "Target": "/x"}, 'invalid mount config for type "nfs": mount type unknown'),
    ({"Type": "volume", "Target": ""}, "field Target must not be empty"),
    ({"Type": "volume", "Target": "/"}, "destination can't be '/'"),
    ({"Type": "volume", "Target": "rel"}, "mount path must be absolute"),
    ("not an object", "expected a list of objects"),
])
def test_bad_mount_objects(doc: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        parse_mount(doc)


def test_tmpfs_options() -> None:
    assert tmpfs_data(1024 * 1024, 0o700, False) == "mode=700,size=1m"
    assert tmpfs_data(0, 0, True) == "ro"
    assert tmpfs_data(3 << 30, 0, False) == "size=3g"
    assert tmpfs_data(1000, 0, False) == "size=1000"
    assert tmpfs_data(0, 0, False, [["exec"]]) == "exec"
    with pytest.raises(InvalidParameter, match="invalid option: suid"):
        tmpfs_data(0, 0, False, [["suid"]])


def test_volumes_from() -> None:
    assert parse_volumes_from("data") == ("data", "rw")
    assert parse_volumes_from("data:ro") == ("data", "ro")
    for bad, message in (("", "cannot be an empty string"), ("data:shared", "invalid mode: shared"),
                         ("data:nocopy", "invalid mode: nocopy"), ("data:xx", "invalid mode: xx")):
        with pytest.raises(InvalidParameter, match=message):
            parse_volumes_from(bad)


def test_volume_names() -> None:
    assert validate_volume_name("my-vol_1.x") == "my-vol_1.x"
    with pytest.raises(InvalidParameter, match="volume name is too short"):
        validate_volume_name("a")
    for bad in ("C/foo", "../x", ".hidden", "-x", "a b", "x" * 3 + "/"):
        with pytest.raises(InvalidParameter, match=r'includes invalid characters for a local volume name, only '
                                                   r'"\[a-zA-Z0-9\]\[a-zA-Z0-9_.-\]" are allowed'):
            validate_volume_name(bad)
