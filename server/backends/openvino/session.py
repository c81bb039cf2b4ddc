"""OpenVINO compiled models behind the small part of an ONNX Runtime session the kind classes use.

The CLIP towers and the Marian decoder call `get_inputs()`, `get_outputs()` (names and shapes) and
`run(output_names, feeds)`; OnnxModel reads the exporter's metadata (logit_scale, context_length) from
`LoadedSession.metadata`. OpenVINO keeps an ONNX file's metadata_props in the model's rt_info under
"framework", and writes them into an IR's model.xml when one is saved, so both formats carry them.

OpenVINO is imported when the first such model loads: a server whose models all run on ONNX Runtime never
loads it.
"""

from __future__ import annotations

import functools
import logging
import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from server.backends.onnx.providers import provider_request
from server.backends.openvino.settings import PRECISION, CompileSettings
from server.core.errors import ModelLoadError
from server.repository.specs import ModelSpec

if TYPE_CHECKING:
    import openvino as ov

log = logging.getLogger(__name__)

DEVICE = "CPU"  # the only OpenVINO device this server compiles for


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as ONNX Runtime describes it: dynamic dimensions are None."""

    name: str
    shape: list[int | None]


class OpenVinoSession:
    """One compiled model; `run` may be called from several batch workers at once, each taking an infer
    request of its own from a pool (a request holds its buffers, so one runs one call at a time)."""

    def __init__(self, model: ov.Model, compiled: ov.CompiledModel) -> None:
        self._compiled = compiled
        # Named as the graph names them: compiling may fuse an output with the node before it, which
        # adds that node's tensor names to the compiled port ("logits" gains "/lm_head/MatMul_output_0").
        self._inputs = [_info(port) for port in model.inputs]
        self._outputs = [_info(port) for port in model.outputs]
        self._ports = {name: port for port in compiled.outputs for name in port.get_names()}
        self._idle: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()

    def get_inputs(self) -> list[TensorInfo]:
        return self._inputs

    def get_outputs(self) -> list[TensorInfo]:
        return self._outputs

    def run(self, output_names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            # The feeds outlive this synchronous call, so OpenVINO may read them in place; the outputs
            # are copied out of the request's buffers, which its next run overwrites.
            results = request.infer(dict(feeds), share_inputs=True, share_outputs=False)
            return [results[self._ports[name]] for name in output_names]
        finally:
            self._idle.put(request)


@dataclass(frozen=True)
class OpenVinoLoaded:
    """What OnnxModel and MarianModel take from ONNX Runtime's LoadedSession."""

    session: OpenVinoSession
    provider: str
    metadata: dict[str, str]


class OpenVinoSessionFactory:
    """Reads ONNX or IR (model.xml + model.bin) files and compiles them for the CPU. A KIND_GPU model
    runs on the CPU with a warning, or fails to load with strict_gpu, as ONNX Runtime's factory does."""

    def __init__(self, strict_gpu: bool = False) -> None:
        self.strict_gpu = strict_gpu

    def create(self, model_path: Path, spec: ModelSpec) -> OpenVinoLoaded:
        settings = CompileSettings.from_spec(spec)
        self._check_device(spec)
        if not model_path.is_file():
            raise ModelLoadError(f"model '{spec.name}': missing file {model_path.name}")
        weights = model_path.with_suffix(".bin")
        if model_path.suffix == ".xml" and not weights.is_file():
            raise ModelLoadError(f"model '{spec.name}': {model_path.name} needs its weights {weights.name}")
        core = _core()
        try:
            model = core.read_model(str(model_path))
            compiled = core.compile_model(model, DEVICE, settings.properties())
        except Exception as error:  # OpenVINO raises RuntimeError for unreadable or unsupported graphs
            raise ModelLoadError(
                f"model '{spec.name}': OpenVINO cannot load {model_path.name}: {error}"
            ) from error
        _log_compiled(spec, model_path, settings, compiled)
        return OpenVinoLoaded(OpenVinoSession(model, compiled), DEVICE, _metadata(model))

    def _check_device(self, spec: ModelSpec) -> None:
        request = provider_request(spec.device)
        if not request.wants_gpu:
            return
        reason = f"model '{spec.name}' asks for {request.describe()} but the OpenVINO backend runs on the CPU"
        if request.required and self.strict_gpu:
            raise ModelLoadError(f"{reason}; refusing to load because the server runs with --strict-gpu")
        if request.required:
            log.warning("%s; running it on the CPU", reason)


@functools.cache
def _core() -> ov.Core:
    import openvino as ov

    return ov.Core()


def _info(port: ov.Output) -> TensorInfo:
    shape = [dim.get_length() if dim.is_static else None for dim in port.get_partial_shape()]
    return TensorInfo(port.get_any_name(), shape)


def _metadata(model: ov.Model) -> dict[str, str]:
    if not model.has_rt_info(["framework"]):
        return {}
    entries = model.get_rt_info(["framework"]).astype(dict)
    return {key: value.astype(str) for key, value in entries.items()}


def _log_compiled(spec: ModelSpec, path: Path, settings: CompileSettings, compiled: ov.CompiledModel) -> None:
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    level = logging.INFO
    if settings.precision is None:
        chosen = "OpenVINO's choice for this CPU"
    elif settings.precision == precision:
        chosen = f"from parameter '{PRECISION}'"
    else:  # the CPU plugin runs another precision rather than refuse one the CPU lacks (f16 without AMX-FP16)
        chosen = f"parameter '{PRECISION}' asks for {settings.precision}, which this CPU does not run"
        level = logging.WARNING
    log.log(
        level,
        "model '%s': OpenVINO compiled %s for the CPU: inference precision %s (%s), streams %s, threads %s",
        spec.name,
        path.name,
        precision,
        chosen,
        compiled.get_property("NUM_STREAMS"),
        compiled.get_property("INFERENCE_NUM_THREADS"),
    )
