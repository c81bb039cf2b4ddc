"""Server configuration: frozen dataclasses validated on construction. CLI flags are parsed in __main__."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-request limits; exceeding one answers RESOURCE_EXHAUSTED naming the item."""

    max_items: int = 1024  # items (or queries + candidates, or labels) in one request
    max_image_bytes: int = 20 * MIB
    max_image_pixels: int = 40_000_000  # width x height, checked before decoding (decompression bombs)
    max_text_chars: int = 8192
    max_message_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        for name in (
            "max_items",
            "max_image_bytes",
            "max_image_pixels",
            "max_text_chars",
            "max_message_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class ServerConfig:
    model_repository: Path
    host: str = "127.0.0.1"
    port: int = 8001
    default_pipeline: str = "clip"
    strict_gpu: bool = False  # refuse to load a KIND_GPU model when CUDA is unavailable, instead of using CPU
    # Threads that run the calls off the event loop: they decode, tokenise and translate, then wait while
    # model batchers run; a call waiting for its batch holds one, so there are many.
    workers: int = 64
    grace_seconds: float = 10.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not Path(self.model_repository).is_dir():
            raise ValueError(f"model repository {self.model_repository} is not a directory")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.grace_seconds < 0:
            raise ValueError(f"grace period must not be negative, got {self.grace_seconds}")
        if not self.default_pipeline:
            raise ValueError("default pipeline name must not be empty")
