"""int8 variants: what tools.quantize writes, that the repository serves it, and that the accuracy check
measures real numbers (a broken variant is refused, nothing is written)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format

from crossmodal.v1 import model_config_pb2 as mc
from server.backends.onnx.session import SessionFactory
from server.core.config import Limits
from server.core.types import ImageInput, ModelRef
from server.engine import Engine
from server.repository.repository import ModelRepository
from tests.fixtures.images import encoded_image
from tools import accuracy, quantize
from tools.accuracy import INT8_BOUND, ModelVersion, compare, onnx_metadata, sha256, source_of
from tools.local_server import ROOT

QUANTIZED_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}


def _config(model_dir: Path) -> mc.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())


def _op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _zero_int8_weights(source: Path, target: Path) -> None:
    """The real quantization, then every int8 weight set to zero: a variant that answers nonsense."""
    real_quantize_graph(source, target)
    model = onnx.load(str(target))
    for initializer in model.graph.initializer:
        if initializer.data_type == onnx.TensorProto.INT8:
            zeros = np.zeros(onnx.numpy_helper.to_array(initializer).shape, dtype=np.int8)
            initializer.CopyFrom(onnx.numpy_helper.from_array(zeros, initializer.name))
    onnx.save(model, str(target))


real_quantize_graph = quantize.quantize_graph


def test_variant_folder_config_and_metadata_say_what_it_is(repository_copy):
    target, figures = quantize.quantize_model(repository_copy, "clip_vision", version=1)

    assert target == ModelVersion(repository_copy, "clip_vision_int8", 1)
    assert sorted(p.name for p in target.directory.iterdir()) == ["model.onnx", "preprocessor_config.json"]
    source_config, config = _config(repository_copy / "clip_vision"), _config(target.directory.parent)
    assert config.name == "clip_vision_int8"
    assert dict(config.parameters) == dict(source_config.parameters)
    assert config.parameters["model_type"].string_value == "clip_vision"

    source_file = repository_copy / "clip_vision" / "1" / "model.onnx"
    metadata = onnx_metadata(target.directory / "model.onnx")
    assert metadata["variant"] == "int8-dynamic"
    assert metadata["variant_of"] == sha256(source_file)
    assert metadata["variant_of_model"] == "clip_vision/1"
    for key, value in onnx_metadata(source_file).items():
        assert metadata[key] == value  # "source" (the checkpoint), logit scale, context length kept
    assert QUANTIZED_OPS & _op_types(target.directory / "model.onnx")
    assert source_of(target) == ModelVersion(repository_copy, "clip_vision", 1)
    assert figures.failures(INT8_BOUND) == [] and figures.inputs >= 200
    assert 0.99 <= figures.cosine_min < 1.0  # measured, not a copy of the source
    assert not list(repository_copy.glob(".int8-*"))


def test_the_repository_serves_the_variant_beside_its_source(repository_copy):
    quantize.quantize_model(repository_copy, "clip_vision", version=1)
    pipeline = _config(repository_copy / "clip")
    pipeline.name = "clip_int8"
    pipeline.parameters["vision_model"].string_value = "clip_vision_int8"
    (repository_copy / "clip_int8").mkdir()
    (repository_copy / "clip_int8" / "config.pbtxt").write_text(text_format.MessageToString(pipeline))
    repository = ModelRepository(repository_copy, SessionFactory())
    repository.load_all()
    engine = Engine(repository, Limits())
    try:
        image = [ImageInput(encoded_image(90, 70, "JPEG", seed=3))]
        exact = asyncio.run(engine.encode(ModelRef("clip", 1), image))
        int8 = asyncio.run(engine.encode(ModelRef("clip_int8", 1), image))
    finally:
        engine.close()
        repository.close()
    assert int8.models[0] == ("clip_vision_int8", 1)
    cosine = float(exact.embeddings[0] @ int8.embeddings[0])
    assert 0.99 < cosine < 1.0


def test_as_version_adds_a_version_of_the_same_model(repository_copy, capsys):
    before = (repository_copy / "clip_text" / "config.pbtxt").read_text()
    target, _ = quantize.quantize_model(repository_copy, "clip_text", as_version=3)

    assert target.directory == repository_copy / "clip_text" / "3"
    assert (target.directory / "tokenizer.json").is_file()
    assert (repository_copy / "clip_text" / "config.pbtxt").read_text() == before
    assert source_of(target) == ModelVersion(repository_copy, "clip_text", 2)  # the newest was quantized
    with pytest.raises(FileExistsError):
        quantize.quantize_model(repository_copy, "clip_text", as_version=3)

    # The accuracy check finds the variant in the repository and its source by the recorded hash.
    assert accuracy.main(["--repository", str(repository_copy)]) == 0
    out = capsys.readouterr().out
    assert "clip_text/3 (clip_text) against its source" in out and "source clip_text/2" in out


def test_a_variant_compared_with_its_own_source_agrees_exactly(exported_repository):
    source = ModelVersion(exported_repository, "clip_text", 2)
    figures = compare(source, source)
    assert figures.cosine_min == pytest.approx(1.0, abs=1e-6)
    assert figures.cosine_mean == pytest.approx(1.0, abs=1e-6)


def test_a_broken_variant_is_refused_with_its_figures_and_nothing_is_written(
    repository_copy, monkeypatch, capsys
):
    monkeypatch.setattr(quantize, "quantize_graph", _zero_int8_weights)
    with pytest.raises(quantize.VariantRefused) as refused:
        quantize.quantize_model(repository_copy, "clip_vision", version=1)
    assert not refused.value.figures.cosine_min >= 0.99  # zero vectors (NaN) or far off
    assert not (repository_copy / "clip_vision_int8").exists()
    assert not list(repository_copy.glob(".int8-*"))

    code = quantize.main(["clip_text", "--repository", str(repository_copy), "--as-version", "3"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cosine min" in err and "bound: cosine min >= 0.99, mean >= 0.995" in err
    assert not (repository_copy / "clip_text" / "3").exists()
    assert sorted(p.name for p in (repository_copy / "clip_text").iterdir()) == ["1", "2", "config.pbtxt"]


def test_translator_variant_is_measured_by_translation_agreement(repository_copy, monkeypatch):
    source = ModelVersion(repository_copy, "opus_mt_zh_en", 1)
    variant = ModelVersion(repository_copy, "opus_mt_zh_en", 0, repository_copy / "scratch")
    quantize.make_int8(source, variant.directory)
    graphs = sorted(p.name for p in variant.directory.glob("*.onnx"))
    assert graphs == sorted(p.name for p in source.directory.glob("*.onnx"))
    for graph in graphs:
        assert onnx_metadata(variant.directory / graph)["variant_of"] == sha256(source.directory / graph)
    figures = compare(source, variant)
    assert figures.inputs >= 200 and 0.0 <= figures.agreement <= 1.0

    broken = ModelVersion(repository_copy, "opus_mt_zh_en", 0, repository_copy / "broken")
    monkeypatch.setattr(quantize, "quantize_graph", _zero_int8_weights)
    quantize.make_int8(source, broken.directory)
    assert compare(source, broken).agreement < figures.agreement


def test_the_demo_image_tower_holds_the_int8_bound_on_the_demo_world(tmp_path):
    repository = tmp_path / "model_repository"
    shutil.copytree(ROOT / "model_repository", repository)
    _, figures = quantize.quantize_model(repository, "clip_vision", world=True)
    assert figures.failures(INT8_BOUND) == []
    assert {figure.name for figure in figures.world} == {"zero-shot top-1", "Chinese text -> image top-1"}
    assert all(figure.reference > 0.8 for figure in figures.world)  # the demo models know their world
