"""Content, layer and image stores: atomic writes, verification, crash recovery, corrupt entries."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from backend.engine.errors import InvalidParameter, NotFound
from backend.engine.images.content_store import BlobWriter, ContentStore, digest_bytes
from backend.engine.images.image_store import ImageRecord, ImageStore
from backend.engine.images.layer_store import LayerStore, chain_ids


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- content store ------------------------------------------------------------------------------


def test_put_and_read_verify(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path))
    digest = store.put(b"hello")
    assert digest == sha(b"hello")
    assert store.read(digest) == b"hello"
    assert store.size(digest) == 5
    assert list(store.digests()) == [digest]


def test_digest_mismatch_leaves_nothing(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path))
    wrong = sha(b"other")
    with pytest.raises(InvalidParameter, match="digest mismatch"):
        store.put(b"hello", wrong)
    assert not store.has(wrong)
    assert os.listdir(store.ingest_dir) == []


def test_size_overrun_is_refused_while_streaming(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path))
    writer = store.writer(sha(b"abc"), 3)
    writer.write(b"ab")
    with pytest.raises(InvalidParameter, match="more data than its size"):
        writer.write(b"cd")
    assert os.listdir(store.ingest_dir) == []


def test_short_blob_is_refused(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path))
    writer = store.writer(sha(b"abc"), 3)
    writer.write(b"ab")
    with pytest.raises(InvalidParameter, match="does not match the expected"):
        writer.commit()
    assert os.listdir(store.ingest_dir) == []


@pytest.mark.parametrize("bad", ["sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64, "../../etc/passwd", ""])
def test_malformed_digests_are_refused(tmp_path: Path, bad: str) -> None:
    store = ContentStore(str(tmp_path))
    with pytest.raises(InvalidParameter, match="invalid digest"):
        store.has(bad)


def test_corrupt_blob_is_detected_on_read(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path))
    digest = store.put(b"config")
    Path(store.blob_path(digest)).write_bytes(b"tampered")
    with pytest.raises(InvalidParameter, match="corrupt"):
        store.read(digest)
    store.delete(digest)
    assert not store.has(digest)


def test_recover_finishes_deletions_and_drops_partials(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path))
    Path(store.ingest_dir, "partial").write_bytes(b"half")
    Path(store.trash_dir, "a" * 64 + ".1234").write_bytes(b"doomed")
    ContentStore(str(tmp_path)).recover()
    assert os.listdir(store.ingest_dir) == [] and os.listdir(store.trash_dir) == []


def test_concurrent_ensure_fetches_once(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path))
    data = os.urandom(100_000)
    digest = sha(data)
    calls = 0

    async def fetch(writer: BlobWriter) -> None:
        nonlocal calls
        calls += 1
        for i in range(0, len(data), 10_000):
            await asyncio.sleep(0.001)
            writer.write(data[i:i + 10_000])

    async def main() -> list[str]:
        return await asyncio.gather(*(store.ensure(digest, len(data), fetch) for _ in range(10)))

    assert asyncio.run(main()) == [digest] * 10
    assert calls == 1
    assert store.read(digest, 200_000) == data


def test_failed_ensure_reaches_every_waiter_and_leaves_no_partial(tmp_path: Path) -> None:
    store = ContentStore(str(tmp_path))

    async def fetch(writer: BlobWriter) -> None:
        writer.write(b"wrong bytes")
        await asyncio.sleep(0.01)

    async def main() -> list[object]:
        return await asyncio.gather(*(store.ensure(sha(b"right"), None, fetch) for _ in range(3)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, InvalidParameter) for r in results)
    assert os.listdir(store.ingest_dir) == [] and not store.has(sha(b"right"))


# -- layer store --------------------------------------------------------------------------------


def test_chain_ids_follow_the_oci_rule() -> None:
    a, b = sha(b"a"), sha(b"b")
    assert chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()]


def test_layer_create_publish_and_remove(tmp_path: Path) -> None:
    layers = LayerStore(str(tmp_path))
    diff = sha(b"layer")

    def unpack(target: str) -> int:
        Path(target, "file").write_text("x")
        return 1

    record = layers.create(diff, diff, None, unpack)
    assert layers.get(diff) == record and Path(layers.diff_path(diff), "file").read_text() == "x"
    assert Path(layers.links_dir, record.short).resolve() == Path(layers.diff_path(diff)).resolve()
    assert layers.create(diff, diff, None, unpack) == record  # idempotent
    layers.remove(diff)
    assert not layers.has(diff) and os.listdir(layers.links_dir) == []


def test_failed_unpack_leaves_nothing(tmp_path: Path) -> None:
    layers = LayerStore(str(tmp_path))

    def unpack(target: str) -> int:
        Path(target, "partial").write_text("x")
        raise InvalidParameter("layer entry bad")

    with pytest.raises(InvalidParameter):
        layers.create(sha(b"l"), sha(b"l"), None, unpack)
    assert os.listdir(layers.layers_dir) == []


# -- image store --------------------------------------------------------------------------------


def test_tags_and_records(tmp_path: Path) -> None:
    images = ImageStore(str(tmp_path))
    image_id = digest_bytes(b"{}")
    images.save(ImageRecord(id=image_id, diff_ids=[sha(b"l")], size=10))
    assert images.tag("docker.io/library/busybox:latest", image_id) is None
    images.tag("localhost:5000/x:1", image_id)
    reloaded = ImageStore(str(tmp_path))
    assert reloaded.refs_of(image_id) == ["docker.io/library/busybox:latest", "localhost:5000/x:1"]
    assert reloaded.untag("localhost:5000/x:1") == image_id
    with pytest.raises(NotFound):
        reloaded.untag("localhost:5000/x:1")


def test_store_loads_with_a_corrupt_record_which_can_be_removed(tmp_path: Path) -> None:
    images = ImageStore(str(tmp_path))
    good, bad = digest_bytes(b"good"), digest_bytes(b"bad")
    images.save(ImageRecord(id=good, diff_ids=[], size=1))
    images.save(ImageRecord(id=bad, diff_ids=[], size=1))
    images.tag("docker.io/library/bad:latest", bad)
    Path(images.db_dir, bad[7:] + ".json").write_text("{not json")
    reloaded = ImageStore(str(tmp_path))
    records = {r.id: r for r in reloaded.records()}
    assert records[good].corrupt is None and records[bad].corrupt
    reloaded.delete(bad)
    assert [r.id for r in reloaded.records()] == [good] and reloaded.refs_of(bad) == []


def test_corrupt_tag_index_is_set_aside(tmp_path: Path) -> None:
    Path(tmp_path, "repositories.json").write_text("[1, 2")
    images = ImageStore(str(tmp_path))
    assert images.tags == {}
    assert Path(tmp_path, "repositories.json.corrupt").exists()
