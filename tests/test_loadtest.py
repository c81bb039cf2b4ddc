"""The load generator: statistics, arrival schedule, workload mix, and real runs against the demo models."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from crossmodal_loadtest import CONCURRENCY, LoadConfig, LoadReport, OperationMix, Stage, run_load
from crossmodal_loadtest.cli import build_parser, config_from_args
from crossmodal_loadtest.cli import main as loadtest_main
from crossmodal_loadtest.image_size import MAX_IMAGE_SIDE, NAMED_IMAGE_SIZES, parse_image_size
from crossmodal_loadtest.inputs import CAPTIONS, InputPool, _scene, generated_images
from crossmodal_loadtest.mix import OPERATIONS
from crossmodal_loadtest.phases import Phase, StagePhases
from crossmodal_loadtest.schedule import poisson_arrivals
from crossmodal_loadtest.stats import (
    ERROR_SAMPLES_PER_CODE,
    LatencySummary,
    OperationRecorder,
    StageRecorder,
    percentile,
)
from crossmodal_loadtest.workload import WorkloadPlanner
from tests.fixtures.server import ROOT, free_port, running_server

ALL_OPERATIONS_MIX = "encode_images=2,encode_texts=2,compare=1,classify=1,translate=1"
LATENCY_ORDER = ("min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")
# A 1920x1080 camera JPEG at quality 90 weighs 0.5 to 1 MB; the scene without texture and noise, about 60 kB.
MIN_1080P_PHOTO_BYTES = 300_000


# --- statistics -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 7, 100, 1001])
def test_percentile_matches_numpy(size):
    values = sorted(np.random.default_rng(size).lognormal(2.0, 0.8, size).tolist())
    for q in (0, 1, 25, 50, 90, 95, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q), rel=1e-12, abs=1e-12)


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_is_in_milliseconds_and_ordered():
    seconds = np.random.default_rng(0).exponential(0.02, 500)
    summary = LatencySummary.from_seconds(seconds)
    assert summary.count == 500
    for name, q in (("p50_ms", 50), ("p90_ms", 90), ("p95_ms", 95), ("p99_ms", 99)):
        assert getattr(summary, name) == pytest.approx(np.percentile(seconds * 1000, q))
    assert summary.mean_ms == pytest.approx(seconds.mean() * 1000)
    assert summary.max_ms == pytest.approx(seconds.max() * 1000)
    latencies = [getattr(summary, name) for name in LATENCY_ORDER]
    assert latencies == sorted(latencies)
    assert LatencySummary.from_seconds([]) is None


def test_errors_are_counted_by_status_code_with_a_few_samples():
    recorder = OperationRecorder("encode_texts")
    recorder.record(items=2, latency_s=0.010)
    recorder.record(items=2, latency_s=0.030)
    for index in range(5):
        recorder.record(items=2, latency_s=0.001, error_code="NOT_FOUND", message=f"no pipeline {index}")
    recorder.record(items=2, latency_s=0.001, error_code="UNAVAILABLE", message="not ready")
    stats = recorder.stats(elapsed_s=2.0)
    assert (stats.requests, stats.succeeded, stats.failed) == (8, 2, 6)
    assert stats.errors == {"NOT_FOUND": 5, "UNAVAILABLE": 1}
    assert stats.error_samples["NOT_FOUND"] == [f"no pipeline {i}" for i in range(ERROR_SAMPLES_PER_CODE)]
    # Throughput and latency count successful requests only.
    assert stats.items == 4
    assert stats.requests_per_second == pytest.approx(1.0)
    assert stats.items_per_second == pytest.approx(2.0)
    assert stats.latency.count == 2
    assert stats.latency.max_ms == pytest.approx(30.0)


def test_stage_recorder_totals_the_operations_over_the_measured_window():
    recorder = StageRecorder(["encode_images", "compare", "translate"])
    recorder.record("encode_images", 1, 0.01, completed_at=10.5)
    recorder.record("compare", 1, 0.02, completed_at=11.0)
    recorder.record("compare", 1, 0.00, completed_at=12.0, error_code="INVALID_ARGUMENT", message="items[0]")
    operations, total = recorder.stats(measure_start=10.0)
    assert [stats.operation for stats in operations] == ["encode_images", "compare"]  # translate sent nothing
    assert (total.operation, total.requests, total.succeeded) == ("all", 3, 2)
    assert total.errors == {"INVALID_ARGUMENT": 1}
    assert total.elapsed_s == pytest.approx(2.0)
    assert total.requests_per_second == pytest.approx(1.0)


# --- schedule, phases, mix, inputs ----------------------------------------------------------------------


def _arrivals(rate: float, seed: int, count: int) -> np.ndarray:
    generator = poisson_arrivals(rate, seed)
    return np.array([next(generator) for _ in range(count)])


def test_poisson_arrivals_have_exponential_gaps_of_mean_one_over_rate():
    times = _arrivals(rate=50.0, seed=7, count=20_000)
    gaps = np.diff(np.concatenate([[0.0], times]))
    assert np.all(gaps > 0)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.03)
    assert gaps.std() == pytest.approx(1 / 50, rel=0.05)  # exponential: standard deviation = mean
    assert np.array_equal(times, _arrivals(rate=50.0, seed=7, count=20_000))
    assert not np.array_equal(times[:100], _arrivals(rate=50.0, seed=8, count=100))


def test_stage_phases_warm_up_then_measure_a_count_then_stop():
    phases = StagePhases(start=0.0, warmup_seconds=1.0, warmup_requests=3, duration=None, requests=2)
    # Warm-up lasts one second and at least three requests.
    assert [phases.admit(t) for t in (0.1, 0.2, 0.3, 0.4)] == [Phase.WARMUP] * 4
    assert phases.admit(1.1) is Phase.MEASURE
    assert phases.measure_start == 1.1
    assert [phases.admit(t) for t in (1.2, 1.3)] == [Phase.MEASURE, Phase.STOP]
    timed = StagePhases(start=0.0, warmup_seconds=0.0, warmup_requests=0, duration=2.0, requests=None)
    assert [timed.admit(t) for t in (0.5, 2.4, 2.5)] == [Phase.MEASURE, Phase.MEASURE, Phase.STOP]


def test_mix_weights_set_the_operation_frequencies():
    mix = OperationMix.parse("encode_images=2, compare=1, translate=0")
    assert mix.operations == ("encode_images", "compare")
    assert mix.probabilities() == pytest.approx({"encode_images": 2 / 3, "compare": 1 / 3})
    rng = random.Random(3)
    draws = [mix.choose(rng) for _ in range(30_000)]
    assert draws.count("encode_images") / len(draws) == pytest.approx(2 / 3, abs=0.015)
    replay = random.Random(3)
    assert [mix.choose(replay) for _ in range(200)] == draws[:200]
    assert OperationMix.parse("classify").probabilities() == {"classify": 1.0}
    for bad in ("encode=1", "compare=-1", "compare=0", "compare=x", "compare=1,compare=2"):
        with pytest.raises(ValueError):
            OperationMix.parse(bad)


class _RecordingClient:
    """Stands in for AsyncCrossModalClient: records each call instead of sending it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, method):
        async def call(*args, **kwargs):
            self.calls.append((method, args, kwargs))

        return call


def _planned_calls(config: LoadConfig, seed: int, count: int) -> list[tuple[str, tuple, dict]]:
    pool = InputPool.build(config.image_size, None, config.languages)
    planner = WorkloadPlanner(config, pool, seed)
    client = _RecordingClient()

    async def send_all():
        for _ in range(count):
            await planner.next().send(client)

    asyncio.run(send_all())
    return client.calls


def test_workload_is_deterministic_and_speaks_the_chosen_languages():
    config = LoadConfig(
        mix=OperationMix.parse(ALL_OPERATIONS_MIX), languages=("en",), batch_items=2, candidates=4
    )
    calls = _planned_calls(config, seed=5, count=300)
    assert calls == _planned_calls(config, seed=5, count=300)
    assert [c[0] for c in calls] != [c[0] for c in _planned_calls(config, seed=6, count=300)]
    assert {method for method, _, _ in calls} == {"encode", "compare", "classify", "translate"}
    for method, args, _ in calls:
        if method == "translate":
            assert len(args[0]) == 2 and all(text in CAPTIONS["zh"] for text in args[0])
        elif method == "classify":
            items, labels, template = args
            assert len(items) == 2 and all(item.WhichOneof("kind") == "image" for item in items)
            assert len(labels) == 4 and all(label.isascii() for label in labels)
            assert template == "a photo of {}"
        elif method == "compare":
            queries, candidates = args
            assert len(queries) == 2 and len(candidates) == 4
            assert all(item.text in CAPTIONS["en"] for item in candidates)
        else:
            assert len(args[0]) == 2


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("224", (224, 224)),
        ("1920x1080", (1920, 1080)),
        ("480X640", (480, 640)),
        ("vga", (640, 480)),
        ("1080p", (1920, 1080)),
        ("12MP", (4032, 3024)),
        (str(MAX_IMAGE_SIDE), (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)),
    ],
)
def test_image_size_is_pixels_width_x_height_or_a_name(text, size):
    assert parse_image_size(text) == size
    assert config_from_args(build_parser().parse_args(["--image-size", text])).image_size == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("large", "WIDTHxHEIGHT"),
        ("1920x", "WIDTHxHEIGHT"),
        ("1920x1080x3", "WIDTHxHEIGHT"),
        ("-224", "WIDTHxHEIGHT"),
        ("22.4", "WIDTHxHEIGHT"),
        ("0", f"from 1 to {MAX_IMAGE_SIDE}"),
        (f"{MAX_IMAGE_SIDE + 1}x1080", f"from 1 to {MAX_IMAGE_SIDE}"),
    ],
)
def test_other_image_sizes_are_usage_errors_that_name_the_accepted_forms(text, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        loadtest_main(["--image-size", text])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--image-size" in error and message in error
    if message == "WIDTHxHEIGHT":
        assert all(name in error for name in ("PIXELS", "vga", "1080p", "12mp"))


def test_config_carries_width_and_height_within_the_bound():
    assert LoadConfig(image_size=96).image_size == (96, 96)
    assert LoadConfig(image_size=(1920, 1080)).image_size == (1920, 1080)
    for size in ((0, 10), (10, MAX_IMAGE_SIDE + 1), (10.5, 10)):
        with pytest.raises(ValueError, match=str(MAX_IMAGE_SIDE)):
            LoadConfig(image_size=size)


def test_help_lists_the_image_size_forms(capsys):
    with pytest.raises(SystemExit):
        loadtest_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "WIDTHxHEIGHT (e.g. 1920x1080)" in help_text and "12mp (4032x3024)" in help_text


def test_generated_photos_are_deterministic_quality_90_jpegs_of_the_requested_size():
    for size in ((320, 200), (200, 320), (1, 1)):
        images = generated_images(size, count=4, seed=1)
        assert images == generated_images(size, count=4, seed=1)
        for data in images:
            with Image.open(io.BytesIO(data)) as image:
                assert (image.format, image.mode, image.size) == ("JPEG", "RGB", size)
                # Quality 90 scales the standard luminance table's first entry, 16, to 3.
                assert image.quantization[0][0] == 3
    photos = generated_images((320, 200), count=4, seed=1)
    assert len(set(photos)) == 4
    assert set(photos).isdisjoint(generated_images((320, 200), count=4, seed=2))


def test_generated_photos_carry_texture_and_noise():
    size = (1920, 1080)
    photos = generated_images(size, count=2)
    # The scene alone (flat colours, a gradient, shapes) compresses far below that: texture and noise are
    # what make a 1080p camera JPEG weigh half a megabyte.
    for index in range(2):
        scene, _horizon = _scene(*size, random.Random(index))
        flat = io.BytesIO()
        Image.fromarray(scene).save(flat, format="JPEG", quality=90)
        assert len(flat.getvalue()) < MIN_1080P_PHOTO_BYTES / 2
    assert min(len(photo) for photo in photos) > MIN_1080P_PHOTO_BYTES
    with Image.open(io.BytesIO(photos[0])) as image:
        pixels = np.asarray(image, dtype=np.float32)
    # Neighbouring pixels differ by several grey levels everywhere, not only at the shapes' edges.
    assert np.median(np.abs(np.diff(pixels, axis=1))) >= 4


def test_a_12_megapixel_photo_is_generated_without_per_pixel_python():
    started = time.process_time()
    (photo,) = generated_images(NAMED_IMAGE_SIZES["12mp"], count=1)
    assert time.process_time() - started < 3.0  # about 0.5 s; a per-pixel loop would take minutes
    with Image.open(io.BytesIO(photo)) as image:
        assert image.size == (4032, 3024)


def test_report_says_the_image_size_used(tmp_path):
    def config_fields(config: LoadConfig) -> dict:
        report = LoadReport(
            config=config, started_at="2026-01-01T00:00:00", finished_at="2026-01-01T00:00:01"
        )
        config_json = report.to_dict()["config"]
        return {name: config_json[name] for name in ("image_size", "image_width", "image_height")}

    generated = config_fields(LoadConfig(image_size=(1920, 1080)))
    assert generated == {"image_size": "1920x1080", "image_width": 1920, "image_height": 1080}
    from_folder = config_fields(LoadConfig(image_size=(1920, 1080), image_dir=tmp_path))
    assert from_folder == {"image_size": None, "image_width": None, "image_height": None}


def test_image_folder_files_are_sent_as_they_are(tmp_path):
    (tmp_path / "b.png").write_bytes(b"png bytes")
    (tmp_path / "a.jpg").write_bytes(b"jpeg bytes")
    (tmp_path / "notes.txt").write_text("not an image")
    pool = InputPool.build(224, tmp_path, ("en",))
    assert [item.image for item in pool.images] == [b"jpeg bytes", b"png bytes"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        InputPool.build(224, tmp_path / "empty", ("en",))


def test_invalid_options_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        loadtest_main(["--mix", "encode=1"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        loadtest_main(["--languages", "fr"])
    assert exit_info.value.code == 2
    assert "languages" in capsys.readouterr().err
    with pytest.raises(ValueError):
        LoadConfig(duration=5.0, requests=10)


# --- against a real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_server():
    with running_server(ROOT / "model_repository") as (address, _process):
        yield address


def _run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "crossmodal_loadtest", "--no-progress", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _port(address: str) -> str:
    return address.rsplit(":", 1)[1]


def _assert_latencies_ordered(latency: dict) -> None:
    values = [latency[name] for name in LATENCY_ORDER]
    assert values == sorted(values), latency
    assert latency["p50_ms"] > 0 and latency["min_ms"] <= latency["mean_ms"] <= latency["max_ms"]


def test_cli_sweeps_concurrency_and_rate_over_every_operation(demo_server, tmp_path):
    paths = {name: tmp_path / f"run.{name}" for name in ("json", "csv", "png")}
    result = _run_cli(
        *("--port", _port(demo_server), "--concurrency", "1,4", "--rate", "20"),
        *("--duration", "2", "--warmup-seconds", "0.5", "--mix", ALL_OPERATIONS_MIX, "--languages", "en,zh"),
        *("--image-size", "320x240"),
        *("--json", str(paths["json"]), "--csv", str(paths["csv"]), "--plot", str(paths["png"])),
        "--fail-on-error",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "p99" in result.stdout and "failures:" not in result.stdout

    report = json.loads(paths["json"].read_text())
    assert report["config"]["languages"] == ["en", "zh"] and report["machine"]["cpu_count"] == os.cpu_count()
    assert (report["config"]["image_width"], report["config"]["image_height"]) == (320, 240)
    assert report["started_at"] <= report["finished_at"]
    assert [stage["name"] for stage in report["stages"]] == ["c=1", "c=4", "r=20/s"]
    for stage in report["stages"]:
        total = stage["total"]
        assert total["requests"] > 0 and total["failed"] == 0 and total["errors"] == {}
        assert total["succeeded"] == total["requests"] == total["latency"]["count"]
        assert total["requests_per_second"] == pytest.approx(total["succeeded"] / total["elapsed_s"])
        _assert_latencies_ordered(total["latency"])
        assert sorted(op["operation"] for op in stage["operations"]) == sorted(OPERATIONS)
        assert sum(op["requests"] for op in stage["operations"]) == total["requests"]
        for operation in stage["operations"]:
            _assert_latencies_ordered(operation["latency"])
    rate_stage = report["stages"][2]
    # About 20 req/s for 2 s: the open loop sends on schedule.
    assert 20 <= rate_stage["total"]["requests"] <= 60
    # Every request the open loop measured had its send lag taken; the closed loops have none.
    assert rate_stage["send_lag"]["count"] == rate_stage["total"]["requests"]
    assert [stage["send_lag"] for stage in report["stages"][:2]] == [None, None]

    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 3 * (len(OPERATIONS) + 1)
    all_rows = [row for row in rows if row["operation"] == "all"]
    assert [int(row["requests"]) for row in all_rows] == [s["total"]["requests"] for s in report["stages"]]
    assert all(float(row["p50_ms"]) <= float(row["p99_ms"]) and row["errors"] == "" for row in rows)

    with Image.open(paths["png"]) as plot:
        assert plot.format == "PNG" and plot.size[0] > 400


def test_cli_counts_failed_requests_by_status_code_and_completes(demo_server, tmp_path):
    report_path = tmp_path / "errors.json"
    result = _run_cli(
        *("--port", _port(demo_server), "--model", "no_such_pipeline", "--concurrency", "2"),
        *("--requests", "30", "--warmup-seconds", "0", "--json", str(report_path), "--fail-on-error"),
    )
    assert result.returncode == 1, result.stdout + result.stderr  # --fail-on-error: the run failed requests
    assert "NOT_FOUND" in result.stdout
    total = json.loads(report_path.read_text())["stages"][0]["total"]
    assert (total["requests"], total["failed"], total["errors"]) == (30, 30, {"NOT_FOUND": 30})
    assert total["latency"] is None and total["requests_per_second"] == 0
    assert any("no_such_pipeline" in message for message in total["error_samples"]["NOT_FOUND"])


def test_run_load_from_python(demo_server):
    config = LoadConfig(
        stages=(Stage(CONCURRENCY, 2),),
        target=demo_server,
        mix=OperationMix.parse("translate=1,encode_texts=1"),
        languages=("zh",),
        batch_items=2,
        duration=None,
        requests=20,
        warmup_seconds=0,
    )
    report = run_load(config)
    total = report.stages[0].total
    assert (total.requests, total.succeeded, total.items) == (20, 20, 40)
    assert total.latency.p50_ms <= total.latency.p99_ms


def test_cli_reports_an_unreachable_server():
    result = _run_cli("--port", str(free_port()), "--connect-timeout", "0.5", "--concurrency", "1")
    assert result.returncode == 1
    assert "no server answered" in result.stderr
