"""What the repository needs of every loaded model version, whatever its backend."""

from __future__ import annotations

from typing import Protocol

from server.batching.batcher import DynamicBatcher


class ServedModel(Protocol):
    name: str
    version: int
    model_type: str
    batcher: DynamicBatcher

    @property
    def provider(self) -> str:
        """What runs it, e.g. "CPU" or "CUDA:0"."""

    def warmup(self) -> None:
        """Runs a small request so that the first real one is not slow; raises if the model cannot run."""

    def close(self) -> None:
        """Finishes queued work and stops the model's worker threads; the version serves no more."""
