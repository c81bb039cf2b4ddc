"""The loaded model repository: which models and pipelines exist, which versions are ready, and why not."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from crossmodal.v1 import model_config_pb2 as mc
from server.errors import ModelLoadError, ModelNotFound, ModelNotReady
from server.models.onnx_model import ModelSource
from server.models.served import ServedModel
from server.repository.model_config import is_pipeline, load_model_config
from server.repository.versions import discover_versions, select_versions
from server.runtime.registry import build_model
from server.runtime.session import SessionFactory

log = logging.getLogger(__name__)


class State(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass
class VersionStatus:
    name: str
    version: int  # 0 when the model failed before any version could be read
    state: State
    reason: str = ""
    model: ServedModel | None = None


class ModelRepository:
    def __init__(self, root: Path, factory: SessionFactory) -> None:
        self.root = Path(root)
        self._factory = factory
        self._lock = threading.Lock()
        self._versions: dict[str, dict[int, VersionStatus]] = {}
        self._pipelines: dict[str, mc.ModelConfig] = {}

    def load_all(self) -> None:
        """Loads every model folder (one with a config.pbtxt); failures are recorded, never fatal."""
        for model_dir in sorted(p for p in self.root.iterdir() if (p / "config.pbtxt").is_file()):
            self.load_model(model_dir)

    def load_model(self, model_dir: Path) -> None:
        name = model_dir.name
        try:
            config = load_model_config(model_dir)
            if is_pipeline(config):
                with self._lock:
                    self._pipelines[name] = config
                log.info(
                    "pipeline %s: %s", name, dict((k, v.string_value) for k, v in config.parameters.items())
                )
                return
            versions = select_versions(discover_versions(model_dir), config.version_policy, name)
            if not versions:
                raise ModelLoadError(f"model '{name}': no version folders (positive integers) in {model_dir}")
        except ModelLoadError as error:
            log.error("model %s failed to load: %s", name, error)
            self._set(VersionStatus(name, 0, State.UNAVAILABLE, str(error)))
            return
        for version in versions:
            self._load_version(ModelSource(name, version, model_dir / str(version), config))

    def _load_version(self, source: ModelSource) -> None:
        self._set(VersionStatus(source.name, source.version, State.LOADING))
        try:
            model = build_model(source, self._factory)
        except ModelLoadError as error:
            log.error("model %s version %d failed to load: %s", source.name, source.version, error)
            self._set(VersionStatus(source.name, source.version, State.UNAVAILABLE, str(error)))
            return
        self._set(VersionStatus(source.name, source.version, State.READY, model=model))
        log.info(
            "model %s version %d: READY on %s (%s)",
            source.name,
            source.version,
            model.provider,
            model.model_type,
        )

    def _set(self, status: VersionStatus) -> None:
        with self._lock:
            versions = self._versions.setdefault(status.name, {})
            if status.version != 0:
                versions.pop(0, None)  # a model-level failure is superseded by any real version
            versions[status.version] = status

    def pipeline_config(self, name: str) -> mc.ModelConfig:
        with self._lock:
            config = self._pipelines.get(name)
            is_model = name in self._versions
        if config is None:
            hint = "; it is a model, not a pipeline" if is_model else ""
            raise ModelNotFound(f"no pipeline named '{name}'{hint} (pipelines: {sorted(self._pipelines)})")
        return config

    def is_pipeline(self, name: str) -> bool:
        with self._lock:
            return name in self._pipelines

    def ready_versions(self, name: str) -> list[int]:
        with self._lock:
            if name not in self._versions:
                raise ModelNotFound(f"no model named '{name}' in the repository")
            return sorted(v for v, s in self._versions[name].items() if s.state is State.READY)

    def model(self, name: str, version: int) -> ServedModel:
        """A ready version; version 0 means the newest ready one."""
        with self._lock:
            versions = self._versions.get(name)
            if versions is None:
                raise ModelNotFound(f"no model named '{name}' in the repository")
            if version == 0:
                ready = [s for v, s in sorted(versions.items()) if s.state is State.READY]
                if not ready:
                    reasons = "; ".join(s.reason for s in versions.values() if s.reason) or "still loading"
                    raise ModelNotReady(f"model '{name}' has no ready version ({reasons})")
                return ready[-1].model
            status = versions.get(version)
        if status is None:
            raise ModelNotFound(f"model '{name}' has no version {version} (versions: {sorted(versions)})")
        if status.state is not State.READY:
            raise ModelNotReady(f"model '{name}' version {version} is {status.state.value}: {status.reason}")
        return status.model

    def index(self) -> list[VersionStatus]:
        with self._lock:
            return [s for name in sorted(self._versions) for _, s in sorted(self._versions[name].items())]

    def close(self) -> None:
        """Stops every loaded version (their queued work finishes first)."""
        for status in self.index():
            if status.model is not None:
                status.model.close()
