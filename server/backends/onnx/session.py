"""Builds ONNX Runtime sessions with options from config.pbtxt `parameters` and the instance_group.

Parameters read (all optional, names as in Triton's ONNX Runtime backend where it has them):
  intra_op_thread_count, inter_op_thread_count   threads per session (0 = ONNX Runtime default); the
                                                  intra-op default is cores / instance count, so the
                                                  instances of a model do not oversubscribe the CPU
  execution_mode                                  sequential | parallel
  graph_optimization_level                        disable | basic | extended | all (default all)
  allow_spinning                                  true | false (default false): idle ONNX Runtime threads
                                                  spin for work; off, they sleep, leaving the cores to
                                                  decoding, tokenising and the beam search's NumPy
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from server.backends.onnx.providers import CUDA, ProviderRequest, provider_request
from server.core.errors import ModelLoadError
from server.repository.specs import ModelSpec

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

# ONNX Runtime is imported when the first session opens, not with this module: a server whose models run
# on other backends never loads it. The tables name its enum members.
OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}


@dataclass(frozen=True)
class SessionSettings:
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    execution_mode: str = "sequential"
    optimization_level: str = "all"
    allow_spinning: bool = False

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must not be negative")
        if self.execution_mode not in EXECUTION_MODES:
            raise ValueError(f"execution_mode must be one of {sorted(EXECUTION_MODES)}")
        if self.optimization_level not in OPTIMIZATION_LEVELS:
            raise ValueError(f"graph_optimization_level must be one of {sorted(OPTIMIZATION_LEVELS)}")

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> SessionSettings:
        default_intra = max(1, (os.cpu_count() or 1) // spec.instance_count)
        parameters = spec.parameters
        try:
            return cls(
                intra_op_threads=int(parameters.get("intra_op_thread_count", str(default_intra))),
                inter_op_threads=int(parameters.get("inter_op_thread_count", "0")),
                execution_mode=parameters.get("execution_mode", "sequential"),
                optimization_level=parameters.get("graph_optimization_level", "all"),
                allow_spinning=_flag(parameters.get("allow_spinning", "false")),
            )
        except ValueError as error:
            raise ModelLoadError(f"model '{spec.name}': bad session parameter: {error}") from error

    def options(self) -> ort.SessionOptions:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[self.execution_mode])
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[self.optimization_level]
        )
        spin = "1" if self.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        options.log_severity_level = 3  # ORT's own warnings are noise here; we log what matters ourselves
        return options


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ValueError(f"expected true or false, got {value!r}")
    return lowered in ("true", "1")


@dataclass(frozen=True)
class LoadedSession:
    session: ort.InferenceSession
    provider: str  # what really runs it, e.g. "CUDA:0" or "CPU"

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)


class SessionFactory:
    """Creates sessions; with strict_gpu a KIND_GPU model without working CUDA fails to load."""

    def __init__(self, strict_gpu: bool = False) -> None:
        self.strict_gpu = strict_gpu

    def create(self, model_path: Path, spec: ModelSpec) -> LoadedSession:
        request = provider_request(spec.device)
        settings = SessionSettings.from_spec(spec)
        if not model_path.is_file():
            raise ModelLoadError(f"model '{spec.name}': missing file {model_path.name}")
        session = self._open(model_path, spec, request, settings)
        if request.wants_gpu and CUDA not in session.get_providers():
            kind = "KIND_GPU" if request.required else "KIND_AUTO"
            reason = (
                f"model '{spec.name}' asks for {request.describe()} (instance_group {kind}) "
                "but CUDA is not available to ONNX Runtime here"
            )
            if self.strict_gpu and request.required:
                raise ModelLoadError(f"{reason}; refusing to load because the server runs with --strict-gpu")
            log.warning("%s; running it on CPU instead", reason)
            return LoadedSession(session, "CPU")
        return LoadedSession(session, request.describe())

    def _open(
        self, path: Path, spec: ModelSpec, request: ProviderRequest, settings: SessionSettings
    ) -> ort.InferenceSession:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(
                str(path), sess_options=settings.options(), providers=request.providers()
            )
        except Exception as error:  # ORT raises its own exception types for corrupt or unsupported graphs
            raise ModelLoadError(f"model '{spec.name}': cannot load {path.name}: {error}") from error
