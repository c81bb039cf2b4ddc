"""Response caches: byte-bounded LRU, one view per load, and what a cached call answers (the same)."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from prometheus_client import generate_latest

from crossmodal.v1 import model_config_pb2 as mc
from server.__main__ import build_config, parse_args
from server.backends.onnx.session import SessionFactory
from server.core.cache import ENTRY_OVERHEAD_BYTES, ResponseCache, through_cache
from server.core.config import Limits
from server.core.pending import Pending
from server.core.types import ImageInput, ModelRef, TranslateOptions
from server.engine import Engine
from server.repository.model_config import load_model_config
from server.repository.repository import ModelRepository
from tests.fixtures.server import encoded_image, in_process_server

CHINESE_LABELS = ["一只狗", "一只猫", "雪地里的汽车", "桌子上的苹果"]
IMAGE = ImageInput(encoded_image(64, 48, "JPEG", seed=3))


# -- the LRU itself ---------------------------------------------------------------------------------------


def test_entries_are_evicted_least_recently_used_first_within_the_byte_bound():
    cache = ResponseCache(3 * (ENTRY_OVERHEAD_BYTES + 100))
    view = cache.for_load("m")
    for key in "abc":
        view.put(key, key.upper(), 100)
    assert view.get("a") == "A"  # "a" is now the most recent: "b" goes first
    view.put("d", "D", 100)
    assert [view.get(k) for k in "abcd"] == ["A", None, "C", "D"]
    assert cache.used_bytes == 3 * (ENTRY_OVERHEAD_BYTES + 100) and len(cache) == 3
    stats = cache.stats()["m"]
    assert (stats.hits, stats.misses, stats.evictions) == (4, 1, 1)


def test_an_entry_larger_than_the_cache_is_not_stored_and_evicts_nothing():
    cache = ResponseCache(1000)
    view = cache.for_load("m")
    view.put("small", 1, 10)
    view.put("huge", 2, 5000)
    assert view.get("huge") is None and view.get("small") == 1


def test_a_closed_load_forgets_its_entries_and_ignores_late_answers():
    cache = ResponseCache(1 << 20)
    first, second = cache.for_load("m"), cache.for_load("m")
    first.put("text", "first weights", 10)
    second.put("text", "second weights", 10)
    first.clear()
    assert first.get("text") is None and second.get("text") == "second weights"
    first.put("late", "computed while closing", 10)
    assert first.get("late") is None
    assert len(cache) == 1 and cache.used_bytes == ENTRY_OVERHEAD_BYTES + 10


def test_a_negative_capacity_is_refused_and_zero_means_off():
    with pytest.raises(ValueError, match="0 \\(off\\)"):
        ResponseCache(-1)
    assert not ResponseCache(0).enabled


def test_through_cache_runs_each_missing_key_once_and_keeps_the_call_order():
    cache = ResponseCache(1 << 20).for_load("m")
    cache.put("b", "B (cached)", 1)
    submitted: list[list[str]] = []

    def submit(indices):
        keys = [["a", "b", "a", "c"][i] for i in indices]
        submitted.append(keys)
        return Pending.done([k.upper() for k in keys])

    answer = through_cache(cache, ["a", "b", "a", "c"], submit, lambda k, v: 1).result()
    assert answer == ["A", "B (cached)", "A", "C"]
    assert submitted == [["a", "c"]]
    assert through_cache(cache, ["c", "a"], submit, lambda k, v: 1).result() == ["C", "A"]
    assert submitted == [["a", "c"]]  # nothing ran the second time


# -- the models, through the engine -----------------------------------------------------------------------


class _ItemsRun:
    """Counts the items each model's batcher ran (a batch observer of every version)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def observer(self, model: str, version: int):
        counts = self.counts

        class Observer:
            def batch_done(self, size, waits, seconds, failed):
                counts[model] += size

        return Observer()


def _engine(repository: Path, cache_bytes: int) -> Engine:
    items_run = _ItemsRun()
    models = ModelRepository(
        repository,
        SessionFactory(),
        batch_observer=items_run.observer,
        response_cache=ResponseCache(cache_bytes),
    )
    models.load_all()
    engine = Engine(models, Limits(max_items=50, max_text_chars=200))
    engine.items_run = items_run.counts
    return engine


def _newest(engine: Engine, name: str):
    return engine.repository.model(name, max(engine.repository.ready_versions(name)))


@pytest.fixture(scope="module")
def cached_engine(exported_repository):
    engine = _engine(exported_repository, 64 << 20)
    yield engine
    engine.close()
    engine.repository.close()


@pytest.fixture(scope="module")
def uncached_engine(exported_repository):
    engine = _engine(exported_repository, 0)
    yield engine
    engine.close()
    engine.repository.close()


def _runs(engine: Engine, model: str) -> int:
    """Items the versions of `model` have run through their batchers so far."""
    return engine.items_run[model]


def _classify(engine: Engine, labels: list[str]):
    return asyncio.run(engine.classify(ModelRef(), [IMAGE], labels, "a photo of {}", 0))


def test_the_exported_text_tower_and_translator_turn_the_cache_on(exported_repository):
    for name, enabled in (("clip_text", True), ("opus_mt_zh_en", True), ("clip_vision", False)):
        config = load_model_config(exported_repository / name, ("onnxruntime_onnx",))
        assert config.response_cache.enable is enabled, name


def test_a_repeated_chinese_classify_translates_and_embeds_nothing_and_answers_the_same(
    cached_engine, uncached_engine
):
    first = _classify(cached_engine, CHINESE_LABELS)
    translated, embedded = _runs(cached_engine, "opus_mt_zh_en"), _runs(cached_engine, "clip_text")
    second = _classify(cached_engine, CHINESE_LABELS)
    assert _runs(cached_engine, "opus_mt_zh_en") == translated
    assert _runs(cached_engine, "clip_text") == embedded
    reference = _classify(uncached_engine, CHINESE_LABELS)
    for result in (first, second):
        assert [[(s.label, s.probability) for s in r] for r in result.results] == [
            [(s.label, s.probability) for s in r] for r in reference.results
        ]
        assert [t.translations for t in result.labels] == [t.translations for t in reference.labels]
    stats = cached_engine.repository.response_cache.stats()
    assert stats["opus_mt_zh_en"].hits >= len(CHINESE_LABELS)
    assert stats["clip_text"].hits >= len(CHINESE_LABELS)


def test_other_search_settings_are_other_entries(cached_engine):
    texts = ["夜晚的伦敦"]
    narrow = asyncio.run(cached_engine.translate(ModelRef(), texts, TranslateOptions(num_beams=2)))
    before = _runs(cached_engine, "opus_mt_zh_en")
    wide = asyncio.run(cached_engine.translate(ModelRef(), texts, TranslateOptions(num_beams=4)))
    assert _runs(cached_engine, "opus_mt_zh_en") == before + 1
    again = asyncio.run(cached_engine.translate(ModelRef(), texts, TranslateOptions(num_beams=2)))
    assert _runs(cached_engine, "opus_mt_zh_en") == before + 1
    assert again.texts[0].translations == narrow.texts[0].translations
    assert (len(narrow.texts[0].translations), len(wide.texts[0].translations)) == (2, 4)


def test_cached_embeddings_cannot_be_changed_by_a_caller(cached_engine):
    model = _newest(cached_engine, "clip_text")
    first = model.submit_texts(["a red bicycle"]).result()
    first[0, :] = 0.0
    again = model.submit_texts(["a red bicycle"]).result()
    np.testing.assert_allclose(np.linalg.norm(again, axis=1), 1.0, atol=1e-5)


def test_unloading_a_version_drops_its_entries(repository_copy):
    engine = _engine(repository_copy, 64 << 20)
    try:
        cache = engine.repository.response_cache
        _classify(engine, CHINESE_LABELS)
        assert len(cache) > 0
        engine.repository.unload_model("opus_mt_zh_en")
        engine.repository.unload_model("clip_text")
        assert len(cache) == 0 and cache.used_bytes == 0
    finally:
        engine.close()
        engine.repository.close()


def test_a_model_without_response_cache_in_its_config_caches_nothing(repository_copy):
    for name in ("clip_text", "opus_mt_zh_en"):
        path = repository_copy / name / "config.pbtxt"
        config = text_format.Parse(path.read_text(), mc.ModelConfig())
        config.ClearField("response_cache")
        path.write_text(text_format.MessageToString(config))
    engine = _engine(repository_copy, 64 << 20)
    try:
        _classify(engine, CHINESE_LABELS)
        translated = _runs(engine, "opus_mt_zh_en")
        _classify(engine, CHINESE_LABELS)
        assert _runs(engine, "opus_mt_zh_en") == 2 * translated
        assert len(engine.repository.response_cache) == 0
    finally:
        engine.close()
        engine.repository.close()


def test_a_reloaded_version_starts_with_an_empty_cache(repository_copy, tiny_checkpoint):
    engine = _engine(repository_copy, 64 << 20)
    try:
        model = engine.repository.model("clip_text", 1)
        before = model.submit_texts(["a photo of a dog"]).result()
        # Version 1 replaced in place by version 2's weights: the same version number, other answers.
        shutil.copy(repository_copy / "clip_text" / "2" / "model.onnx", repository_copy / "clip_text" / "1")
        engine.repository.load_model("clip_text")
        after = engine.repository.model("clip_text", 1).submit_texts(["a photo of a dog"]).result()
        assert not np.allclose(before, after, atol=1e-4)
    finally:
        engine.close()
        engine.repository.close()


# -- the server --------------------------------------------------------------------------------------------


def test_cache_bytes_option_reaches_the_server_and_refuses_negative(tmp_path):
    repository = ["--model-repository", str(tmp_path)]
    assert build_config(parse_args([*repository, "--cache-bytes", "0"])).cache_bytes == 0
    assert build_config(parse_args(repository)).cache_bytes == 256 * 1024 * 1024
    with pytest.raises(ValueError, match="cache bytes"):
        build_config(parse_args([*repository, "--cache-bytes", "-5"]))


def test_the_server_exports_cache_metrics(exported_repository):
    with in_process_server(exported_repository, cache_bytes=1 << 20) as served:
        engine = served.server.engine
        for _ in range(2):
            served.run(engine.classify(ModelRef(), [IMAGE], CHINESE_LABELS, "a photo of {}", 0))
        text = generate_latest(served.server.metrics.registry).decode()
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line[:1] != "#"}
    assert lines['crossmodal_response_cache_hits_total{model="opus_mt_zh_en"}'] >= len(CHINESE_LABELS)
    assert lines['crossmodal_response_cache_misses_total{model="clip_text"}'] >= len(CHINESE_LABELS)
    assert lines["crossmodal_response_cache_capacity_bytes"] == 1 << 20
    assert 0 < lines["crossmodal_response_cache_bytes"] <= 1 << 20
    assert "crossmodal_response_cache_evictions_total" in text
