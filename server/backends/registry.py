"""The one place that maps a config's `model_type` parameter to the backend class that serves it."""

from __future__ import annotations

from crossmodal.v1 import model_config_pb2 as mc
from server.backends.base import ServedModel
from server.backends.clip.text import ClipTextModel
from server.backends.clip.vision import ClipVisionModel
from server.backends.marian.model import MarianModel
from server.backends.onnx.model import ModelSource
from server.backends.onnx.session import SessionFactory
from server.core.errors import ModelLoadError
from server.repository.model_config import parameter

BACKENDS: dict[str, type[ServedModel]] = {
    ClipVisionModel.model_type: ClipVisionModel,
    ClipTextModel.model_type: ClipTextModel,
    MarianModel.model_type: MarianModel,
}


def backend_class(config: mc.ModelConfig) -> type[ServedModel]:
    model_type = parameter(config, "model_type")
    if model_type is None:
        raise ModelLoadError(
            f"model '{config.name}': config.pbtxt needs parameters {{ key: \"model_type\" ... }} "
            f"naming one of {sorted(BACKENDS)}"
        )
    if model_type not in BACKENDS:
        raise ModelLoadError(
            f"model '{config.name}': unknown model_type '{model_type}' (known: {sorted(BACKENDS)})"
        )
    return BACKENDS[model_type]


def build_model(source: ModelSource, factory: SessionFactory) -> ServedModel:
    """Loads one version and warms it up; only a warmed model is ever reported ready."""
    try:
        model = backend_class(source.config)(source, factory)
    except ModelLoadError:
        raise
    except Exception as error:  # odd files (a null in a JSON, a bad number) are load failures with a reason
        raise ModelLoadError(
            f"model '{source.name}' version {source.version}: cannot load: {type(error).__name__}: {error}"
        ) from error
    try:
        model.warmup()
    except Exception as error:  # a graph that loads but cannot run is a load failure, with its reason
        model.close()
        raise ModelLoadError(
            f"model '{source.name}' version {source.version}: warm-up failed: {error}"
        ) from error
    return model
