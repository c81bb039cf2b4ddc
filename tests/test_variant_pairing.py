"""Towers pair, and collections accept vectors, by checkpoint: an int8 image tower serves with the fp32
text tower of its checkpoint and searches a collection the fp32 pipeline filled; towers of different
checkpoints refuse to serve, naming both; towers whose files name no checkpoint pair as they always did."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format

from crossmodal.v1 import model_config_pb2 as mc
from server.backends.onnx.session import SessionFactory
from server.core.config import Limits
from server.core.errors import NotAllowed
from server.core.types import ImageInput, ModelRef, TextInput
from server.engine import Engine
from server.pipelines.clip import pipeline_versions, resolve_pipeline
from server.pipelines.served import served_entries
from server.repository.model_config import OPENVINO_PLATFORM
from server.repository.repository import ModelRepository
from server.retrieval.retrieval import IndexEntry, Retrieval
from server.retrieval.store import Embedder, VectorStore
from tests.fixtures.images import encoded_image
from tools import quantize
from tools.accuracy import onnx_metadata

CAPTIONS = ["a red square", "a small dog", "two blue circles", "a green field"]


def _config(model_dir: Path) -> mc.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def _write_config(model_dir: Path, config: mc.ModelConfig) -> None:
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))


def _copy_tower(repository: Path, tower: str, version: int, name: str, drop: tuple[str, ...] = ()) -> None:
    """Version `version` of `tower` as version 1 of a model `name`, without the metadata keys `drop`."""
    config = _config(repository / tower)
    config.name = name
    _write_config(repository / name, config)
    shutil.copytree(repository / tower / str(version), repository / name / "1")
    graph = repository / name / "1" / "model.onnx"
    model = onnx.load(str(graph))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in drop]
    del model.metadata_props[:]
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(graph))


def _pipeline(repository: Path, name: str, vision: str, text: str) -> None:
    config = _config(repository / "clip_plain")
    config.name = name
    config.parameters["vision_model"].string_value = vision
    config.parameters["text_model"].string_value = text
    _write_config(repository / name, config)


@pytest.fixture(scope="module")
def variant_repository(tmp_path_factory, exported_repository) -> Path:
    """The exported towers (versions 1 and 2: two checkpoints), the int8 variant of clip_vision/1 made by
    tools.quantize, and pipelines pairing them: clip_int8 (int8 image tower, fp32 text tower), clip_openvino
    (the fp32 image tower on OpenVINO), clip_crossed (text tower of the other checkpoint) and clip_unnamed
    (text tower whose files name no checkpoint)."""
    repository = tmp_path_factory.mktemp("variants") / "model_repository"
    shutil.copytree(exported_repository, repository)
    quantize.quantize_model(repository, "clip_vision", version=1)
    _copy_tower(repository, "clip_text", 2, "clip_text_other")
    _copy_tower(repository, "clip_text", 2, "clip_text_unnamed", drop=("source",))
    _copy_tower(repository, "clip_vision", 1, "clip_vision_openvino")
    config = repository / "clip_vision_openvino" / "config.pbtxt"
    config.write_text(config.read_text().replace('platform: "onnxruntime_onnx"', 'backend: "openvino"'))
    _pipeline(repository, "clip_int8", "clip_vision_int8", "clip_text")
    _pipeline(repository, "clip_crossed", "clip_vision", "clip_text_other")
    _pipeline(repository, "clip_unnamed", "clip_vision", "clip_text_unnamed")
    _pipeline(repository, "clip_openvino", "clip_vision_openvino", "clip_text")
    return repository


@pytest.fixture(scope="module")
def checkpoints(exported_repository) -> tuple[str, str]:
    """The checkpoint names the exporter wrote into versions 1 and 2."""
    names = tuple(
        onnx_metadata(exported_repository / "clip_text" / str(v) / "model.onnx")["source"] for v in (1, 2)
    )
    assert names[0] and names[1] and names[0] != names[1]
    return names


@pytest.fixture(scope="module")
def loaded(variant_repository):
    """(repository, engine, log records of the load)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("server.backends.onnx.model")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    repository = ModelRepository(variant_repository, SessionFactory())
    try:
        repository.load_all()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    engine = Engine(repository, Limits())
    yield repository, engine, records
    engine.close()
    repository.close()


@pytest.fixture
def retrieval(loaded, tmp_path):
    _, engine, _ = loaded
    opened = Retrieval(engine, lambda: VectorStore(str(tmp_path / "index.db")))
    yield opened
    opened.close()


def _images(count: int, seed: int = 0) -> list[ImageInput]:
    return [ImageInput(encoded_image(80 + 8 * n, 64, "JPEG", seed=seed + n)) for n in range(count)]


def _entries(prefix: str, items) -> list[IndexEntry]:
    return [IndexEntry(f"{prefix}{n}", item) for n, item in enumerate(items)]


def test_an_int8_image_tower_serves_with_the_fp32_text_tower_of_its_checkpoint(loaded, checkpoints):
    repository, engine, records = loaded
    pipeline = resolve_pipeline(repository, "clip_int8", 0)
    identity = pipeline.vision.checkpoint_identity
    assert (identity.checkpoint, identity.variant, identity.variant_of_model) == (
        checkpoints[0],
        "int8-dynamic",
        "clip_vision/1",
    )
    assert pipeline.text.checkpoint_identity.variant == "fp32"
    assert (pipeline.version, pipeline.checkpoint) == (1, checkpoints[0])
    assert pipeline_versions(repository, "clip_int8") == [1]
    on_openvino = resolve_pipeline(repository, "clip_openvino", 0)
    assert on_openvino.vision.platform == OPENVINO_PLATFORM
    assert on_openvino.vision.checkpoint_identity == pipeline.text.checkpoint_identity

    items = [*_images(2), TextInput("a small dog")]
    int8 = asyncio.run(engine.encode(ModelRef("clip_int8", 0), items))
    exact = asyncio.run(engine.encode(ModelRef("clip_plain", 1), items))
    assert int8.models == [("clip_vision_int8", 1), ("clip_text", 1)]
    cosines = (int8.embeddings * exact.embeddings).sum(axis=1)
    assert cosines[:2].min() > 0.99 and cosines[:2].max() < 1.0  # the variant's own vectors
    assert cosines[2] == pytest.approx(1.0, abs=1e-6)  # the same text tower
    # Responses name the variant's model; the log at load says what it is a variant of.
    said = [r.getMessage() for r in records]
    assert f"clip_vision_int8 v1: int8-dynamic variant of {checkpoints[0]} (made from clip_vision/1)" in said


def test_towers_of_different_checkpoints_refuse_to_serve_and_say_why(loaded, checkpoints):
    repository, engine, _ = loaded
    for version in (0, 1):
        with pytest.raises(NotAllowed) as refused:
            resolve_pipeline(repository, "clip_crossed", version)
        message = str(refused.value)
        assert "clip_crossed" in message and "not comparable" in message
        assert f"clip_vision v1 is of checkpoint '{checkpoints[0]}'" in message
        assert f"clip_text_other v1 is of checkpoint '{checkpoints[1]}'" in message
    with pytest.raises(NotAllowed, match="not comparable"):
        asyncio.run(engine.encode(ModelRef("clip_crossed", 0), [TextInput("a dog")]))
    assert pipeline_versions(repository, "clip_crossed") == []
    entry = next(e for e in served_entries(repository) if e.name == "clip_crossed")
    assert entry.state == "UNAVAILABLE" and checkpoints[1] in entry.reason
    ready = {e.name: e.state for e in served_entries(repository) if e.kind == "pipeline"}
    assert ready == {
        "clip": "READY",
        "clip_plain": "READY",
        "clip_int8": "READY",
        "clip_unnamed": "READY",
        "clip_openvino": "READY",
        "clip_crossed": "UNAVAILABLE",
    }


def test_towers_whose_files_name_no_checkpoint_pair_by_version_as_before(loaded):
    repository, engine, _ = loaded
    pipeline = resolve_pipeline(repository, "clip_unnamed", 0)
    assert pipeline.text.checkpoint_identity.checkpoint == ""
    assert (pipeline.version, pipeline.checkpoint) == (1, "")
    result = asyncio.run(engine.encode(ModelRef("clip_unnamed", 0), [TextInput("a dog")]))
    assert result.models == [("clip_vision", 1), ("clip_text_unnamed", 1)]


def test_a_collection_accepts_a_variant_of_its_checkpoint_and_refuses_another(retrieval, checkpoints):
    indexed = asyncio.run(
        retrieval.index("photos", _entries("img", _images(3)), ModelRef("clip_plain", 1), False)
    )
    assert indexed.indexed == 3 and indexed.models == [("clip_vision", 1), ("clip_text", 1)]
    (summary,) = asyncio.run(retrieval.collections())
    assert (summary.embedder.pipeline, summary.embedder.version) == ("clip_plain", 1)
    assert summary.embedder.checkpoint == checkpoints[0]

    # The int8 pipeline indexes into it and searches it: its image vectors land beside the fp32 ones.
    more = asyncio.run(
        retrieval.index("photos", _entries("int8-", _images(3)), ModelRef("clip_int8", 0), False)
    )
    assert more.indexed == 3 and more.collection_size == 6
    assert more.models == [("clip_vision_int8", 1), ("clip_text", 1)]
    (same,) = _images(1)
    found = asyncio.run(retrieval.search("photos", same, 6, "", ModelRef("clip_int8", 0)))
    assert found.models[0] == ("clip_vision_int8", 1)
    assert {found.hits[0].id, found.hits[1].id} == {"img0", "int8-0"}  # the same picture, either tower
    assert found.hits[1].score > 0.99

    # So does the image tower on OpenVINO: the same files, the same checkpoint.
    on_openvino = asyncio.run(retrieval.search("photos", same, 2, "", ModelRef("clip_openvino", 0)))
    assert on_openvino.models[0] == ("clip_vision_openvino", 1) and on_openvino.hits[0].id == "img0"

    # Version 2 is another checkpoint: refused before anything is embedded, naming both checkpoints.
    for call in (
        retrieval.search("photos", TextInput("a dog"), 3, "", ModelRef("clip", 2)),
        retrieval.index("photos", _entries("v2-", [TextInput("a dog")]), ModelRef("clip", 2), False),
    ):
        with pytest.raises(NotAllowed) as refused:
            asyncio.run(call)
        assert checkpoints[0] in str(refused.value) and checkpoints[1] in str(refused.value)
    assert asyncio.run(retrieval.collections())[0].size == 6


def test_a_collection_the_variant_made_accepts_the_fp32_pipeline(retrieval, checkpoints):
    asyncio.run(
        retrieval.index("texts", _entries("t", map(TextInput, CAPTIONS)), ModelRef("clip_int8"), False)
    )
    (summary,) = asyncio.run(retrieval.collections())
    assert (summary.embedder.pipeline, summary.embedder.checkpoint) == ("clip_int8", checkpoints[0])
    found = asyncio.run(retrieval.search("texts", TextInput(CAPTIONS[1]), 2, "", ModelRef("clip_plain", 1)))
    assert found.hits[0].id == "t1" and found.hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_a_collection_that_recorded_no_checkpoint_accepts_only_its_pipeline_version(retrieval, loaded):
    store = retrieval.store
    dimension = resolve_pipeline(loaded[0], "clip_plain", 1).embedding_dim
    store.create("old", Embedder("clip_plain", 1, dimension))  # as catalogued before checkpoints were
    asyncio.run(retrieval.index("old", _entries("t", map(TextInput, CAPTIONS)), ModelRef(), False))
    found = asyncio.run(retrieval.search("old", TextInput(CAPTIONS[2]), 1, "", ModelRef()))
    assert found.hits[0].id == "t2" and found.models[0] == ("clip_vision", 1)
    for ref in (ModelRef("clip_int8", 1), ModelRef("clip_plain", 2)):
        with pytest.raises(NotAllowed, match="holds vectors of pipeline 'clip_plain' version 1"):
            asyncio.run(retrieval.search("old", TextInput("a dog"), 1, "", ref))
