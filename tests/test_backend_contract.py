"""The ONNX backends implement the backend contract: capabilities, signatures, infer on named tensors."""

from __future__ import annotations

import numpy as np
import pytest

from server.backends.base import Backend, Capability, TensorSpec, has
from server.backends.onnx.session import SessionFactory
from server.core.errors import InvalidInput
from server.core.types import TranslateOptions
from server.repository.repository import ModelRepository


@pytest.fixture(scope="module")
def repository(exported_repository):
    loaded = ModelRepository(exported_repository, SessionFactory())
    loaded.load_all()
    yield loaded
    loaded.close()


def test_each_backend_declares_its_capability(repository):
    vision, text = repository.model("clip_vision", 0), repository.model("clip_text", 0)
    translator = repository.model("opus_mt_zh_en", 0)
    for backend in (vision, text, translator):
        assert isinstance(backend, Backend)
    assert has(vision, Capability.EMBED_IMAGES) and not has(vision, Capability.EMBED_TEXTS)
    assert has(text, Capability.EMBED_TEXTS) and not has(text, Capability.TRANSLATE)
    assert has(translator, Capability.TRANSLATE) and not has(translator, Capability.EMBED_IMAGES)


def test_signatures_show_the_tensors_of_the_graphs(repository):
    vision, text = repository.model("clip_vision", 0), repository.model("clip_text", 0)
    height, width = vision.preprocessor.output_size
    dim = vision.embedding_dim
    assert vision.signature().inputs == (TensorSpec("pixel_values", "FP32", (-1, 3, height, width)),)
    assert vision.signature().outputs == (TensorSpec("image_embeds", "FP32", (-1, dim)),)
    assert [(s.name, s.optional) for s in text.signature().inputs] == [
        ("input_ids", False),
        ("attention_mask", True),
    ]
    assert text.signature().outputs == (TensorSpec("text_embeds", "FP32", (-1, text.embedding_dim)),)
    assert {vision.platform, text.platform} == {"onnxruntime_onnx"}
    marian = repository.model("opus_mt_zh_en", 0).signature()
    assert [s.name for s in marian.outputs] == ["TRANSLATIONS", "SCORES"]
    assert "num_beams" in marian.parameters


def test_infer_matches_the_capability_methods(repository):
    vision, text = repository.model("clip_vision", 0), repository.model("clip_text", 0)
    height, width = vision.preprocessor.output_size
    pixels = np.random.default_rng(0).normal(size=(2, 3, height, width)).astype(np.float32)
    by_tensor = vision.infer({"pixel_values": pixels}, {}).result()["image_embeds"]
    np.testing.assert_allclose(by_tensor, vision.submit_images(list(pixels)).result(), rtol=1e-6)
    ids = text.tokenizer.token_ids(["a dog in the snow", "a cat"])
    padded, mask = text.tokenizer.pad(ids)
    by_ids = text.infer({"input_ids": padded, "attention_mask": mask}, {}).result()["text_embeds"]
    np.testing.assert_allclose(by_ids, text.submit_texts(["a dog in the snow", "a cat"]).result(), atol=1e-6)


def test_infer_refuses_bad_tensors_with_the_tensor_named(repository):
    vision, text = repository.model("clip_vision", 0), repository.model("clip_text", 0)
    height, width = vision.preprocessor.output_size
    with pytest.raises(InvalidInput, match=r"input 'pixel_values' must have shape \[-1, 3, "):
        vision.infer({"pixel_values": np.zeros((1, 3, height + 1, width), np.float32)}, {})
    bad = np.zeros((2, 3, height, width), np.float32)
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInput, match="row 1 holds NaN or infinite values"):
        vision.infer({"pixel_values": bad}, {})
    with pytest.raises(InvalidInput, match="must both be"):
        text.infer({"input_ids": np.ones((2, 3), np.int64), "attention_mask": np.ones((2, 4), np.int64)}, {})
    vocab = text.tokenizer.vocab_size
    with pytest.raises(InvalidInput, match=rf"input_ids row 0: token ids must be in 0..{vocab - 1}"):
        text.infer({"input_ids": np.array([[vocab]], np.int64)}, {})


def test_translator_queues_and_answers_through_a_pending(repository):
    translator = repository.model("opus_mt_zh_en", 0)
    options = TranslateOptions(num_beams=2, num_hypotheses=2, max_length=8)
    pending = translator.submit_translations(["你好", "两只狗"], options)
    assert pending.result() == translator.translate(["你好", "两只狗"], options)
    with pytest.raises(InvalidInput, match="num_hypotheses"):
        translator.check_options(TranslateOptions(num_beams=2, num_hypotheses=3))


def test_the_repository_answers_the_spec_a_version_was_loaded_with(repository):
    spec = repository.model_spec("clip_text", 0)
    model = repository.model("clip_text", 0)
    assert (spec.name, spec.platform) == ("clip_text", "onnxruntime_onnx")
    assert spec is model.spec and spec.parameters["model_type"] == "clip_text"
    assert spec.proto.name == "clip_text"  # as written, for KServe's ModelConfig
