"""config.pbtxt parsed once into typed specs: models, pipelines by the roles of their kind."""

from __future__ import annotations

import os

import pytest

from server.backends.base import Capability
from server.backends.onnx.providers import provider_request
from server.backends.onnx.session import SessionSettings
from server.batching.settings import BatchSettings, DynamicBatching
from server.core.errors import ModelLoadError
from server.pipelines.kinds import PIPELINE_KINDS, PipelineKind, Role
from server.repository.model_config import parse_model_config
from server.repository.specs import DeviceSpec, VersionPolicy, model_spec, pipeline_spec
from tests.test_model_config import TRITON_ONNX_CONFIG

CLIP_PIPELINE = """
name: "clip"
platform: "crossmodal_pipeline"
parameters { key: "vision_model" value { string_value: "clip_vision" } }
parameters { key: "text_model" value { string_value: "clip_text" } }
parameters { key: "translator" value { string_value: "opus_mt_zh_en" } }
"""


def test_a_triton_config_becomes_a_model_spec():
    spec = model_spec(parse_model_config(TRITON_ONNX_CONFIG))
    assert (spec.name, spec.platform, spec.max_batch_size) == ("clip_vision", "onnxruntime_onnx", 32)
    assert spec.instance_count == 2
    assert spec.device == DeviceSpec("KIND_GPU", (1,))
    assert spec.batching == DynamicBatching((8, 16), 0.0005, 64)
    assert spec.version_policy == VersionPolicy("specific", specific=(1, 3))
    assert dict(spec.parameters) == {"intra_op_thread_count": "1"}
    with pytest.raises(TypeError):
        spec.parameters["intra_op_thread_count"] = "2"  # type: ignore[index]
    assert spec.proto.name == "clip_vision"  # as written, for KServe's ModelConfig


def test_the_instance_count_sizes_both_the_batch_workers_and_the_session_threads():
    spec = model_spec(parse_model_config('name: "m" instance_group [{ count: 2 }, { count: 1 }]'))
    assert spec.instance_count == 3
    assert spec.batch_settings(16).workers == 3
    assert SessionSettings.from_spec(spec).intra_op_threads == max(1, (os.cpu_count() or 1) // 3)
    plain = model_spec(parse_model_config('name: "m" backend: "onnxruntime"'))
    assert (plain.instance_count, plain.platform, plain.device) == (1, "onnxruntime_onnx", DeviceSpec())
    assert plain.batch_settings(16) == BatchSettings(16, join_requests=False)
    assert not provider_request(plain.device).wants_gpu
    auto = model_spec(parse_model_config('name: "m" instance_group [{ kind: KIND_AUTO }]'))
    assert provider_request(auto.device).wants_gpu and not provider_request(auto.device).required


def test_empty_parameters_count_as_absent():
    spec = model_spec(parse_model_config('name: "m" parameters { key: "a" value { string_value: "" } }'))
    assert "a" not in spec.parameters


def test_bad_batching_is_a_load_error_naming_the_model():
    spec = model_spec(
        parse_model_config('name: "m" max_batch_size: 4 dynamic_batching { preferred_batch_size: 8 }')
    )
    with pytest.raises(ModelLoadError, match="model 'm': bad batching settings: preferred_batch_size 8"):
        spec.batch_settings(16)


def test_a_pipeline_spec_names_its_parts_by_role():
    spec = pipeline_spec(parse_model_config(CLIP_PIPELINE), PIPELINE_KINDS)
    assert spec.kind == "clip" and spec.complete
    assert dict(spec.parts) == {"vision": "clip_vision", "text": "clip_text", "translator": "opus_mt_zh_en"}
    assert spec.same_version == ("clip_vision", "clip_text")
    assert spec.any_version == ("opus_mt_zh_en",)


def test_a_pipeline_without_a_required_part_is_recorded_as_incomplete():
    config = parse_model_config('name: "p" parameters { key: "text_model" value { string_value: "t" } }')
    spec = pipeline_spec(config, PIPELINE_KINDS)
    assert spec.missing == ("vision_model",) and not spec.complete
    assert spec.any_version == ()


def test_pipeline_kinds_come_from_the_table_given():
    kinds = {"echo": PipelineKind("echo", (Role("embedder", "model", Capability.EMBED_TEXTS, False),))}
    config = parse_model_config(
        'name: "p" parameters { key: "pipeline_kind" value { string_value: "echo" } }'
        ' parameters { key: "model" value { string_value: "m" } }'
    )
    spec = pipeline_spec(config, kinds)
    assert (spec.kind, dict(spec.parts), spec.any_version) == ("echo", {"embedder": "m"}, ("m",))
    with pytest.raises(
        ModelLoadError, match=r"pipeline 'p': unknown pipeline_kind 'echo' \(known: \['clip'\]\)"
    ):
        pipeline_spec(config, PIPELINE_KINDS)
