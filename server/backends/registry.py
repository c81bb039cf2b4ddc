"""The one table from a config's platform and `model_type` parameter to the backend class that serves it,
and the one factory that builds and warms a version. A new kind of model is one module and one line in
BACKENDS; its platform is then one the repository accepts.

The table names its classes as "module:Class" and imports one when a model of its kind first loads, so
that the repository, the engine and a server over other backends never import ONNX Runtime.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

from server.backends.base import Backend
from server.backends.source import ModelSource
from server.core.errors import ModelLoadError
from server.repository.model_config import ONNX_PLATFORM, OPENVINO_PLATFORM

if TYPE_CHECKING:
    from server.backends.onnx.session import SessionFactory

# (platform, model_type) -> the class, or where to import it from ("module:Class").
BACKENDS: dict[tuple[str, str], type[Backend] | str] = {
    (ONNX_PLATFORM, "clip_vision"): "server.backends.clip.vision:ClipVisionModel",
    (ONNX_PLATFORM, "clip_text"): "server.backends.clip.text:ClipTextModel",
    (ONNX_PLATFORM, "marian"): "server.backends.marian.model:MarianModel",
    (OPENVINO_PLATFORM, "clip_vision"): "server.backends.openvino.models:OpenVinoClipVisionModel",
    (OPENVINO_PLATFORM, "clip_text"): "server.backends.openvino.models:OpenVinoClipTextModel",
    (OPENVINO_PLATFORM, "marian"): "server.backends.openvino.models:OpenVinoMarianModel",
}


def resolved(key: tuple[str, str]) -> type[Backend]:
    """The class registered for `key`, imported on first use."""
    entry = BACKENDS[key]
    return _imported(entry, key) if isinstance(entry, str) else entry


@functools.cache
def _imported(entry: str, key: tuple[str, str]) -> type[Backend]:
    module, _, name = entry.partition(":")
    backend = getattr(importlib.import_module(module), name)
    # A table line names its kind twice (key and class): they must agree, or a kind serves under another.
    if (backend.platform, backend.model_type) != key:
        raise TypeError(f"{entry} serves {(backend.platform, backend.model_type)}, registered as {key}")
    return backend


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
    if (platform, model_type) in BACKENDS:
        return resolved((platform, model_type))
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
