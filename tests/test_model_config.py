"""config.pbtxt parsing, version policies, execution providers and load failures."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest

from crossmodal.v1 import model_config_pb2 as mc
from server.backends.onnx.session import SessionFactory
from server.core.errors import ModelLoadError, ModelNotFound, ModelNotReady
from server.repository.model_config import load_model_config, parse_model_config
from server.repository.repository import ModelRepository, State
from server.repository.specs import VersionPolicy
from server.repository.versions import discover_versions, select_versions

# A config as Triton users write them for ONNX models, with settings this server does not use.
TRITON_ONNX_CONFIG = """
name: "clip_vision"
platform: "onnxruntime_onnx"
max_batch_size: 32
version_policy: { specific: { versions: [1, 3] } }
input [
  { name: "pixel_values", data_type: TYPE_FP32, format: FORMAT_NCHW, dims: [ 3, 224, 224 ] }
]
output [
  { name: "image_embeds", data_type: TYPE_FP32, dims: [ 512 ] }
]
instance_group [ { count: 2, kind: KIND_GPU, gpus: [ 1 ] } ]
dynamic_batching {
  preferred_batch_size: [ 8, 16 ]
  max_queue_delay_microseconds: 500
  default_queue_policy { max_queue_size: 64 }
}
optimization { execution_accelerators {
  gpu_execution_accelerator : [ { name : "tensorrt", parameters { key: "precision_mode" value: "FP16" } } ]
} }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
model_warmup [{
  name: "warm", batch_size: 1,
  inputs { key: "pixel_values" value: { data_type: TYPE_FP32, dims: [3, 224, 224], zero_data: true } }
}]
response_cache { enable: true }
"""


def test_real_triton_onnx_config_parses():
    config = parse_model_config(TRITON_ONNX_CONFIG)
    assert config.name == "clip_vision" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    assert list(config.version_policy.specific.versions) == [1, 3]
    assert list(config.input[0].dims) == [3, 224, 224] and config.input[0].data_type == mc.TYPE_FP32
    group = config.instance_group[0]
    assert (group.count, group.kind, list(group.gpus)) == (2, mc.ModelInstanceGroup.KIND_GPU, [1])
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 64
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert config.model_warmup[0].inputs["pixel_values"].zero_data


def test_model_config_is_wire_compatible_field_by_field():
    # Triton's numbers for a few fields; a serialised config must carry them under these numbers.
    fields = mc.ModelConfig.DESCRIPTOR.fields_by_name
    expected = {
        "name": 1,
        "platform": 2,
        "version_policy": 3,
        "max_batch_size": 4,
        "input": 5,
        "output": 6,
        "instance_group": 7,
        "dynamic_batching": 11,
        "optimization": 12,
        "parameters": 14,
        "model_warmup": 16,
        "backend": 17,
    }
    assert {name: fields[name].number for name in expected} == expected


def test_invalid_pbtxt_is_a_clear_load_error():
    with pytest.raises(ModelLoadError, match=r"invalid config\.pbtxt"):
        parse_model_config('name: "x" max_batch_size: "many"', "x/config.pbtxt")


def _model_dir(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "config.pbtxt").write_text(text)
    return directory


def test_name_must_match_folder_and_defaults_to_it(tmp_path):
    assert load_model_config(_model_dir(tmp_path, "a", 'platform: "onnxruntime_onnx"')).name == "a"
    with pytest.raises(ModelLoadError, match="does not match its folder"):
        load_model_config(_model_dir(tmp_path, "b", 'name: "c" platform: "onnxruntime_onnx"'))


def test_unsupported_platform_is_refused(tmp_path):
    model_dir = _model_dir(tmp_path, "tf", 'platform: "tensorflow_savedmodel"')
    with pytest.raises(ModelLoadError, match="unsupported platform 'tensorflow_savedmodel'"):
        load_model_config(model_dir)  # ONNX only, unless the caller names the platforms it serves
    with pytest.raises(ModelLoadError, match=r"\(supported: numpy, onnxruntime_onnx, crossmodal_pipeline\)"):
        load_model_config(model_dir, {"onnxruntime_onnx", "numpy"})
    assert load_model_config(model_dir, {"tensorflow_savedmodel"}).platform == "tensorflow_savedmodel"


def test_version_folders_are_positive_integers(tmp_path):
    for name in ("1", "2", "10", "tmp", "0", "03", "-1"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a folder")
    assert discover_versions(tmp_path) == [1, 2, 10]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (mc.ModelVersionPolicy(), [10]),
        (mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=2)), [2, 10]),
        (mc.ModelVersionPolicy(all=mc.ModelVersionPolicy.All()), [1, 2, 10]),
        (mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(versions=[10, 1])), [1, 10]),
    ],
)
def test_version_policies(policy, expected):
    assert select_versions([1, 2, 10], VersionPolicy.from_proto(policy), "m") == expected


def test_specific_version_without_folder_is_an_error():
    policy = mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(versions=[4]))
    with pytest.raises(ModelLoadError, match=r"\[4\]"):
        select_versions([1, 2], VersionPolicy.from_proto(policy), "m")


def _set_config(repository: Path, model: str, old: str, new: str) -> None:
    path = repository / model / "config.pbtxt"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_repository_applies_version_policy(repository_copy):
    for tower in ("clip_vision", "clip_text"):
        _set_config(
            repository_copy, tower, "version_policy { all {} }", "version_policy { specific { versions: 1 } }"
        )
    repository = ModelRepository(repository_copy, SessionFactory())
    repository.load_all()
    assert repository.ready_versions("clip_vision") == [1]
    assert repository.model("clip_text", 0).version == 1
    with pytest.raises(ModelNotFound, match="no version 2"):
        repository.model("clip_text", 2)


def test_default_policy_serves_newest_only(repository_copy):
    for tower in ("clip_vision", "clip_text"):
        _set_config(repository_copy, tower, "version_policy { all {} }", "")
    repository = ModelRepository(repository_copy, SessionFactory())
    repository.load_all()
    assert repository.ready_versions("clip_vision") == [2]


def _cuda_works() -> bool:
    session = ort.InferenceSession(
        str(Path(__file__).parents[1] / "model_repository" / "clip_vision" / "1" / "model.onnx"),
        providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    return "CUDAExecutionProvider" in session.get_providers()


def _ask_for_gpu(repository: Path) -> None:
    for tower in ("clip_vision", "clip_text"):
        _set_config(repository, tower, "kind: KIND_CPU", "kind: KIND_GPU\n  gpus: 0")


def test_gpu_without_cuda_falls_back_to_cpu_with_a_warning(repository_copy, caplog):
    if _cuda_works():
        pytest.skip("CUDA works on this machine, so there is no fallback to observe")
    _ask_for_gpu(repository_copy)
    repository = ModelRepository(repository_copy, SessionFactory(strict_gpu=False))
    with caplog.at_level(logging.WARNING):
        repository.load_all()
    assert repository.model("clip_vision", 0).provider == "CPU"
    assert "CUDA is not available" in caplog.text and "running it on CPU instead" in caplog.text


def test_gpu_without_cuda_is_refused_in_strict_mode(repository_copy):
    if _cuda_works():
        pytest.skip("CUDA works on this machine, so strict mode has nothing to refuse")
    _ask_for_gpu(repository_copy)
    repository = ModelRepository(repository_copy, SessionFactory(strict_gpu=True))
    repository.load_all()
    statuses = {(s.name, s.version): s for s in repository.index()}
    assert statuses[("clip_vision", 1)].state is State.UNAVAILABLE
    assert "--strict-gpu" in statuses[("clip_vision", 1)].reason
    with pytest.raises(ModelNotReady, match="strict-gpu"):
        repository.model("clip_vision", 1)


def test_session_parameters_are_read_and_checked(repository_copy):
    _set_config(
        repository_copy,
        "clip_vision",
        "parameters {",
        'parameters { key: "graph_optimization_level" '
        'value { string_value: "basic" } }\nparameters { key: "intra_op_thread_count" value { string_value: '
        '"1" } }\nparameters {',
    )
    _set_config(
        repository_copy,
        "clip_text",
        "parameters {",
        'parameters { key: "execution_mode" value { string_value: "sideways" } }\nparameters {',
    )
    repository = ModelRepository(repository_copy, SessionFactory())
    repository.load_all()
    vision = repository.model("clip_vision", 1)
    assert vision.session.get_session_options().intra_op_num_threads == 1
    assert (
        vision.session.get_session_options().graph_optimization_level
        == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    statuses = {(s.name, s.version): s for s in repository.index()}
    assert "execution_mode must be one of" in statuses[("clip_text", 1)].reason


def test_corrupt_version_is_unavailable_with_reason_and_others_load(repository_copy):
    (repository_copy / "clip_text" / "2" / "model.onnx").write_bytes(b"not an onnx graph")
    shutil.rmtree(repository_copy / "clip_vision" / "1")
    (repository_copy / "broken").mkdir()
    (repository_copy / "broken" / "config.pbtxt").write_text("platform: ")
    repository = ModelRepository(repository_copy, SessionFactory())
    repository.load_all()
    statuses = {(s.name, s.version): s for s in repository.index()}
    assert statuses[("clip_text", 2)].state is State.UNAVAILABLE
    assert "cannot load model.onnx" in statuses[("clip_text", 2)].reason
    assert statuses[("clip_text", 1)].state is State.READY
    assert statuses[("clip_vision", 2)].state is State.READY
    assert "invalid config.pbtxt" in statuses[("broken", 0)].reason
