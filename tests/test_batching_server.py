"""Through a real gRPC server: concurrent calls share model runs, and each gets its own results."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from crossmodal.client import CrossModalClient
from server.repository.model_config import load_model_config
from tests.fixtures.server import ROOT, encoded_image, in_process_server

CALLS = 12
# Sentences the demo translator renders differently, so that a mixed-up answer shows.
CHINESE = (
    "在雪地里有两条狗",
    "一只猫在桌子上",
    "两条狗在桌子上",
    "夜晚的伦敦",
    "一只狗在雪地里",
    "红色汽车在海滩上",
)
TEXT_EMBEDDING_DIM = load_model_config(ROOT / "model_repository" / "clip_text").output[0].dims[-1]


def with_queue_delay(repository, model: str, microseconds: int) -> None:
    path = repository / model / "config.pbtxt"
    text = path.read_text()
    assert "dynamic_batching {\n}" in text
    path.write_text(
        text.replace(
            "dynamic_batching {\n}", f"dynamic_batching {{ max_queue_delay_microseconds: {microseconds} }}"
        )
    )


@pytest.fixture(scope="module")
def batching_repository(tmp_path_factory):
    repository = tmp_path_factory.mktemp("batching") / "repository"
    shutil.copytree(ROOT / "model_repository", repository)
    # A long window makes joining certain, whatever the machine's speed.
    for model in ("clip_vision", "clip_text", "opus_mt_zh_en"):
        with_queue_delay(repository, model, 300_000)
    return repository


def test_concurrent_calls_are_batched_and_answered_correctly(batching_repository):
    images = [encoded_image(64 + 8 * i, 48, "PNG", seed=i) for i in range(CALLS)]
    texts = [f"{n} dogs in the snow" for n in ("one", "two", "three")] * (CALLS // 3)
    chinese = list(CHINESE) * (CALLS // len(CHINESE))
    with in_process_server(batching_repository) as served, CrossModalClient(served.address) as client:
        alone_image = np.array(client.encode([images[0]]).embeddings[0].values)
        alone_text = np.array(client.encode([texts[0]]).embeddings[0].values)

        def call(i: int):
            return client.encode([images[i], texts[i]]), client.translate([chinese[i]])

        with ThreadPoolExecutor(CALLS) as pool:
            results = list(pool.map(call, range(CALLS)))
        vision = served.server.repository.model("clip_vision", 0).batcher.stats()
        text = served.server.repository.model("clip_text", 0).batcher.stats()
        translator = served.server.repository.model("opus_mt_zh_en", 0).batcher.stats()
        # One at a time, each text runs in a batch of its own: what sharing a batch must not change.
        alone_translations = {
            sentence: [t.text for t in client.translate([sentence]).results[0].translations]
            for sentence in CHINESE
        }

    for stats in (vision, text, translator):
        assert max(stats.batch_sizes) > 1, stats
        assert stats.items == sum(size * n for size, n in stats.batch_sizes.items())
    assert vision.runs < vision.items  # fewer runs than images: calls shared runs
    encoded, translated = results[0]
    np.testing.assert_allclose(encoded.embeddings[0].values, alone_image, atol=1e-5)
    np.testing.assert_allclose(encoded.embeddings[1].values, alone_text, atol=1e-5)
    for i, (encoded, translated) in enumerate(results):
        assert len(encoded.embeddings) == 2 and encoded.texts[0].text == texts[i]
        assert translated.results[0].text == chinese[i]
        answer = [t.text for t in translated.results[0].translations]
        assert answer == alone_translations[chinese[i]], chinese[i]


def test_a_call_past_its_deadline_leaves_the_queue_without_running(batching_repository):
    with in_process_server(batching_repository) as served, CrossModalClient(served.address) as client:
        batcher = served.server.repository.model("clip_text", 0).batcher
        before = batcher.stats().items
        with CrossModalClient(served.address, timeout=0.05) as hasty, pytest.raises(grpc.RpcError) as raised:
            hasty.encode(["too late"])
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.1)  # the cancellation reaches the server's handler
        assert batcher.queued_items() == 0  # withdrawn within the 300 ms window, before any run
        assert batcher.stats().items == before
        still = client.encode(["still serving"]).embeddings
    assert len(still) == 1 and len(still[0].values) == TEXT_EMBEDDING_DIM


def test_calls_waiting_for_their_batch_hold_no_worker_thread(batching_repository):
    """With 2 workers, many more calls wait on one held-up text batch at once, and all complete."""
    waiting_calls, workers = 10, 2
    texts = [f"{n} cats on a table" for n in range(waiting_calls)]
    with (
        # No response cache: the first text's answer would come from it, never queueing behind the hold.
        in_process_server(batching_repository, workers=workers, cache_bytes=0) as served,
        CrossModalClient(served.address) as client,
    ):
        alone = np.array(client.encode([texts[0]]).embeddings[0].values)
        batcher = served.server.repository.model("clip_text", 0).batcher
        release, running, run_batch = threading.Event(), [], batcher._run_batch

        def held_up(items):
            running.extend(items)
            assert release.wait(60)
            return run_batch(items)

        batcher._run_batch = held_up
        try:
            with ThreadPoolExecutor(waiting_calls) as pool:
                answers = [pool.submit(client.encode, [text]) for text in texts]
                deadline = time.monotonic() + 30
                while len(running) + batcher.queued_items() < waiting_calls and time.monotonic() < deadline:
                    time.sleep(0.01)
                waiting = len(running) + batcher.queued_items()
                release.set()
                results = [answer.result(60) for answer in answers]
        finally:
            release.set()
            batcher._run_batch = run_batch
    assert waiting == waiting_calls > workers  # every call had queued its text while the batch was held
    for text, result in zip(texts, results, strict=True):
        assert result.texts[0].text == text and len(result.embeddings[0].values) == len(alone)
    np.testing.assert_allclose(results[0].embeddings[0].values, alone, atol=1e-5)
