"""The engine without a network: ordering, similarity, softmax, classification, versions, errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from transformers import CLIPModel

from server.backends.onnx.session import SessionFactory
from server.core.config import Limits
from server.core.errors import InvalidInput, LimitExceeded, ModelNotFound
from server.core.types import ImageInput, ModelRef, TextInput, TranslateOptions
from server.engine import Engine
from server.repository.repository import ModelRepository
from tests.fixtures.server import encoded_image


@pytest.fixture(scope="module")
def engine(exported_repository) -> Engine:
    repository = ModelRepository(exported_repository, SessionFactory())
    repository.load_all()
    return Engine(repository, Limits(max_items=50, max_text_chars=200))


@pytest.fixture(scope="module")
def reference_logit_scale(tiny_checkpoint_v2) -> float:
    return float(CLIPModel.from_pretrained(tiny_checkpoint_v2).logit_scale.exp().item())


IMAGE_A = ImageInput(encoded_image(90, 70, "PNG", seed=1))
IMAGE_B = ImageInput(encoded_image(50, 120, "JPEG", seed=2))
NEWEST = ModelRef()


def test_mixed_items_keep_their_order_and_are_normalised(engine):
    items = [IMAGE_A, TextInput("a dog in the snow"), IMAGE_B, TextInput("一只猫在桌子上")]
    together = asyncio.run(engine.encode(NEWEST, items)).embeddings
    alone = np.concatenate([asyncio.run(engine.encode(NEWEST, [item])).embeddings for item in items])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(together[0], together[2])


def test_chinese_texts_are_segmented_translated_and_the_best_translation_encoded(engine):
    result = asyncio.run(
        engine.encode(NEWEST, [TextInput("London at night"), IMAGE_A, TextInput("夜晚的伦敦")])
    )
    english, chinese = result.texts
    assert (english.language, english.encoded_text, english.tokens, english.translations) == (
        "en",
        "London at night",
        (),
        (),
    )
    assert chinese.language == "zh" and chinese.tokens == ("夜晚", "的", "伦敦")
    assert len(chinese.translations) == 5
    scores = [h.score for h in chinese.translations]
    assert scores == sorted(scores, reverse=True)
    assert chinese.encoded_text == chinese.translations[0].text
    as_english = asyncio.run(engine.encode(NEWEST, [TextInput(chinese.encoded_text)])).embeddings[0]
    np.testing.assert_allclose(result.embeddings[2], as_english, atol=1e-6)
    assert result.models == [("clip_vision", 2), ("clip_text", 2), ("opus_mt_zh_en", 1)]
    assert asyncio.run(engine.encode(NEWEST, [TextInput("only english")])).models == [
        ("clip_vision", 2),
        ("clip_text", 2),
    ]


def test_translate_defaults_and_options(engine):
    result = asyncio.run(
        engine.translate(ModelRef(), ["在雪地里有两条狗", "一只猫在桌子上"], TranslateOptions())
    )
    assert [len(t.translations) for t in result.texts] == [5, 5]
    assert result.texts[0].tokens == ("在", "雪地", "里", "有", "两条", "狗")
    assert result.models == [("opus_mt_zh_en", 1)]
    three = asyncio.run(
        engine.translate(ModelRef("opus_mt_zh_en", 1), ["夜晚的伦敦"], TranslateOptions(num_beams=3))
    )
    assert len(three.texts[0].translations) == 3


@pytest.mark.parametrize(
    ("texts", "options", "error", "message"),
    [
        ([], TranslateOptions(), InvalidInput, "texts: empty"),
        (["好", " "], TranslateOptions(), InvalidInput, r"texts\[1\]: text is empty"),
        (["好"], TranslateOptions(num_beams=-1), InvalidInput, "num_beams must be"),
        (["好"], TranslateOptions(num_beams=1000), InvalidInput, "num_beams must be"),
        (["好"], TranslateOptions(num_beams=2, num_hypotheses=3), InvalidInput, "cannot exceed num_beams"),
        (["好"], TranslateOptions(max_length=1), InvalidInput, "max_length must be"),
        (["好"], TranslateOptions(max_length=100000), InvalidInput, "max_length must be"),
        (["好"], TranslateOptions(length_penalty=float("nan")), InvalidInput, "length_penalty must be"),
    ],
)
def test_translate_rejects_bad_options(engine, texts, options, error, message):
    with pytest.raises(error, match=message):
        asyncio.run(engine.translate(ModelRef(), texts, options))


def test_translate_model_names(engine):
    with pytest.raises(ModelNotFound, match="is a clip_text model, not a translator"):
        asyncio.run(engine.translate(ModelRef("clip_text"), ["好"], TranslateOptions()))
    with pytest.raises(ModelNotFound, match="no model named 'nope'"):
        asyncio.run(engine.translate(ModelRef("nope"), ["好"], TranslateOptions()))
    with pytest.raises(ModelNotFound, match="has no version 7"):
        asyncio.run(engine.translate(ModelRef("", 7), ["好"], TranslateOptions()))


def test_without_a_translator_chinese_is_embedded_as_given(repository_copy):
    pipeline = repository_copy / "clip" / "config.pbtxt"
    pipeline.write_text(pipeline.read_text().replace('"translator"', '"unused"'))
    repository = ModelRepository(repository_copy, SessionFactory())
    repository.load_all()
    engine = Engine(repository, Limits())
    result = asyncio.run(engine.encode(NEWEST, [TextInput("夜晚的伦敦")]))
    assert result.texts[0].encoded_text == "夜晚的伦敦" and result.texts[0].tokens == ("夜晚", "的", "伦敦")
    assert result.texts[0].translations == ()
    with pytest.raises(ModelNotFound, match="names no translator"):
        asyncio.run(engine.translate(ModelRef(), ["好"], TranslateOptions()))


def test_compare_is_cosine_with_softmax_of_the_model_logit_scale(engine, reference_logit_scale):
    queries = [IMAGE_A, TextInput("two dogs")]
    candidates = [TextInput("a cat"), IMAGE_B, TextInput("a car on the road")]
    result = asyncio.run(engine.compare(NEWEST, queries, candidates))
    q = asyncio.run(engine.encode(NEWEST, queries)).embeddings
    c = asyncio.run(engine.encode(NEWEST, candidates)).embeddings
    np.testing.assert_allclose(result.similarity, q @ c.T, atol=1e-5)
    assert result.logit_scale == pytest.approx(reference_logit_scale, rel=1e-6)
    expected = torch.softmax(torch.tensor(q @ c.T) * reference_logit_scale, dim=1).numpy()
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    assert [t.text for t in result.texts] == ["two dogs", "a cat", "a car on the road"]


def test_classify_applies_template_sorts_and_cuts_to_top_k(engine):
    labels = ["dog", "cat", "car", "tree"]
    full = asyncio.run(engine.classify(NEWEST, [IMAGE_A, IMAGE_B], labels, "a photo of {}", 0))
    compared = asyncio.run(
        engine.compare(NEWEST, [IMAGE_A, IMAGE_B], [TextInput(f"a photo of {label}") for label in labels])
    )
    for row, scores in enumerate(full.results):
        assert [s.probability for s in scores] == sorted((s.probability for s in scores), reverse=True)
        assert sorted(s.index for s in scores) == [0, 1, 2, 3]
        for score in scores:
            assert score.label == labels[score.index]
            assert score.probability == pytest.approx(compared.probabilities[row, score.index], abs=1e-6)
            assert score.similarity == pytest.approx(compared.similarity[row, score.index], abs=1e-6)
    top2 = asyncio.run(engine.classify(NEWEST, [IMAGE_A, IMAGE_B], labels, "a photo of {}", 2))
    assert [[s.index for s in r] for r in top2.results] == [[s.index for s in r[:2]] for r in full.results]
    assert [t.text for t in full.labels] == [f"a photo of {label}" for label in labels]


def test_classify_without_template_uses_labels_as_given(engine):
    result = asyncio.run(engine.classify(NEWEST, [TextInput("a dog")], ["dog", "狗"], "", 10))
    assert [t.encoded_text for t in result.labels] == ["dog", result.labels[1].translations[0].text]
    assert [t.language for t in result.labels] == ["en", "zh"]
    assert len(result.results[0]) == 2


@pytest.mark.parametrize(
    ("labels", "template", "top_k", "message"),
    [
        ([], "", 0, "labels: empty"),
        (["dog", " "], "", 0, r"labels\[1\]: label is empty"),
        (["dog"], "a photo of", 0, "must contain {}"),
        (["dog"], "", -1, "top_k must be"),
    ],
)
def test_classify_rejects_bad_arguments(engine, labels, template, top_k, message):
    with pytest.raises(InvalidInput, match=message):
        asyncio.run(engine.classify(NEWEST, [IMAGE_A], labels, template, top_k))


def test_versions_pin_both_towers_and_are_reported(engine):
    v1 = asyncio.run(engine.encode(ModelRef("clip", 1), [IMAGE_A, TextInput("dog")]))
    v2 = asyncio.run(engine.encode(ModelRef("", 2), [IMAGE_A, TextInput("dog")]))
    newest = asyncio.run(engine.encode(NEWEST, [IMAGE_A, TextInput("dog")]))
    assert v1.models == [("clip_vision", 1), ("clip_text", 1)]
    assert newest.models == [("clip_vision", 2), ("clip_text", 2)]
    np.testing.assert_array_equal(v2.embeddings, newest.embeddings)
    assert not np.allclose(v1.embeddings, v2.embeddings)


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        (ModelRef("clip", 3), ModelNotFound, "no version 3"),
        (ModelRef("nope", 0), ModelNotFound, "no pipeline named 'nope'"),
        (ModelRef("clip_text", 0), ModelNotFound, "it is a model, not a pipeline"),
        (ModelRef("clip", -1), InvalidInput, "model.version must be"),
    ],
)
def test_unknown_models_and_versions(engine, ref, error, message):
    with pytest.raises(error, match=message):
        asyncio.run(engine.encode(ref, [TextInput("dog")]))


def test_bad_items_are_named(engine):
    with pytest.raises(InvalidInput, match=r"items: empty"):
        asyncio.run(engine.encode(NEWEST, []))
    with pytest.raises(InvalidInput, match=r"items\[1\]: not a recognised image"):
        asyncio.run(engine.encode(NEWEST, [IMAGE_A, ImageInput(b"%PDF-1.4 not an image")]))
    with pytest.raises(InvalidInput, match=r"candidates\[0\]: image is empty"):
        asyncio.run(engine.compare(NEWEST, [TextInput("x")], [ImageInput(b"")]))


def test_limits_answer_with_the_limit(engine):
    with pytest.raises(LimitExceeded, match="51 given; the limit is 50"):
        asyncio.run(engine.encode(NEWEST, [TextInput("x")] * 51))
    with pytest.raises(LimitExceeded, match=r"items\[0\]: text has 201 characters"):
        asyncio.run(engine.encode(NEWEST, [TextInput("x" * 201)]))
