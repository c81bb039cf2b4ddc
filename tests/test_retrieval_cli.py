"""Retrieval from the command line (`crossmodal index/search/collections/delete`) and the client library,
against a real server subprocess on the committed demo models, with a folder of rendered demo-world scenes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random

import pytest

from crossmodal import AsyncCrossModalClient, CrossModalClient
from crossmodal.cli import main
from crossmodal.indexing import Entry, batches, image_files
from crossmodal.v1 import crossmodal_pb2 as pb
from tests.fixtures.server import ROOT, running_server
from tools.world.render import render
from tools.world.scenes import ALL_SCENES, Scene

COLLECTION = "photos"
CAPTIONS = ("Two dogs in the snow", "", "A cat on the table", "London at night")
SNOW_DOGS = Scene("snow", "dog", 2)


def _scenes() -> list[Scene]:
    """Twelve scenes across the world, the two dogs in the snow among them."""
    picked = [s for s in ALL_SCENES[::8] if s != SNOW_DOGS][:11]
    return [SNOW_DOGS, *picked]


def _relative_path(index: int, scene: Scene) -> str:
    name = f"{scene.kind or 'empty'}_{scene.count}"
    if index % 4 == 3:  # other formats and extension cases are images too
        return f"{scene.background}/more/{name}.PNG"
    return f"{scene.background}/{name}.jpg"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A nested folder of rendered scenes, one corrupt JPEG and a file that is no image; returns
    (folder, ids of the good images)."""
    root = tmp_path_factory.mktemp("photos")
    ids = []
    for index, scene in enumerate(_scenes()):
        relative = _relative_path(index, scene)
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        render(scene, random.Random(index)).save(path, "PNG" if relative.endswith(".PNG") else "JPEG")
        ids.append(relative)
    (root / "broken").mkdir()
    (root / "broken" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image\n")
    return root, sorted(ids)


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    path = tmp_path_factory.mktemp("captions") / "captions.txt"
    path.write_text("\n".join(CAPTIONS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    index_path = tmp_path_factory.mktemp("index") / "index.db"
    with running_server(ROOT / "model_repository", "--index-path", str(index_path)) as (address, _process):
        yield address


def _run(server: str, *args: str) -> tuple[int, str, str]:
    """`crossmodal ARGS --server SERVER`: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--server", server])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def first_run(server, photos, captions):
    folder, _ids = photos
    # Small batches, so the corrupt image shares a call with good ones and the run spans several calls.
    arguments = ["index", str(folder), "--collection", COLLECTION, "--captions", str(captions)]
    return _run(server, *arguments, "--batch-size", "5")


# -- the walker, without a server ---------------------------------------------------------------------


def test_walker_finds_images_in_sorted_order_with_posix_ids(photos):
    folder, ids = photos
    found = image_files(folder)
    assert [item_id for item_id, _ in found] == sorted([*ids, "broken/corrupt.jpg"])
    assert all(path == folder / item_id for item_id, path in found)
    assert [i for i, _ in image_files(folder, ["png"])] == [i for i in ids if i.endswith(".PNG")]


def test_batches_are_cut_by_count_and_by_bytes():
    entries = [Entry(f"e{i}", size, {}, lambda: pb.Item(text="x")) for i, size in enumerate([5, 5, 5, 30, 5])]
    assert [len(b) for b in batches(entries, 2, max_bytes=100)] == [2, 2, 1]
    assert [[e.id for e in b] for b in batches(entries, 10, max_bytes=12)] == [
        ["e0", "e1"],
        ["e2"],
        ["e3"],
        ["e4"],
    ]


def test_index_needs_one_id_per_item():
    with CrossModalClient("127.0.0.1:1") as client, pytest.raises(ValueError, match="one id"):
        client.index("texts", ["a dog", "a cat"], ["only-one"])


def test_contradictory_arguments_are_refused_before_any_call():
    with pytest.raises(SystemExit, match="one of them"):
        main(["search", "a dog", "--image", "x.jpg", "--collection", COLLECTION])
    with pytest.raises(SystemExit, match="not both"):
        main(["delete", "--collection", COLLECTION])
    with pytest.raises(SystemExit):
        main(["index", "--collection", COLLECTION, "--extensions", " , "])


# -- through the server -------------------------------------------------------------------------------


def test_index_reports_counts_and_names_the_corrupt_image(first_run, photos):
    code, out, err = first_run
    _folder, ids = photos
    captions = sum(1 for c in CAPTIONS if c)
    assert code == 0, err
    assert f"indexed {len(ids) + captions}, skipped 0 (already present), failed 1" in out
    assert f"collection {COLLECTION} holds {len(ids) + captions} items" in out
    assert "broken/corrupt.jpg: INVALID_ARGUMENT:" in err


def test_indexing_again_adds_nothing(first_run, server, photos, captions):
    folder, ids = photos
    code, out, err = _run(
        server, "index", str(folder), "--collection", COLLECTION, "--captions", str(captions), "--json"
    )
    assert code == 0, err
    summary = json.loads(out)
    captions_count = sum(1 for c in CAPTIONS if c)
    assert (summary["indexed"], summary["skipped"]) == (0, len(ids) + captions_count)
    assert [e["id"] for e in summary["errors"]] == ["broken/corrupt.jpg"]
    assert summary["errors"][0]["code"] == "INVALID_ARGUMENT"
    assert summary["collection_size"] == len(ids) + captions_count


def test_search_with_english_text(first_run, server, photos):
    query = "two dogs in the snow"
    code, out, err = _run(server, "search", query, "--collection", COLLECTION, "--top-k", "5")
    assert code == 0, err
    assert 'query: text "two dogs in the snow"' in out and "language: en" in out
    rows = _hit_rows(out)
    assert len(rows) == 5 and [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    scores = [float(r[1]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_search_with_chinese_text_shows_what_clip_saw(first_run, server):
    search = ["search", "雪地里的狗", "--collection", COLLECTION, "--top-k", "3"]
    code, out, err = _run(server, *search)
    assert code == 0, err
    assert "language: zh" in out and "tokens: [雪地, 里, 的, 狗]" in out
    assert "translations:" in out and "encoded as: " in out
    assert len(_hit_rows(out)) == 3

    code, out, err = _run(server, *search, "--json")
    response = json.loads(out)
    assert len(response["hits"]) == 3 and response["query_text"]["language"] == "zh"
    assert response["query_text"]["encoded_text"] == response["query_text"]["translations"][0]["text"]
    assert {"id", "score", "modality", "metadata"} <= set(response["hits"][0])


def test_search_with_an_image_finds_itself_first(first_run, server, photos):
    folder, _ids = photos
    query = _relative_path(0, SNOW_DOGS)
    code, out, err = _run(
        server, "search", "--image", str(folder / query), "--collection", COLLECTION, "--top-k", "4", "--json"
    )
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert len(hits) == 4 and hits[0]["id"] == query and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert hits[0]["metadata"] == {"path": query, "bytes": str((folder / query).stat().st_size)}
    assert "query_text" not in json.loads(out)


def test_search_filters_by_modality(first_run, server):
    code, out, err = _run(
        server, "search", "a cat", "--collection", COLLECTION, "--modality", "text", "--top-k", "10", "--json"
    )
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert len(hits) == 3 and {h["modality"] for h in hits} == {"text"}
    assert {h["id"] for h in hits} == {"caption:1", "caption:3", "caption:4"}
    texts = {h["metadata"]["text"] for h in hits}
    assert texts == {c for c in CAPTIONS if c}


def test_collections_lists_the_collection(first_run, server, photos):
    _folder, ids = photos
    size = len(ids) + sum(1 for c in CAPTIONS if c)
    code, out, err = _run(server, "collections")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["collection", "size", "pipeline", "version", "dimension"]
    assert [COLLECTION, str(size), "clip", "1", "64"] in [line.split() for line in out.splitlines()]
    code, out, err = _run(server, "collections", "--json")
    listed = {c["name"]: c for c in json.loads(out)["collections"]}
    assert int(listed[COLLECTION]["size"]) == size and listed[COLLECTION]["dimension"] == 64


def test_delete_ids_then_drop_the_collection(server, captions):
    code, out, err = _run(server, "index", "--captions", str(captions), "--collection", "scratch")
    assert code == 0 and "indexed 3" in out, err
    code, out, err = _run(server, "delete", "--collection", "scratch", "--id", "caption:1", "caption:99")
    assert code == 0, err
    assert out.strip() == "deleted 1 of 2 ids from scratch"
    code, out, err = _run(server, "search", "a cat", "--collection", "scratch", "--json")
    assert {h["id"] for h in json.loads(out)["hits"]} == {"caption:3", "caption:4"}

    code, out, err = _run(server, "delete", "--collection", "scratch", "--drop")
    assert code == 0 and out.strip() == "dropped collection scratch (2 items)", err
    code, out, err = _run(server, "collections", "--json")
    assert "scratch" not in {c["name"] for c in json.loads(out).get("collections", [])}


def test_an_unknown_collection_fails_the_call(server):
    code, out, err = _run(server, "search", "a dog", "--collection", "nowhere")
    assert code == 1 and not out
    assert "crossmodal search: NOT_FOUND" in err and "nowhere" in err


def _hit_rows(report: str) -> list[list[str]]:
    """The table rows of a search report (after its header line)."""
    lines = report.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "score"])
    return [line.split() for line in lines[header + 1 :]]


def test_asyncio_client_indexes_searches_and_deletes(server):
    async def calls():
        async with AsyncCrossModalClient(server, timeout=60) as client:
            indexed = await client.index(
                "async_texts", ["a dog", "一只猫"], ["dog", "cat"], [{"n": 1}, {"n": 2}]
            )
            found = await client.search("async_texts", "a dog", top_k=1, modality="text")
            listed = await client.list_collections()
            dropped = await client.delete("async_texts", drop_collection=True)
            return indexed, found, listed, dropped

    indexed, found, listed, dropped = asyncio.run(calls())
    assert (indexed.indexed, indexed.collection_size) == (2, 2)
    assert [(h.id, dict(h.metadata)) for h in found.hits] == [("dog", {"n": "1"})]
    assert found.query_text.encoded_text == "a dog"
    assert "async_texts" in {c.name for c in listed.collections} and dropped.deleted == 2
