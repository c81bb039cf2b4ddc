"""The NumPy fake backends load through the registry and repository like any model kind, and keep the
backend contract (capabilities, signature, infer, warm-up, close)."""

from __future__ import annotations

import numpy as np
import pytest

from server.backends.base import Capability, has
from server.backends.registry import BACKENDS, platforms
from server.core.errors import InvalidInput, ModelNotReady
from server.repository.repository import State
from tests.fixtures.fake_backend import (
    FAKE_PLATFORM,
    FakeBackend,
    FakeImageEmbedder,
    FakeTextEmbedder,
    FakeTranslator,
    fake_repository,
    image_embedding,
    text_embedding,
)


def test_the_fake_kinds_are_registered_only_for_the_test(fake_backends):
    for kind in (FakeImageEmbedder, FakeTextEmbedder, FakeTranslator):
        assert BACKENDS[(FAKE_PLATFORM, kind.model_type)] is kind
    assert FAKE_PLATFORM in platforms()  # so the repository accepts their configs


def test_the_fake_kinds_are_gone_after_it():
    assert FAKE_PLATFORM not in platforms()
    assert not any(isinstance(kind, type) and issubclass(kind, FakeBackend) for kind in BACKENDS.values())


def test_a_fake_repository_serves_each_kind_by_capability(fake_backends, tmp_path):
    repository = fake_repository(tmp_path, dim=8, logit_scale=20.0)
    try:
        states = {(s.name, s.version): (s.state, s.model.provider) for s in repository.index()}
        ready = (State.READY, "NumPy")
        assert states == {("fake_vision", 1): ready, ("fake_text", 1): ready, ("fake_translator", 1): ready}
        assert repository.pipelines() == ["clip"]
        vision, text = repository.model("fake_vision", 0), repository.model("fake_text", 0)
        translator = repository.model("fake_translator", 0)
        assert has(vision, Capability.EMBED_IMAGES) and has(text, Capability.EMBED_TEXTS)
        assert has(translator, Capability.TRANSLATE) and not has(text, Capability.TRANSLATE)
        assert text.logit_scale == 20.0 and text.signature().outputs[0].shape == (-1, 8)

        texts = np.array([b"a dog", b"two cats"], dtype=object)
        embeds = text.infer({"text": texts}, {}).result()["text_embeds"]
        np.testing.assert_allclose(embeds, text_embedding(["a dog", "two cats"], 8), atol=1e-6)
        colours = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
        embeds = vision.infer({"mean_colour": colours}, {}).result()["image_embeds"]
        np.testing.assert_allclose(embeds, image_embedding(colours, 8), atol=1e-6)
        with pytest.raises(InvalidInput, match="mean_colour"):
            vision.infer({"pixels": colours}, {})
    finally:
        repository.close()
    assert text.closed and vision.closed
    with pytest.raises(ModelNotReady):  # a closed batcher takes no new work
        text.submit_texts(["late"])
