"""A run that fails beyond repair (a failed execution provider, a CUDA failure) takes its version out of
selection: UNAVAILABLE with the reason, until it is loaded again; ordinary errors of one batch do not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

from server.backends import registry
from server.backends.base import Backend, Capability, Signature, TensorSpec
from server.backends.onnx.failures import unrecoverable
from server.backends.source import ModelSource
from server.batching.batcher import DynamicBatcher
from server.core.errors import InvalidInput, ModelLoadError, ModelNotReady
from server.repository.model_config import parse_model_config
from server.repository.repository import ModelRepository, State
from server.repository.specs import model_spec

ILLEGAL_ADDRESS = "[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700: an illegal memory access was encountered"


class FailingEmbedder(Backend):
    """Embeds texts as [len, 1]; a text naming an error makes its run raise that error."""

    model_type = "test_failing"
    platform = "test_platform"
    capabilities = frozenset({Capability.EMBED_TEXTS})
    errors: ClassVar[dict] = {
        "epfail": lambda: EPFail("CUDAExecutionProvider: the device is gone"),
        "illegal": lambda: RuntimeError(ILLEGAL_ADDRESS),
        "oom": lambda: RuntimeError("CUDA failure 2: out of memory ; GPU=0"),
        "shape": lambda: RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions"),
    }

    def __init__(self, source, factory) -> None:
        self.name, self.version = source.name, source.version
        self.closed = False
        settings = source.batch_settings(4)
        self.batcher = DynamicBatcher(f"{self.name}/{self.version}", self.guarded(self._run), settings)

    @property
    def provider(self) -> str:
        return "CPU"

    def signature(self) -> Signature:
        return Signature((TensorSpec("TEXT", "BYTES", (-1,)),), (TensorSpec("EMBEDS", "FP32", (-1, 2)),))

    def unrecoverable(self, error: BaseException) -> str | None:
        return unrecoverable(error)

    def embed(self, texts: Sequence[str]) -> list:
        if any(not text for text in texts):
            raise InvalidInput("texts must not be empty")
        return self.batcher.run(list(texts))

    def _run(self, texts: Sequence[str]) -> list:
        for text in texts:
            if text in self.errors:
                raise self.errors[text]()
        return [np.array([len(text), 1.0], np.float32) for text in texts]

    def warmup(self) -> None:
        self.embed(["warm"])

    def close(self) -> None:
        self.batcher.stop()
        self.closed = True


@pytest.fixture
def repository(tmp_path, monkeypatch):
    kind = FailingEmbedder
    monkeypatch.setitem(registry.BACKENDS, (kind.platform, kind.model_type), kind)  # its platform too
    (tmp_path / "failing" / "1").mkdir(parents=True)
    model_type = 'parameters { key: "model_type" value { string_value: "test_failing" } }'
    (tmp_path / "failing" / "config.pbtxt").write_text(f'platform: "test_platform"\n{model_type}\n')
    loaded = ModelRepository(tmp_path, factory=None)
    loaded.load_all()
    yield loaded
    loaded.close()


@pytest.mark.parametrize(
    "error, fatal",
    [
        (EPFail("provider failed"), True),
        (RuntimeError(ILLEGAL_ADDRESS), True),
        (RuntimeError("CUBLAS failure 13: CUBLAS_STATUS_EXECUTION_FAILED"), True),
        (RuntimeError("CUDA failure 2: out of memory ; GPU=0"), False),
        (RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input"), False),
        (InvalidInput("input_ids row 0: token ids must be in 0..9"), False),
    ],
)
def test_which_errors_end_a_version(error, fatal):
    assert (unrecoverable(error) is not None) is fatal


@pytest.mark.parametrize("error", ["epfail", "illegal"])
def test_an_unrecoverable_run_makes_the_version_unavailable_with_its_reason(repository, error):
    model = repository.model("failing", 0)
    with pytest.raises((EPFail, RuntimeError)):  # the batch it happened in fails as any failed batch does
        model.embed([error])
    assert model.failed
    with pytest.raises(ModelNotReady, match="failed while serving"):
        repository.model("failing", 0)
    with pytest.raises(ModelNotReady, match="version 1 is UNAVAILABLE: failed while serving"):
        repository.model("failing", 1)
    assert repository.ready_versions("failing") == []
    [status] = repository.statuses("failing")
    assert status.state is State.UNAVAILABLE and model.failed in status.reason


@pytest.mark.parametrize("error", ["oom", "shape"])
def test_errors_of_one_batch_leave_the_version_ready(repository, error):
    model = repository.model("failing", 0)
    with pytest.raises(RuntimeError):
        model.embed([error])
    with pytest.raises(InvalidInput):
        model.embed([""])
    assert model.failed is None
    assert repository.model("failing", 0) is model
    assert model.embed(["still fine"])[0][0] == len("still fine")


def test_loading_again_replaces_the_failed_version_and_closes_it(repository):
    failed = repository.model("failing", 0)
    with pytest.raises(EPFail):
        failed.embed(["epfail"])
    repository.load_model("failing")
    fresh = repository.model("failing", 0)
    assert fresh is not failed and fresh.failed is None
    assert failed.closed
    assert [s.state for s in repository.statuses("failing")] == [State.READY]


def test_a_config_without_a_known_model_type_is_refused_with_the_known_kinds(tmp_path):
    for name, model_type in (("untyped", None), ("unknown", "clip_audio")):
        (tmp_path / name / "1").mkdir(parents=True)
        parameters = f'parameters {{ key: "model_type" value {{ string_value: "{model_type}" }} }}'
        (tmp_path / name / "config.pbtxt").write_text(
            'platform: "onnxruntime_onnx"\n' + (parameters if model_type else "")
        )
    repository = ModelRepository(tmp_path, factory=None)
    repository.load_all()
    reasons = {s.name: s.reason for s in repository.index()}
    known = str(registry.model_types())
    assert reasons["untyped"] == (
        f"model 'untyped': config.pbtxt needs parameters {{ key: \"model_type\" ... }} naming one of {known}"
    )
    assert reasons["unknown"] == f"model 'unknown': unknown model_type 'clip_audio' (known: {known})"
    with pytest.raises(ModelLoadError):
        registry.backend_class(repository_source(tmp_path, "unknown"))


def test_a_model_type_is_refused_on_a_platform_it_does_not_run_on(tmp_path):
    (tmp_path / "vision" / "1").mkdir(parents=True)
    (tmp_path / "vision" / "config.pbtxt").write_text(
        'platform: "tensorrt_plan"\nparameters { key: "model_type" value { string_value: "clip_vision" } }\n'
    )
    refused = (
        "model 'vision': model_type 'clip_vision' runs on platform onnxruntime_onnx or openvino, "
        "not 'tensorrt_plan'"
    )
    with pytest.raises(ModelLoadError, match=refused):
        registry.backend_class(repository_source(tmp_path, "vision"))


def repository_source(root, name):
    """Version 1 of a model folder, its config parsed without the repository's platform check."""
    config = parse_model_config((root / name / "config.pbtxt").read_text())
    config.name = name
    return ModelSource(name, 1, root / name / "1", model_spec(config))


def test_each_registry_line_imports_the_class_that_serves_its_key():
    for key in list(registry.BACKENDS):
        kind = registry.resolved(key)
        assert issubclass(kind, Backend) and (kind.platform, kind.model_type) == key


def test_a_registry_line_whose_class_serves_another_kind_is_a_load_failure(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.BACKENDS, ("test_platform", "clip_audio"), f"{__name__}:FailingEmbedder")
    (tmp_path / "audio" / "1").mkdir(parents=True)
    (tmp_path / "audio" / "config.pbtxt").write_text(
        'platform: "test_platform"\nparameters { key: "model_type" value { string_value: "clip_audio" } }\n'
    )
    with pytest.raises(ModelLoadError, match=r"FailingEmbedder serves .*test_failing.*registered as"):
        registry.build_backend(repository_source(tmp_path, "audio"), factory=None)
