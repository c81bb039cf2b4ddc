"""The CLIP towers and the translator on OpenVINO (`backend: "openvino"`): the same answers as on ONNX
Runtime within each precision's bound, the same signature, and clear load errors for bad settings."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from server.backends.onnx.session import SessionFactory
from server.backends.openvino.settings import CompileSettings
from server.core.config import Limits
from server.core.errors import InvalidInput
from server.core.types import ImageInput, ModelRef, TextInput, TranslateOptions
from server.engine import Engine
from server.protocols.kserve.signatures import describe_model, metadata_tensors
from server.repository.model_config import parse_model_config
from server.repository.repository import ModelRepository, State
from server.repository.specs import model_spec
from tests.fixtures.images import encoded_image

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "model_repository"
MODELS = ("clip_vision", "clip_text", "opus_mt_zh_en")
ONNX_LINE = 'platform: "onnxruntime_onnx"'

IMAGES = [ImageInput(encoded_image(40 + 7 * i, 90 - 3 * i, "PNG", seed=i)) for i in range(24)]
SUBJECTS = [
    "dog",
    "cat",
    "car",
    "house",
    "tree",
    "boat",
    "bird",
    "horse",
    "city",
    "street",
    "beach",
    "forest",
]
TEXTS = [TextInput(f"a photo of a {s}") for s in SUBJECTS] + [
    TextInput(f"two {s}s at night") for s in SUBJECTS
]
CHINESE = ["在雪地里有两条狗", "一只猫在桌子上", "夜晚的伦敦", "海边的一座房子"]
F32_COSINE = 0.9999
# bf16 against ONNX Runtime's fp32 on the demo towers, measured over these 24 images and 24 texts: min
# cosine 0.999974 (images) and 0.999978 (texts); the bound leaves 4x that distance from 1.
BF16_COSINE = 0.9999


def on_openvino(repository: Path, *parameters: tuple[str, str], models=MODELS) -> Path:
    """Rewrites the configs of `models` to name the OpenVINO backend, with extra `parameters`."""
    for model in models:
        config = repository / model / "config.pbtxt"
        text = config.read_text()
        assert ONNX_LINE in text
        text = text.replace(ONNX_LINE, 'backend: "openvino"')
        for key, value in parameters:
            text += f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}\n'
        config.write_text(text)
    return repository


def copied(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def opened(root: Path, factory: SessionFactory | None = None) -> ModelRepository:
    repository = ModelRepository(root, factory or SessionFactory())
    repository.load_all()
    return repository


def engine_over(repository: ModelRepository) -> Engine:
    return Engine(repository, Limits(max_items=64, max_text_chars=200))


@pytest.fixture(scope="module")
def onnx_runtime_engines(exported_repository):
    exported, demo = opened(exported_repository), opened(DEMO)
    yield engine_over(exported), engine_over(demo)
    exported.close()
    demo.close()


def openvino_engine(tmp_path_factory, source: Path, *parameters: tuple[str, str]):
    root = on_openvino(copied(source, tmp_path_factory.mktemp("openvino") / "repository"), *parameters)
    repository = opened(root)
    return repository, engine_over(repository)


@pytest.fixture(scope="module")
def exported_f32(tmp_path_factory, exported_repository):
    repository, engine = openvino_engine(
        tmp_path_factory, exported_repository, ("inference_precision", "f32")
    )
    yield engine
    repository.close()


@pytest.fixture(scope="module")
def demo_f32(tmp_path_factory):
    repository, engine = openvino_engine(tmp_path_factory, DEMO, ("inference_precision", "f32"))
    yield engine
    repository.close()


def embeddings(engine: Engine, ref: ModelRef, items) -> np.ndarray:
    return asyncio.run(engine.encode(ref, list(items))).embeddings


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float((a * b).sum(axis=1).min())


def translations(engine: Engine, ref: ModelRef, options: TranslateOptions):
    return asyncio.run(engine.translate(ref, CHINESE, options)).texts


def assert_same_translations(expected, got) -> None:
    for want, have in zip(expected, got, strict=True):
        assert [h.text for h in have.translations] == [h.text for h in want.translations]
        np.testing.assert_allclose(
            [h.score for h in have.translations], [h.score for h in want.translations], atol=1e-3
        )


@pytest.mark.parametrize("version", [1, 2])
def test_exported_towers_in_f32_embed_as_on_onnx_runtime(onnx_runtime_engines, exported_f32, version):
    reference, _ = onnx_runtime_engines
    ref = ModelRef("clip_plain", version)
    items = IMAGES[:6] + TEXTS[:6]
    expected, got = embeddings(reference, ref, items), embeddings(exported_f32, ref, items)
    assert min_cosine(expected, got) >= F32_COSINE
    assert not np.allclose(got[0], got[1])  # the inputs differ, so must their embeddings


def test_exported_translator_in_f32_gives_onnx_runtimes_n_best(onnx_runtime_engines, exported_f32):
    reference, _ = onnx_runtime_engines
    for options in (TranslateOptions(), TranslateOptions(num_beams=3, num_hypotheses=2, max_length=12)):
        expected = translations(reference, ModelRef(), options)
        assert_same_translations(expected, translations(exported_f32, ModelRef(), options))


def test_demo_models_in_f32_answer_as_on_onnx_runtime(onnx_runtime_engines, demo_f32):
    _, reference = onnx_runtime_engines
    items = IMAGES[:8] + TEXTS[:8]
    assert min_cosine(embeddings(reference, ModelRef(), items), embeddings(demo_f32, ModelRef(), items)) >= (
        F32_COSINE
    )
    expected = translations(reference, ModelRef(), TranslateOptions())
    assert_same_translations(expected, translations(demo_f32, ModelRef(), TranslateOptions()))


def test_demo_towers_in_bf16_stay_within_the_measured_bound(onnx_runtime_engines, tmp_path_factory):
    _, reference = onnx_runtime_engines
    repository, engine = openvino_engine(tmp_path_factory, DEMO, ("inference_precision", "bf16"))
    try:
        items = IMAGES + TEXTS
        expected, got = embeddings(reference, ModelRef(), items), embeddings(engine, ModelRef(), items)
        assert min_cosine(expected, got) >= BF16_COSINE
        assert not np.array_equal(expected, got)  # bf16 really ran: fp32 would agree to the last bits
        texts = translations(engine, ModelRef(), TranslateOptions())
        assert all(t.translations and t.translations[0].text for t in texts)
    finally:
        repository.close()


def test_the_kserve_signature_is_the_one_onnx_runtime_gives(onnx_runtime_engines, exported_f32):
    reference, _ = onnx_runtime_engines
    for name in MODELS:
        expected = describe_model(name, reference.repository.model(name, 1))
        got = describe_model(name, exported_f32.repository.model(name, 1))
        assert got.platform == "openvino" and expected.platform == "onnxruntime_onnx"
        assert got.signature == expected.signature
        assert metadata_tensors(got.signature.inputs) == metadata_tensors(expected.signature.inputs)


def test_an_ir_pair_serves_like_the_onnx_file_it_was_converted_from(
    onnx_runtime_engines, exported_repository, tmp_path
):
    import openvino as ov

    root = on_openvino(copied(exported_repository, tmp_path / "repository"), ("inference_precision", "f32"))
    for tower in ("clip_vision", "clip_text"):
        for version in (root / tower).glob("[0-9]*"):
            model = ov.Core().read_model(version / "model.onnx")
            ov.save_model(model, version / "model.xml", compress_to_fp16=False)
            (version / "model.onnx").unlink()
    repository = opened(root)
    try:
        reference, _ = onnx_runtime_engines
        ref, items = ModelRef("clip_plain", 2), IMAGES[:4] + TEXTS[:4]
        got = embeddings(engine_over(repository), ref, items)
        assert min_cosine(embeddings(reference, ref, items), got) >= F32_COSINE
        # logit_scale and context_length come from the ONNX metadata the IR kept
        for tower in ("clip_vision", "clip_text"):
            expected = reference.repository.model(tower, 2).logit_scale
            assert repository.model(tower, 2).logit_scale == pytest.approx(expected)
    finally:
        repository.close()


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        ("inference_precision", "fp8", "bf16, f16, f32"),
        ("NUM_STREAMS", "0", "at least 1"),
        ("INFERENCE_NUM_THREADS", "many", "at least 1"),
        ("PERFORMANCE_HINT", "FAST", "LATENCY, THROUGHPUT"),
    ],
)
def test_a_bad_setting_fails_the_load_naming_the_parameter(
    exported_repository, tmp_path, key, value, accepted
):
    root = on_openvino(
        copied(exported_repository, tmp_path / "repository"), (key, value), models=["clip_text"]
    )
    repository = opened(root)
    try:
        for status in repository.statuses("clip_text"):
            assert status.state == State.UNAVAILABLE
            assert f"parameter '{key}' is '{value}'" in status.reason and accepted in status.reason
        assert all(s.state == State.READY for s in repository.statuses("clip_vision"))
    finally:
        repository.close()


def test_instances_share_the_cores_as_streams_unless_the_config_says_otherwise():
    def settings(config: str) -> CompileSettings:
        return CompileSettings.from_spec(
            model_spec(parse_model_config('name: "m"\nbackend: "openvino"\n' + config))
        )

    two = settings("instance_group { count: 2 kind: KIND_CPU }\n")
    assert (two.streams, two.precision, two.hint) == (2, None, None)
    assert "INFERENCE_PRECISION_HINT" not in two.properties()  # unset: OpenVINO's choice
    chosen = settings(
        "instance_group { count: 2 kind: KIND_CPU }\n"
        'parameters { key: "NUM_STREAMS" value { string_value: "1" } }\n'
        'parameters { key: "INFERENCE_NUM_THREADS" value { string_value: "3" } }\n'
        'parameters { key: "inference_precision" value { string_value: "f32" } }\n'
    )
    assert chosen.properties() == {
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": "3",
        "INFERENCE_PRECISION_HINT": "f32",
    }


def test_the_load_says_which_precision_openvino_chose(exported_repository, tmp_path, caplog):
    root = on_openvino(copied(exported_repository, tmp_path / "repository"), models=["clip_text"])
    with caplog.at_level(logging.INFO, logger="server.backends.openvino.session"):
        repository = opened(root)
    try:
        assert all(s.state == State.READY for s in repository.statuses("clip_text"))
        lines = [r.getMessage() for r in caplog.records if "OpenVINO compiled model.onnx" in r.getMessage()]
        assert len(lines) == 2  # one per version
        assert all("inference precision" in line and "OpenVINO's choice" in line for line in lines)
    finally:
        repository.close()


@pytest.mark.parametrize("strict", [False, True])
def test_kind_gpu_runs_on_the_cpu_or_is_refused_with_strict_gpu(
    exported_repository, tmp_path, caplog, strict
):
    root = on_openvino(copied(exported_repository, tmp_path / "repository"), models=["clip_vision"])
    config = root / "clip_vision" / "config.pbtxt"
    config.write_text(config.read_text().replace("kind: KIND_CPU", "kind: KIND_GPU"))
    with caplog.at_level(logging.WARNING, logger="server.backends.openvino.session"):
        repository = opened(root, SessionFactory(strict_gpu=strict))
    try:
        statuses = repository.statuses("clip_vision")
        if strict:
            assert all(s.state == State.UNAVAILABLE and "--strict-gpu" in s.reason for s in statuses)
        else:
            assert all(s.state == State.READY and s.model.provider == "CPU" for s in statuses)
            assert "runs on the CPU" in caplog.text
    finally:
        repository.close()


def test_bad_input_is_refused_and_leaves_the_version_serving(exported_f32):
    vision = exported_f32.repository.model("clip_vision", 1)
    pixels = np.zeros((1, *vision.signature().inputs[0].shape[1:]), dtype=np.float32)
    pixels[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        vision.infer({vision.pixels_input: pixels}, {})
    assert vision.unrecoverable(RuntimeError("Exception from src/inference: input shape mismatch")) is None
    assert vision.failed is None


def test_a_lost_device_takes_the_version_out_of_selection(exported_repository, tmp_path):
    root = on_openvino(copied(exported_repository, tmp_path / "repository"), models=["clip_vision"])
    repository = opened(root)
    try:
        vision = repository.model("clip_vision", 1)
        pixels = np.zeros(vision.signature().inputs[0].shape[1:], dtype=np.float32)

        def lost(*args, **kwargs):
            raise RuntimeError("Exception from src/plugins/intel_gpu: the device was lost")

        vision.session.run = lost
        with pytest.raises(RuntimeError, match="device was lost"):
            vision.submit_images([pixels]).result()
        (status,) = [s for s in repository.statuses("clip_vision") if s.version == 1]
        assert status.state == State.UNAVAILABLE and "device was lost" in status.reason
        assert all(s.state == State.READY for s in repository.statuses("clip_vision") if s.version == 2)
    finally:
        repository.close()


def test_a_server_over_onnx_runtime_models_never_imports_openvino(exported_repository):
    script = (
        "import sys; from pathlib import Path\n"
        "from server.backends.onnx.session import SessionFactory\n"
        "from server.repository.repository import ModelRepository\n"
        f"r = ModelRepository(Path({str(exported_repository)!r}), SessionFactory()); r.load_all()\n"
        "assert r.model('clip_vision', 1).platform == 'onnxruntime_onnx'\n"
        "r.close(); print('openvino' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
