"""The one table from a config's platform and `model_type` parameter to the backend class that serves it,
and the one factory that builds and warms a version. A new kind of model is one module and one line in
BACKENDS; its platform is then one the repository accepts."""

from __future__ import annotations

from server.backends.base import Backend
from server.backends.clip.text import ClipTextModel
from server.backends.clip.vision import ClipVisionModel
from server.backends.marian.model import MarianModel
from server.backends.onnx.model import ModelSource
from server.backends.onnx.session import SessionFactory
from server.core.errors import ModelLoadError

# (platform, model_type) -> class.
BACKENDS: dict[tuple[str, str], type[Backend]] = {
    (ClipVisionModel.platform, ClipVisionModel.model_type): ClipVisionModel,
    (ClipTextModel.platform, ClipTextModel.model_type): ClipTextModel,
    (MarianModel.platform, MarianModel.model_type): MarianModel,
}


def platforms() -> frozenset[str]:
    """The platforms some registered backend runs on."""
    return frozenset(platform for platform, _ in BACKENDS)


def model_types() -> list[str]:
    return sorted({model_type for _, model_type in BACKENDS})


def backend_class(source: ModelSource) -> type[Backend]:
    """The class for the config's platform and model_type; refused with the known kinds when there is
    none."""
    spec = source.spec
    name, platform, model_type = spec.name, spec.platform, spec.parameters.get("model_type")
    if model_type is None:
        raise ModelLoadError(
            f"model '{name}': config.pbtxt needs parameters {{ key: \"model_type\" ... }} "
            f"naming one of {model_types()}"
        )
    backend = BACKENDS.get((platform, model_type))
    if backend is not None:
        return backend
    elsewhere = sorted(known for known, kind in BACKENDS if kind == model_type)
    if elsewhere:
        raise ModelLoadError(
            f"model '{name}': model_type '{model_type}' runs on platform {' or '.join(elsewhere)}, "
            f"not '{platform}'"
        )
    raise ModelLoadError(f"model '{name}': unknown model_type '{model_type}' (known: {model_types()})")


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
