"""Retrieval through a real server on the demo models: index 300 rendered scenes, find them from held-out
Chinese and English sentences, find captions from pictures, survive a restart, refuse what does not fit."""

from __future__ import annotations

import io
import random
from contextlib import contextmanager

import grpc
import pytest

from crossmodal import CrossModalClient
from crossmodal.v1 import crossmodal_pb2 as pb
from tests.fixtures.server import ROOT, running_server
from tools.world.captions import english
from tools.world.render import render
from tools.world.scenes import ALL_SCENES
from tools.world.train_marian import split_sentences

REPOSITORY = ROOT / "model_repository"
IMAGES = 300
SEED = 8_080  # pictures never seen in training
TARGET_TOP1 = 0.85


def jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def gallery() -> list[pb.IndexItem]:
    rng = random.Random(SEED)
    items = []
    for number in range(IMAGES):
        scene = ALL_SCENES[number % len(ALL_SCENES)]
        picture = pb.Item(image=jpeg(render(scene, rng)))
        items.append(pb.IndexItem(id=f"{scene.key}#{number}", item=picture, metadata={"scene": scene.key}))
    return items


def index(client: CrossModalClient, collection: str, items, **options) -> pb.IndexResponse:
    totals = pb.IndexResponse()
    for start in range(0, len(items), 64):
        reply = client._stub.Index(
            pb.IndexRequest(collection=collection, items=items[start : start + 64], **options), timeout=120
        )
        totals.indexed += reply.indexed
        totals.skipped += reply.skipped
        totals.errors.extend(reply.errors)
        totals.collection_size = reply.collection_size
    return totals


def search(client, collection: str, query: pb.Item, top_k: int = 5, modality: str = "") -> pb.SearchResponse:
    request = pb.SearchRequest(collection=collection, query=query, top_k=top_k, modality=modality)
    return client._stub.Search(request, timeout=60)


def queries() -> list[tuple[str, str]]:
    """(sentence, scene key): held-out Chinese sentences and an English paraphrase of each."""
    _, heldout = split_sentences()
    return [(p.chinese, p.scene.key) for p in heldout] + [(p.references[-1], p.scene.key) for p in heldout]


def top1(client, collection: str, asked: list[tuple[str, str]]) -> tuple[float, list[tuple[str, float]]]:
    firsts = [search(client, collection, pb.Item(text=sentence)).hits[0] for sentence, _ in asked]
    right = sum(hit.metadata["scene"] == scene for hit, (_, scene) in zip(firsts, asked, strict=True))
    return right / len(asked), [(hit.id, hit.score) for hit in firsts]


@contextmanager
def served(index_path, repository=REPOSITORY):
    """A client of a server whose collections live in `index_path`."""
    with (
        running_server(repository, "--index-path", str(index_path)) as (address, _),
        CrossModalClient(address, timeout=120) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    return tmp_path_factory.mktemp("retrieval") / "index.db"


def test_index_search_restart_and_reindex(index_path):
    items, asked = gallery(), queries()
    with served(index_path) as c:
        indexed = index(c, "scenes", items, skip_existing=True)
        assert (indexed.indexed, indexed.skipped, list(indexed.errors)) == (IMAGES, 0, [])
        assert indexed.collection_size == IMAGES
        accuracy, before = top1(c, "scenes", asked)
        chinese = search(c, "scenes", pb.Item(text=asked[0][0]))
        assert chinese.query_text.language == "zh" and chinese.query_text.translations
        assert chinese.query_text.encoded_text == chinese.query_text.translations[0].text
        assert [h.score for h in chinese.hits] == sorted((h.score for h in chinese.hits), reverse=True)
        listed = c._stub.ListCollections(pb.ListCollectionsRequest()).collections
        assert [(x.name, x.size, x.pipeline, x.version, x.dimension) for x in listed] == [
            ("scenes", IMAGES, "clip", 1, 64)
        ]
    print(f"text -> image top-1: {accuracy:.3f} over {len(asked)} held-out sentences")
    assert accuracy >= TARGET_TOP1, f"text -> image top-1 {accuracy:.3f} over {len(asked)} held-out sentences"

    with served(index_path) as c:
        again, after = top1(c, "scenes", asked)
        reindexed = index(c, "scenes", items, skip_existing=True)
    assert again == accuracy and [i for i, _ in after] == [i for i, _ in before]
    assert [s for _, s in after] == pytest.approx([s for _, s in before], abs=1e-5)
    assert (reindexed.indexed, reindexed.skipped, reindexed.collection_size) == (0, IMAGES, IMAGES)


def test_image_finds_its_caption(tmp_path):
    captions = [
        pb.IndexItem(id=f"caption:{s.key}", item=pb.Item(text=english(s)[0]), metadata={"scene": s.key})
        for s in ALL_SCENES
    ]
    rng = random.Random(SEED + 1)
    with served(tmp_path / "i.db") as client:
        assert index(client, "mixed", captions).indexed == len(ALL_SCENES)
        index(client, "mixed", gallery()[:20])  # pictures too: the modality filter must skip them
        right = 0
        for scene in ALL_SCENES:
            hits = search(client, "mixed", pb.Item(image=jpeg(render(scene, rng))), modality="text").hits
            assert {h.modality for h in hits} == {"text"}
            right += hits[0].metadata["scene"] == scene.key
    print(f"image -> caption top-1: {right}/{len(ALL_SCENES)}")
    assert right / len(ALL_SCENES) >= 0.8, f"image -> caption top-1 {right}/{len(ALL_SCENES)}"


def test_bad_retrieval_requests(tmp_path, exported_repository):
    def code(call) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        return raised.value.code(), raised.value.details()

    text = pb.IndexItem(id="t", item=pb.Item(text="a dog"))
    with served(tmp_path / "i.db", exported_repository) as client:
        stub = client._stub
        corrupt = pb.IndexItem(id="broken.jpg", item=pb.Item(image=b"\xff\xd8 not really"))
        first = pb.IndexRequest(collection="c", items=[text, corrupt], model=pb.ModelSpec(version=1))
        reply = stub.Index(first)
        assert reply.indexed == 1 and [(e.index, e.id, e.code) for e in reply.errors] == [
            (1, "broken.jpg", "INVALID_ARGUMENT")
        ]
        newer = pb.IndexRequest(collection="c", items=[text], model=pb.ModelSpec(version=2))
        assert code(lambda: stub.Index(newer))[0] == grpc.StatusCode.FAILED_PRECONDITION
        dog = pb.Item(text="dog")
        search_newer = pb.SearchRequest(collection="c", query=dog, model=pb.ModelSpec(version=2))
        status, message = code(lambda: stub.Search(search_newer))
        assert status == grpc.StatusCode.FAILED_PRECONDITION and "version 1" in message
        assert stub.Search(pb.SearchRequest(collection="c", query=pb.Item(text="dog"))).hits[0].id == "t"
        invalid, Search = grpc.StatusCode.INVALID_ARGUMENT, pb.SearchRequest
        cases = [
            (Search(collection="nope", query=dog), grpc.StatusCode.NOT_FOUND, "nope"),
            (Search(collection="c", query=pb.Item(text="")), invalid, "empty"),
            (Search(collection="c"), invalid, "query"),
            (Search(collection="c", query=dog, top_k=-1), invalid, "top_k"),
            (Search(collection="c", query=dog, modality="audio"), invalid, "modality"),
            (Search(collection="../c", query=dog), invalid, "collection name"),
        ]
        for request, expected, word in cases:
            status, message = code(lambda request=request: stub.Search(request))
            assert (status, word in message) == (expected, True), (request, status, message)
        odd = [text, text, pb.IndexItem(id="x" * 2000, item=pb.Item(text="long id"))]
        reply = stub.Index(pb.IndexRequest(collection="c", items=odd))  # odd entries fail alone
        assert reply.indexed == 1 and [(e.index, e.code) for e in reply.errors] == [
            (1, "INVALID_ARGUMENT"),
            (2, "INVALID_ARGUMENT"),
        ]
        assert "twice" in reply.errors[0].message and "1 to 1024" in reply.errors[1].message
        assert code(lambda: stub.Delete(pb.DeleteRequest(collection="nope", drop_collection=True)))[0] == (
            grpc.StatusCode.NOT_FOUND
        )
        assert stub.Delete(pb.DeleteRequest(collection="c", ids=["t", "missing"])).deleted == 1
        assert stub.Delete(pb.DeleteRequest(collection="c", drop_collection=True)).deleted == 0
        assert not stub.ListCollections(pb.ListCollectionsRequest()).collections
