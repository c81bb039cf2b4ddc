"""Retrieval under crashes, full disks, corrupt files and other local processes, through a real server on
the demo models: a server killed at any step of creating or dropping a collection restarts usable; rows
acknowledged before a disk error stay searchable; a corrupt manifest is refused by name; the embedded
Milvus Lite cannot be reached by anyone else."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
from contextlib import contextmanager

import grpc
import psutil
import pytest

from crossmodal.v1 import crossmodal_pb2 as pb
from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc
from server.retrieval.crash_points import VARIABLE
from tests.fixtures.server import ROOT, running_server
from tools.world.captions import english
from tools.world.scenes import ALL_SCENES

REPOSITORY = ROOT / "model_repository"
CAPTIONS = sorted({english(scene)[0] for scene in ALL_SCENES})


@contextmanager
def served(index_path):
    """(stub, server process) of a server whose collections live in `index_path`."""
    with (
        running_server(REPOSITORY, "--index-path", str(index_path)) as (address, process),
        grpc.insecure_channel(address) as channel,
    ):
        yield pb_grpc.CrossModalStub(channel), process


def items(prefix: str, count: int, metadata_chars: int = 0) -> list[pb.IndexItem]:
    return [
        pb.IndexItem(
            id=f"{prefix}-{n}",
            item=pb.Item(text=CAPTIONS[n % len(CAPTIONS)]),
            metadata={"noise": secrets.token_hex(metadata_chars // 2)} if metadata_chars else {},
        )
        for n in range(count)
    ]


def index(stub, collection: str, entries, **options) -> pb.IndexResponse:
    return stub.Index(pb.IndexRequest(collection=collection, items=entries, **options), timeout=60)


def listed(stub) -> dict[str, int]:
    reply = stub.ListCollections(pb.ListCollectionsRequest(), timeout=60)
    return {c.name: c.size for c in reply.collections}


def found_ids(stub, collection: str) -> set[str]:
    """Every id a search can reach (an exact search with top_k above the collection's size)."""
    query = pb.SearchRequest(collection=collection, query=pb.Item(text=CAPTIONS[0]), top_k=1024)
    return {hit.id for hit in stub.Search(query, timeout=60).hits}


def refused(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


def crash_during(index_path, monkeypatch, step: str, call) -> None:
    """Runs `call(stub)` on a server that SIGKILLs itself at `step`, and checks that it did."""
    monkeypatch.setenv(VARIABLE, step)
    with served(index_path) as (stub, process):
        with pytest.raises(grpc.RpcError):
            call(stub)
        assert process.wait(timeout=20) == -signal.SIGKILL, f"the server did not stop at {step}"
    monkeypatch.delenv(VARIABLE)


def check_usable(stub, expected: dict[str, int], recreated: str) -> None:
    """ListCollections answers as expected, every listed collection searches, and `recreated` can be
    indexed into (again) and then holds exactly the new rows."""
    assert listed(stub) == expected
    for name, size in expected.items():
        assert len(found_ids(stub, name)) == size
    fresh = items("new", 4)
    assert index(stub, recreated, fresh).indexed == 4
    assert found_ids(stub, recreated) == {item.id for item in fresh} | (
        {f"{recreated}-{n}" for n in range(expected.get(recreated, 0))}
    )
    assert listed(stub)[recreated] == 4 + expected.get(recreated, 0)


@pytest.mark.parametrize(
    ("step", "after_restart"),
    [
        ("create:collection_made", {"kept": 3}),  # an empty collection nobody names: dropped on start
        ("create:catalogued", {"kept": 3, "fresh": 0}),  # created, its first rows never acknowledged
    ],
)
def test_a_crash_while_creating_leaves_a_usable_store(tmp_path, monkeypatch, step, after_restart):
    path = tmp_path / "index.db"
    with served(path) as (stub, _):
        index(stub, "kept", items("kept", 3))
    crash_during(path, monkeypatch, step, lambda stub: index(stub, "fresh", items("fresh", 2)))
    with served(path) as (stub, _):
        check_usable(stub, after_restart, recreated="fresh")


def _leave_only_schema(folder):
    for part in folder.iterdir():
        if part.name != "schema.json":
            shutil.rmtree(part) if part.is_dir() else part.unlink()


@pytest.mark.parametrize(
    "half_deleted",
    [
        None,  # killed before the files were touched
        lambda folder: (folder / "schema.json").unlink(),  # deleting files had begun with the schema
        _leave_only_schema,  # everything but the schema was deleted
    ],
    ids=["intact", "schema_deleted", "only_schema_left"],
)
def test_a_crash_while_dropping_leaves_a_usable_store(tmp_path, monkeypatch, half_deleted):
    path = tmp_path / "index.db"
    with served(path) as (stub, _):
        index(stub, "kept", items("kept", 3))
        index(stub, "gone", items("gone", 5))
    drop = pb.DeleteRequest(collection="gone", drop_collection=True)
    crash_during(path, monkeypatch, "drop:uncatalogued", lambda stub: stub.Delete(drop, timeout=60))
    if half_deleted is not None:
        half_deleted(path / "collections" / "gone")
    with served(path) as (stub, _):
        check_usable(stub, {"kept": 3}, recreated="gone")  # none of the dropped rows come back


def test_an_unfinished_collection_folder_does_not_block_its_name(tmp_path):
    """Creating makes the folder before its schema: a crash in between leaves a folder Milvus Lite
    neither lists nor lets anyone create again."""
    path = tmp_path / "index.db"
    with served(path) as (stub, _):
        index(stub, "kept", items("kept", 3))
    (path / "collections" / "fresh" / "wal").mkdir(parents=True)
    with served(path) as (stub, _):
        check_usable(stub, {"kept": 3}, recreated="fresh")


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs (mounting needs root or CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_rows_acknowledged_before_a_full_disk_stay_searchable(small_disk):
    path = small_disk / "index.db"
    with served(path) as (stub, process):
        acknowledged = {item.id for item in items("row", 8)}
        index(stub, "photos", items("row", 8))
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 600_000))
        failure = None
        for batch in range(1, 200):
            entries = [
                pb.IndexItem(id=f"b{batch}-{n}", item=e.item, metadata=e.metadata)
                for n, e in enumerate(items("x", 8, metadata_chars=4000))
            ]
            try:
                index(stub, "photos", entries)
            except grpc.RpcError as error:
                failure = error
                break
            acknowledged |= {e.id for e in entries}
        assert failure is not None, "the disk never filled"
        assert failure.code() == grpc.StatusCode.UNAVAILABLE
        assert "No space left on device" in failure.details() and str(path) in failure.details()
        assert 8 < len(acknowledged) < 1024

        assert listed(stub) == {"photos": len(acknowledged)}
        assert found_ids(stub, "photos") == acknowledged
        again = [pb.IndexItem(id=i, item=pb.Item(text="anything")) for i in sorted(acknowledged)[:64]]
        reply = index(stub, "photos", again, skip_existing=True)
        assert (reply.indexed, reply.skipped) == (0, len(again))

        filler.unlink()  # with room again, the failed call can be repeated
        index(stub, "photos", entries)
        acknowledged |= {e.id for e in entries}
        assert listed(stub) == {"photos": len(acknowledged)}
        assert process.poll() is None
    with served(path) as (stub, _):
        assert found_ids(stub, "photos") == acknowledged


def test_a_corrupt_manifest_is_refused_by_name(tmp_path):
    path = tmp_path / "index.db"
    with served(path) as (stub, _):
        index(stub, "photos", items("photo", 6))
        index(stub, "photos", items("more", 6))
        index(stub, "other", items("other", 2))
    manifest = path / "collections" / "photos" / "manifest.json"
    assert (manifest.parent / "manifest.json.prev").exists()
    manifest.write_bytes(b"\x00garbage{")
    with served(path) as (stub, process):
        dog = pb.Item(text="dog")
        calls = [
            lambda: stub.Search(pb.SearchRequest(collection="photos", query=dog), timeout=60),
            lambda: index(stub, "photos", items("late", 2)),
            lambda: stub.Delete(pb.DeleteRequest(collection="photos", ids=["photo-1"]), timeout=60),
            lambda: stub.ListCollections(pb.ListCollectionsRequest(), timeout=60),
        ]
        for call in calls:
            code, message = refused(call)
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert str(manifest) in message and "corrupt" in message
        assert found_ids(stub, "other") == {"other-0", "other-1"}
        drop = stub.Delete(pb.DeleteRequest(collection="photos", drop_collection=True), timeout=60)
        assert drop.deleted == 0  # its size cannot be trusted
        assert listed(stub) == {"other": 2}
        check_usable(stub, {"other": 2}, recreated="photos")
        assert process.poll() is None


def test_a_corrupt_manifest_loses_no_data_and_a_restored_one_serves_again(tmp_path):
    path = tmp_path / "index.db"
    with served(path) as (stub, _):
        index(stub, "photos", items("photo", 6))
    folder = path / "collections" / "photos"
    good = (folder / "manifest.json").read_bytes()
    data_files = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    (folder / "manifest.json").write_bytes(b"garbage{{")
    with served(path) as (stub, _):
        code, message = refused(lambda: stub.ListCollections(pb.ListCollectionsRequest(), timeout=60))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "set aside" in message
    aside = path / "refused" / "photos"
    assert not folder.exists()
    assert sorted(p.relative_to(aside) for p in aside.rglob("*") if p.is_file()) == data_files
    (aside / "manifest.json").write_bytes(good)  # the operator restores the file where it was set aside
    with served(path) as (stub, _):
        assert listed(stub) == {"photos": 6}
        assert found_ids(stub, "photos") == {f"photo-{i}" for i in range(6)}


NOBODY = 65534
CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as error:
    print(type(error).__name__)
else:
    print("connected")
"""


def test_the_embedded_store_is_reachable_only_by_the_server(tmp_path):
    from pymilvus import MilvusClient

    with served(tmp_path / "index.db") as (stub, process):
        index(stub, "private", items("secret", 2))
        server = psutil.Process(process.pid)
        own_port = int(server.cmdline()[server.cmdline().index("--port") + 1])
        listening = {c.laddr.port for c in server.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        for port in listening - {own_port}:
            with pytest.raises(Exception):  # noqa: B017 - any failure to talk Milvus there will do
                MilvusClient(uri=f"http://127.0.0.1:{port}", timeout=3).list_collections()
        sockets = [c.laddr for c in server.net_connections("unix") if "crossmodal-milvus-" in (c.laddr or "")]
        assert sockets, "the store's socket was not found"
        folder = os.path.dirname(sockets[0])
        assert os.stat(folder).st_mode & 0o077 == 0, oct(os.stat(folder).st_mode)
        interpreter = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")  # one others may run
        if os.geteuid() == 0 and interpreter:  # another user on the machine tries
            other = subprocess.run(
                [interpreter, "-c", CONNECT, sockets[0]],
                capture_output=True,
                text=True,
                user=NOBODY,
                cwd="/",
                timeout=30,
            )
            assert other.stdout.strip() == "PermissionError", other.stdout + other.stderr
        with socket.socket(socket.AF_UNIX) as own:
            own.connect(sockets[0])  # the server's own user does reach it
