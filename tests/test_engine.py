"""The engine without a network: ordering, similarity, softmax, classification, versions, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import CLIPModel

from server.config import Limits
from server.engine import Engine
from server.errors import InvalidInput, LimitExceeded, ModelNotFound
from server.inputs import ImageInput, ModelRef, TextInput
from server.repository.repository import ModelRepository
from server.runtime.session import SessionFactory
from tests.helpers import encoded_image


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
    together = engine.encode(NEWEST, items).embeddings
    alone = np.concatenate([engine.encode(NEWEST, [item]).embeddings for item in items])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(together[0], together[2])


def test_texts_report_language_and_what_was_encoded(engine):
    result = engine.encode(NEWEST, [TextInput("London at night"), IMAGE_A, TextInput("夜晚的伦敦")])
    assert [(t.text, t.language, t.encoded_text) for t in result.texts] == [
        ("London at night", "en", "London at night"),
        ("夜晚的伦敦", "zh", "夜晚的伦敦"),
    ]


def test_compare_is_cosine_with_softmax_of_the_model_logit_scale(engine, reference_logit_scale):
    queries = [IMAGE_A, TextInput("two dogs")]
    candidates = [TextInput("a cat"), IMAGE_B, TextInput("a car on the road")]
    result = engine.compare(NEWEST, queries, candidates)
    q = engine.encode(NEWEST, queries).embeddings
    c = engine.encode(NEWEST, candidates).embeddings
    np.testing.assert_allclose(result.similarity, q @ c.T, atol=1e-5)
    assert result.logit_scale == pytest.approx(reference_logit_scale, rel=1e-6)
    expected = torch.softmax(torch.tensor(q @ c.T) * reference_logit_scale, dim=1).numpy()
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    assert [t.text for t in result.texts] == ["two dogs", "a cat", "a car on the road"]


def test_classify_applies_template_sorts_and_cuts_to_top_k(engine):
    labels = ["dog", "cat", "car", "tree"]
    full = engine.classify(NEWEST, [IMAGE_A, IMAGE_B], labels, "a photo of {}", 0)
    compared = engine.compare(
        NEWEST, [IMAGE_A, IMAGE_B], [TextInput(f"a photo of {label}") for label in labels]
    )
    for row, scores in enumerate(full.results):
        assert [s.probability for s in scores] == sorted((s.probability for s in scores), reverse=True)
        assert sorted(s.index for s in scores) == [0, 1, 2, 3]
        for score in scores:
            assert score.label == labels[score.index]
            assert score.probability == pytest.approx(compared.probabilities[row, score.index], abs=1e-6)
            assert score.similarity == pytest.approx(compared.similarity[row, score.index], abs=1e-6)
    top2 = engine.classify(NEWEST, [IMAGE_A, IMAGE_B], labels, "a photo of {}", 2)
    assert [[s.index for s in r] for r in top2.results] == [[s.index for s in r[:2]] for r in full.results]
    assert [t.text for t in full.labels] == [f"a photo of {label}" for label in labels]


def test_classify_without_template_uses_labels_as_given(engine):
    result = engine.classify(NEWEST, [TextInput("a dog")], ["dog", "狗"], "", 10)
    assert [t.encoded_text for t in result.labels] == ["dog", "狗"]
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
        engine.classify(NEWEST, [IMAGE_A], labels, template, top_k)


def test_versions_pin_both_towers_and_are_reported(engine):
    v1 = engine.encode(ModelRef("clip", 1), [IMAGE_A, TextInput("dog")])
    v2 = engine.encode(ModelRef("", 2), [IMAGE_A, TextInput("dog")])
    newest = engine.encode(NEWEST, [IMAGE_A, TextInput("dog")])
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
        engine.encode(ref, [TextInput("dog")])


def test_bad_items_are_named(engine):
    with pytest.raises(InvalidInput, match=r"items: empty"):
        engine.encode(NEWEST, [])
    with pytest.raises(InvalidInput, match=r"items\[1\]: not a recognised image"):
        engine.encode(NEWEST, [IMAGE_A, ImageInput(b"%PDF-1.4 not an image")])
    with pytest.raises(InvalidInput, match=r"candidates\[0\]: image is empty"):
        engine.compare(NEWEST, [TextInput("x")], [ImageInput(b"")])


def test_limits_answer_with_the_limit(engine):
    with pytest.raises(LimitExceeded, match="51 given; the limit is 50"):
        engine.encode(NEWEST, [TextInput("x")] * 51)
    with pytest.raises(LimitExceeded, match=r"items\[0\]: text has 201 characters"):
        engine.encode(NEWEST, [TextInput("x" * 201)])
