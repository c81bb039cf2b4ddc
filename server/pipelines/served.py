"""What the repository serves, as every protocol lists it: each pipeline (READY when it can serve) and each
model version, with its state and reason."""

from __future__ import annotations

from dataclasses import dataclass

from server.pipelines.clip import unready_reason
from server.repository.repository import ModelRepository, State, VersionStatus

PIPELINE_KIND = "pipeline"


@dataclass(frozen=True)
class ServedEntry:
    name: str
    version: int  # 0 for a pipeline, or for a model that failed before any version was read
    state: str  # READY | LOADING | UNLOADING | UNAVAILABLE
    reason: str
    kind: str  # the model_type, or "pipeline"
    provider: str  # what runs a ready version ("" otherwise)


def version_entry(status: VersionStatus) -> ServedEntry:
    ready = status.model is not None and status.state is State.READY
    provider = status.model.provider if ready else ""
    return ServedEntry(status.name, status.version, status.state.value, status.reason, status.kind, provider)


def served_entries(repository: ModelRepository) -> list[ServedEntry]:
    """Pipelines first, then every model version."""
    pipelines = []
    for name in repository.pipelines():
        reason = unready_reason(repository, name)
        ready = not reason
        state = State.READY if ready else State.UNAVAILABLE
        pipelines.append(ServedEntry(name, 0, state.value, reason, PIPELINE_KIND, ""))
    return pipelines + [version_entry(s) for s in repository.index()]
