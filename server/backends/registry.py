"""The one table from a config's `model_type` parameter to the backend class that serves it, and the one
factory that builds and warms a version. A new kind of model is one module and one line in BACKENDS."""

from __future__ import annotations

from server.backends.base import Backend
from server.backends.clip.text import ClipTextModel
from server.backends.clip.vision import ClipVisionModel
from server.backends.marian.model import MarianModel
from server.backends.onnx.model import ModelSource
from server.backends.onnx.session import SessionFactory
from server.core.errors import ModelLoadError

BACKENDS: dict[str, type[Backend]] = {
    ClipVisionModel.model_type: ClipVisionModel,
    ClipTextModel.model_type: ClipTextModel,
    MarianModel.model_type: MarianModel,
}


def backend_class(source: ModelSource) -> type[Backend]:
    """The class for the config's model_type (on the platform it names); refused with the known kinds
    when there is none."""
    name, model_type = source.spec.name, source.spec.parameters.get("model_type")
    if model_type is None:
        raise ModelLoadError(
            f"model '{name}': config.pbtxt needs parameters {{ key: \"model_type\" ... }} "
            f"naming one of {sorted(BACKENDS)}"
        )
    if model_type not in BACKENDS:
        raise ModelLoadError(f"model '{name}': unknown model_type '{model_type}' (known: {sorted(BACKENDS)})")
    backend = BACKENDS[model_type]
    if backend.platform and source.spec.platform != backend.platform:
        raise ModelLoadError(
            f"model '{name}': model_type '{model_type}' runs on platform '{backend.platform}', "
            f"not '{source.spec.platform}'"
        )
    return backend


def build_backend(source: ModelSource, factory: SessionFactory) -> Backend:
    """Loads one version and warms it up; only a warmed model is ever reported ready."""
    try:
        model = backend_class(source)(source, factory)
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
