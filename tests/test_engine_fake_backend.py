"""The engine, its pipelines and batchers, and the whole gRPC server, over the NumPy fake backends, in a
process where torch, transformers and onnxruntime cannot be imported: serving models of other backends
needs none of them (the registry imports the ONNX backends only when a model of theirs loads).

Each test runs one `check_*` function below in such a process (so the checks import nothing heavy at the
top of this module either); expectations are computed with the fakes' own arithmetic and NumPy.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from server.core.types import ImageInput, ModelRef, TextInput, TranslateOptions
from tests.fixtures.fake_backend import (
    FAIL_WORD,
    FakeBatchError,
    fake_repository,
    fake_translations,
    image_embedding,
    registered_fake_backends,
    text_embedding,
)
from tests.fixtures.images import solid_image

ROOT = Path(__file__).resolve().parents[1]
UNIMPORTABLE = ("torch", "transformers", "onnxruntime")
LOGIT_SCALE = 10.0  # not CLIP's 100: the probabilities are then far from one-hot, and read from the model
DIM = 16
WAIT_S = 30.0


def run_without_heavy_libraries(check: str, tmp_path: Path) -> None:
    """Runs `check(tmp_path)` of this module in a fresh interpreter in which importing any of
    UNIMPORTABLE fails; fails with that process's output when the check does."""
    code = "\n".join(
        [
            "import sys",
            f"sys.modules.update(dict.fromkeys({UNIMPORTABLE!r}))  # None: importing them raises",
            "from pathlib import Path",
            f"from tests.test_engine_fake_backend import {check}",
            f"{check}(Path({str(tmp_path)!r}))",
        ]
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{check} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


# -- setting up an engine over the fakes ---------------------------------------------------------------


def engine_over_fakes(root: Path):
    """An Engine over a fake repository (dynamic batching, no queue delay); close both after use."""
    from server.core.config import Limits
    from server.engine import Engine

    repository = fake_repository(root / "repository", dim=DIM, logit_scale=LOGIT_SCALE)
    return Engine(repository, Limits()), repository


def with_engine(check):
    """Runs the coroutine `check(engine, repository)` with the fakes registered, then closes everything."""

    def run(root: Path) -> None:
        with registered_fake_backends():
            engine, repository = engine_over_fakes(root)
            try:
                asyncio.run(asyncio.wait_for(check(engine, repository), WAIT_S))
            finally:
                engine.close()
                repository.close()

    run.__name__ = check.__name__
    return run


async def until(condition, what: str) -> None:
    """Waits (without blocking the loop) until condition() holds."""
    for _ in range(int(WAIT_S / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def encoding(engine, *items) -> asyncio.Future:
    """An Encode call of `items`, started now as a task."""
    return asyncio.ensure_future(engine.encode(ModelRef(), list(items)))


async def holding_the_worker(engine, model, item) -> asyncio.Future:
    """Starts a call of `item` whose run `model` holds at its closed gate: the model's only batch
    worker is busy, so later calls queue until the test opens the gate."""
    model.gate.clear()
    model.running.clear()
    holder = encoding(engine, item)
    await until(model.running.is_set, f"the run of {model.name} holds its only batch worker")
    return holder


RED, TEAL = (255, 0, 0), (0, 128, 128)


def colour(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.array([rgb], dtype=np.float64) / 255.0


# -- the checks ------------------------------------------------------------------------------------------


@with_engine
async def check_encode_keeps_item_order(engine, repository) -> None:
    items = [
        TextInput("a dog"),
        ImageInput(solid_image(RED)),
        TextInput("two cats"),
        ImageInput(solid_image(TEAL)),
    ]
    result = await engine.encode(ModelRef(), items)
    expected = np.concatenate(
        [
            text_embedding(["a dog"], DIM),
            image_embedding(colour(RED), DIM),
            text_embedding(["two cats"], DIM),
            image_embedding(colour(TEAL), DIM),
        ]
    )
    np.testing.assert_allclose(result.embeddings, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-6)
    assert [t.text for t in result.texts] == ["a dog", "two cats"]
    assert [t.encoded_text for t in result.texts] == ["a dog", "two cats"]
    assert sorted(result.models) == [("fake_text", 1), ("fake_vision", 1)]
    # One run per tower after the warm-up: the call's items were batched together.
    assert repository.model("fake_text", 1).runs[1:] == [["a dog", "two cats"]]
    assert len(repository.model("fake_vision", 1).runs[1:]) == 1


@with_engine
async def check_chinese_text_is_embedded_as_its_best_translation(engine, repository) -> None:
    result = await engine.encode(ModelRef(), [TextInput("两只狗"), TextInput("a dog")])
    nbest = fake_translations("两只狗", 2)  # the fake's default: 2 beams, all of them returned
    chinese, english = result.texts
    assert chinese.language == "zh" and chinese.translations == tuple(nbest)
    assert chinese.encoded_text == nbest[0].text and chinese.tokens
    assert english.language == "en" and english.translations == ()
    expected = text_embedding([nbest[0].text, "a dog"], DIM)
    np.testing.assert_allclose(result.embeddings, expected, atol=1e-6)
    assert ("fake_translator", 1) in result.models

    translated = await engine.translate(ModelRef(), ["你好"], TranslateOptions(num_beams=3))
    assert translated.texts[0].translations == tuple(fake_translations("你好", 3))
    assert translated.models == [("fake_translator", 1)]


@with_engine
async def check_compare_and_classify_probabilities(engine, repository) -> None:
    queries = [ImageInput(solid_image(RED)), TextInput("a red dog")]
    labels = ["red", "teal", "dog"]
    compared = await engine.compare(ModelRef(), queries, [TextInput(label) for label in labels])
    query_vectors = np.concatenate([image_embedding(colour(RED), DIM), text_embedding(["a red dog"], DIM)])
    similarity = query_vectors @ text_embedding(labels, DIM).T
    assert compared.logit_scale == LOGIT_SCALE
    np.testing.assert_allclose(compared.similarity, similarity, atol=1e-5)
    np.testing.assert_allclose(compared.probabilities, softmax(LOGIT_SCALE * similarity), atol=1e-5)

    classified = await engine.classify(ModelRef(), [ImageInput(solid_image(TEAL))], labels, "a {} thing", 2)
    prompts = [f"a {label} thing" for label in labels]
    row = (image_embedding(colour(TEAL), DIM) @ text_embedding(prompts, DIM).T)[0]
    probabilities = softmax(LOGIT_SCALE * row)
    best = np.argsort(-probabilities, kind="stable")[:2]
    scores = classified.results[0]
    assert [s.index for s in scores] == best.tolist()
    assert [s.label for s in scores] == [labels[i] for i in best]
    np.testing.assert_allclose([s.probability for s in scores], probabilities[best], atol=1e-5)
    np.testing.assert_allclose([s.similarity for s in scores], row[best], atol=1e-5)
    assert [t.encoded_text for t in classified.labels] == prompts


@with_engine
async def check_a_failed_batch_fails_every_call_in_it(engine, repository) -> None:
    text = repository.model("fake_text", 1)
    holder = await holding_the_worker(engine, text, TextInput("held first"))
    poisoned = encoding(engine, TextInput(f"{FAIL_WORD} now"))
    bystander = encoding(engine, TextInput("an innocent text"))
    await until(lambda: text.batcher.queued_items() == 2, "both later calls are queued")
    text.gate.set()
    assert (await holder).embeddings.shape == (1, DIM)
    for call in (poisoned, bystander):
        with pytest.raises(FakeBatchError):
            await call
    assert sorted(text.runs[-1]) == sorted([f"{FAIL_WORD} now", "an innocent text"])  # one run, both in it
    after = await engine.encode(ModelRef(), [TextInput("a later text")])  # the model still serves
    np.testing.assert_allclose(after.embeddings, text_embedding(["a later text"], DIM), atol=1e-6)


@with_engine
async def check_a_cancelled_call_withdraws_its_queued_items(engine, repository) -> None:
    text = repository.model("fake_text", 1)
    holder = await holding_the_worker(engine, text, TextInput("held first"))
    leaving = encoding(engine, TextInput("gone one"), TextInput("gone two"))
    staying = encoding(engine, TextInput("still wanted"))
    await until(lambda: text.batcher.queued_items() == 3, "the later calls are queued")
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert text.batcher.queued_items() == 1  # its two items left the queue at once
    text.gate.set()
    await holder
    kept = await staying
    np.testing.assert_allclose(kept.embeddings, text_embedding(["still wanted"], DIM), atol=1e-6)
    ran = [item for run in text.runs for item in run]
    assert "gone one" not in ran and "gone two" not in ran
    assert text.runs[-1] == ["still wanted"]


@with_engine
async def check_concurrent_calls_share_a_run(engine, repository) -> None:
    vision = repository.model("fake_vision", 1)
    first = await holding_the_worker(engine, vision, ImageInput(solid_image(RED)))
    shades = [(10 * i, 200, 40) for i in range(1, 5)]
    later = [encoding(engine, ImageInput(solid_image(shade))) for shade in shades]
    await until(lambda: vision.batcher.queued_items() == len(shades), "every later call is queued")
    vision.gate.set()
    await first
    results = await asyncio.gather(*later)
    for shade, result in zip(shades, results, strict=True):
        np.testing.assert_allclose(result.embeddings, image_embedding(colour(shade), DIM), atol=1e-6)
    assert len(vision.runs) == 3 and len(vision.runs[-1]) == len(shades)  # warm-up, the first, all the rest
    stats = vision.batcher.stats()
    assert stats.batch_sizes[len(shades)] == 1


# -- the tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check",
    [
        "check_encode_keeps_item_order",
        "check_chinese_text_is_embedded_as_its_best_translation",
        "check_compare_and_classify_probabilities",
        "check_a_failed_batch_fails_every_call_in_it",
        "check_a_cancelled_call_withdraws_its_queued_items",
        "check_concurrent_calls_share_a_run",
    ],
)
def test_engine_over_fake_backends_without_torch(check, tmp_path):
    run_without_heavy_libraries(check, tmp_path)


def test_the_checks_fail_when_the_heavy_libraries_are_needed(tmp_path):
    """The isolation is real: a check that imports torch fails in that process."""
    with pytest.raises(AssertionError, match="check_imports_torch failed"):
        run_without_heavy_libraries("check_imports_torch", tmp_path)


def check_imports_torch(root: Path) -> None:
    import torch  # noqa: F401


def test_a_gate_left_closed_fails_the_run_instead_of_hanging(monkeypatch):
    """The fakes' gate is bounded: a test that forgets to open it gets an error, not a hung suite."""
    from server.repository.specs import model_spec
    from tests.fixtures import fake_backend
    from tests.fixtures.fake_backend import FakeSource, FakeTextEmbedder, fake_config

    monkeypatch.setattr(fake_backend, "GATE_TIMEOUT_S", 0.05)
    model = FakeTextEmbedder(FakeSource("t", 1, model_spec(fake_config("t", FakeTextEmbedder.model_type))))
    try:
        model.gate.clear()
        with pytest.raises(TimeoutError, match="never opened the gate"):
            model.submit_texts(["a text"]).result()
    finally:
        model.close()


def check_the_server_answers_over_grpc(root: Path) -> None:
    from crossmodal import CrossModalClient
    from tests.fixtures.fake_backend import write_fake_repository
    from tests.fixtures.server import in_process_server

    with registered_fake_backends():
        repository = write_fake_repository(root / "repository", dim=DIM, logit_scale=LOGIT_SCALE)
        with in_process_server(repository) as served, CrossModalClient(served.address) as client:
            encoded = client.encode(["a dog", solid_image(RED)])
            compared = client.compare([solid_image(TEAL)], ["teal", "a dog"])
    expected = np.concatenate([text_embedding(["a dog"], DIM), image_embedding(colour(RED), DIM)])
    np.testing.assert_allclose([e.values for e in encoded.embeddings], expected, atol=1e-6)
    assert sorted((m.name, m.version) for m in encoded.model.models) == [("fake_text", 1), ("fake_vision", 1)]
    similarity = image_embedding(colour(TEAL), DIM) @ text_embedding(["teal", "a dog"], DIM).T
    np.testing.assert_allclose(compared.similarity, similarity.ravel(), atol=1e-5)
    np.testing.assert_allclose(compared.probabilities, softmax(LOGIT_SCALE * similarity).ravel(), atol=1e-5)


def test_the_server_over_fake_backends_without_torch(tmp_path):
    run_without_heavy_libraries("check_the_server_answers_over_grpc", tmp_path)
