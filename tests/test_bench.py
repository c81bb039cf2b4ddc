"""The benchmark: timing utilities, the bench model layout, and a whole quick run on tiny models."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from bench.figures import TARGETS, Figure
from bench.measure import closed_loop, latencies, percentile, sweep_batches, throughput
from bench.run import bench_models, parse_sections
from tools.bench_models import PRESETS, build
from tools.build_tiny_marian import PAD, fill_vocab
from tools.local_server import ROOT


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_interpolates_like_numpy(q):
    values = [5.0, 1.0, 4.0, 2.5, 9.0, 7.0, 3.0]
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_rejects_nonsense():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latencies_time_each_call_after_the_warmup():
    calls = []
    timings = latencies(lambda: (calls.append(1), time.sleep(0.002)), repeats=4, warmup=2)
    assert len(calls) == 6 and len(timings) == 4
    assert all(0.0015 < t < 0.5 for t in timings)


def test_throughput_and_sweep_count_items_per_second():
    rate = throughput(lambda: time.sleep(0.005), items_per_run=10, min_seconds=0.05)
    assert 200 < rate < 2100  # 10 items per ~5 ms run
    sweep = sweep_batches(lambda b: lambda: time.sleep(0.002), [1, 4], min_seconds=0.03)
    assert sweep.best_batch == 4 and sweep.best == sweep.per_batch[4]


def test_closed_loop_keeps_every_caller_busy():
    async def call(_index):
        await asyncio.sleep(0.01)

    result = asyncio.run(closed_loop(call, items_per_call=2, concurrency=8, seconds=0.3, warmup_seconds=0.05))
    # 8 callers x 2 items per ~10 ms call: about 1600 items/s when nothing else slows the loop.
    assert 500 < result.items_per_s < 1700
    assert result.requests >= 8 and result.latency_ms["p50"] >= 9


def test_figures_know_their_direction():
    assert Figure("p1_image_vs_ort", 0.95).met and not Figure("p1_image_vs_ort", 0.5).met
    assert Figure("p4_overhead_ms", 0.4).met and not Figure("p4_overhead_ms", 2.0).met
    assert not Figure("p3_hf_speedup", math.nan).met
    with pytest.raises(ValueError):
        Figure("p9_unknown", 1.0)


def test_only_takes_known_sections():
    assert parse_sections("p1, p3") == {"p1", "p3"}
    with pytest.raises(Exception, match="choose from"):
        parse_sections("p1,p7")


def test_filled_vocabulary_has_the_real_size_with_pad_last():
    vocab = {"</s>": 0, "<unk>": 1, "▁a": 2, "b": 3, PAD: 4}
    filled = fill_vocab(vocab, 12)
    assert len(filled) == 12 and sorted(filled.values()) == list(range(12))
    assert filled[PAD] == 11 and all(filled[p] == vocab[p] for p in vocab if p != PAD)
    with pytest.raises(ValueError):
        fill_vocab(vocab, 3)


def test_missing_real_size_models_say_how_to_build_them(tmp_path):
    with pytest.raises(SystemExit, match="make bench-models"):
        bench_models(tmp_path / "none", tiny=False)


@pytest.fixture(scope="module")
def tiny_bench_models(tmp_path_factory):
    return build(tmp_path_factory.mktemp("bench-models"), PRESETS["tiny"]).root


def test_tiny_models_have_the_bench_layout(tiny_bench_models):
    repository = tiny_bench_models / "repository"
    for name in ("clip_vision", "clip_text", "opus_mt_zh_en"):
        config = (repository / name / "config.pbtxt").read_text()
        assert "dynamic_batching" in config and "KIND_CPU" in config
        assert (repository / name / "1").is_dir()
        # p6's cached Classify needs the caches the exporters turn on for texts (and only for texts).
        assert ("response_cache" in config) is (name != "clip_vision"), name
    assert 'string_value: "opus_mt_zh_en"' in (repository / "clip" / "config.pbtxt").read_text()
    assert (tiny_bench_models / "ct2" / "marian" / "model.bin").is_file()
    generation = json.loads((repository / "opus_mt_zh_en" / "1" / "generation_config.json").read_text())
    assert generation["min_length"] == generation["max_length"] == 21
    stamp = json.loads((tiny_bench_models / "stamp.json").read_text())
    assert stamp["complete"] and stamp["preset"] == "tiny"


def test_tiny_bench_reports_every_figure(tiny_bench_models, tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench.run", "--tiny", "--models", str(tiny_bench_models), "--out"]
    done = subprocess.run(
        [*command, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    doc = json.loads((out / "latest.json").read_text())
    for key in TARGETS:
        assert math.isfinite(doc[key]), key
        if key != "p4_overhead_ms":  # a difference of two latencies; noise may make it negative
            assert doc[key] > 0, key
        assert doc["raw"][key] and doc["targets"][key]["target"] == TARGETS[key].value
    assert_figures_follow_from_their_raw_measurements(doc)
    assert doc["machine"]["cores"] == os.cpu_count()
    assert {"onnxruntime-gpu", "onnxruntime"} & set(doc["packages"]) and "ctranslate2" in doc["packages"]
    assert all(f"`{key}`" in (out / "latest.md").read_text() for key in TARGETS)
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def assert_ascending(spread: dict[str, float]) -> None:
    """Percentiles (p10, p50, ...) or a timing summary grow with their rank, from a positive start."""
    ranked = [spread[key] for key in sorted(spread, key=lambda key: int(key[1:]))]
    assert ranked == sorted(ranked) and ranked[0] > 0, spread


def assert_served_load(load: dict, unit: str, items_per_request: int) -> None:
    """A load test's rate is the items its requests carried over its measured window."""
    assert load["requests"] >= 1 and load["seconds"] > 0
    assert load[f"{unit}_per_s"] == pytest.approx(load["requests"] * items_per_request / load["seconds"])
    assert_ascending(load["request_latency_ms"])


def best_of_sweep(sweep: dict, unit: str) -> float:
    """A sweep's best rate: the highest of its batch sizes, at the batch size it names."""
    by_batch = sweep[f"{unit}_per_s_by_batch"]
    assert sweep[f"best_{unit}_per_s"] == max(by_batch.values()) == by_batch[str(sweep["best_batch"])]
    return sweep[f"best_{unit}_per_s"]


def median_ms(summary: dict, repeats: int) -> float:
    assert summary["repeats"] == repeats
    assert 0 < summary["min_ms"] <= summary["p10_ms"] <= summary["median_ms"] <= summary["p90_ms"], summary
    return summary["median_ms"]


def assert_figures_follow_from_their_raw_measurements(doc: dict) -> None:
    raw, settings = doc["raw"], doc["settings"]
    for key, baseline in (("p1_image_vs_ort", "onnxruntime"), ("p1_image_vs_torch", "transformers")):
        assert_served_load(raw[key]["server"], "images", 1)
        ratio = raw[key]["server"]["images_per_s"] / best_of_sweep(raw[key][baseline], "images")
        assert doc[key] == pytest.approx(ratio), key

    text = raw["p2_text_vs_padded"]
    assert text["captions_per_request"] == settings["texts_per_request"]
    assert_served_load(text["server"], "captions", text["captions_per_request"])
    padded = best_of_sweep(text["onnxruntime_padded_to_context"], "captions")
    assert doc["p2_text_vs_padded"] == pytest.approx(text["server"]["captions_per_s"] / padded)

    repeats = settings["translate_repeats"]
    for key, sentences in (("p3_translate_vs_ct2_b1", 1), ("p3_translate_vs_ct2_b8", 8)):
        translate = raw[key]
        assert translate["sentences"] == sentences
        ours, ct2 = median_ms(translate["ours"], repeats), median_ms(translate["ctranslate2_fp32"], repeats)
        assert doc[key] == pytest.approx(ours / ct2), key
    hf = raw["p3_hf_speedup"]
    speedup = median_ms(hf["transformers_generate"], repeats) / median_ms(hf["ours"], repeats)
    assert doc["p3_hf_speedup"] == pytest.approx(speedup)

    overhead = raw["p4_overhead_ms"]
    assert overhead["calls_each"] == settings["overhead_repeats"]
    assert_ascending(overhead["grpc_ms"])
    assert_ascending(overhead["in_process_ms"])
    gap = overhead["grpc_ms"]["p50"] - overhead["in_process_ms"]["p50"]
    assert doc["p4_overhead_ms"] == pytest.approx(gap)

    index = raw["p5_index_images_per_s"]
    assert doc["p5_index_images_per_s"] == pytest.approx(index["images"] / index["seconds"])
    search = raw["p5_search_p50_ms"]
    assert_ascending(search["english_ms"])
    assert_ascending(search["chinese_ms"])
    assert doc["p5_search_p50_ms"] == search["english_ms"]["p50"]

    prepared = raw["p6_preprocess_12mp_speedup"]
    twelve = prepared["per_size"]["12mp"]
    assert doc["p6_preprocess_12mp_speedup"] == pytest.approx(twelve["exact_ms"] / twelve["fast_ms"])
    assert set(prepared["per_size"]) == {"640x480", "1080p", "12mp"}
    assert 0.9999 <= prepared["min_cosine_all_sizes"] <= 1.0 + 1e-6
    for size in ("1080p", "12mp"):
        photos = raw[f"p6_photo_{size}_vs_transformers"]
        assert_served_load(photos["server"], "photos", 1)
        for key, baseline in (("transformers", "transformers"), ("ort_exact", "onnxruntime_exact")):
            ratio = photos["server"]["photos_per_s"] / best_of_sweep(photos[baseline], "photos")
            assert doc[f"p6_photo_{size}_vs_{key}"] == pytest.approx(ratio)
    classified = raw["p6_cached_classify_speedup"]
    first, again = classified["first"], classified["again"]
    assert doc["p6_cached_classify_speedup"] == pytest.approx(first["median_ms"] / again["median_ms"])
