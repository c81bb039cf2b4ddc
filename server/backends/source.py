"""Where one model version lives and how it is configured: what the registry builds any backend from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server.batching.settings import DEFAULT_MAX_QUEUE_ITEMS, BatchSettings
from server.core.cache import VersionCache
from server.repository.specs import ModelSpec


@dataclass(frozen=True)
class ModelSource:
    name: str
    version: int
    directory: Path  # the version folder
    spec: ModelSpec
    max_queue_items: int = DEFAULT_MAX_QUEUE_ITEMS  # the queue bound when the config sets none
    cache: VersionCache | None = None  # this load's response cache, when its config turns one on

    def batch_settings(self, default_max_batch_size: int) -> BatchSettings:
        return self.spec.batch_settings(default_max_batch_size, self.max_queue_items)
