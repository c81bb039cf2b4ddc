"""What a load run does: its stages and workload, as frozen dataclasses validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

from crossmodal import Security
from crossmodal_loadtest.image_size import check_image_size
from crossmodal_loadtest.mix import DEFAULT_MIX, OperationMix

CONCURRENCY = "concurrency"
RATE = "rate"
LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Stage:
    """One load level: `concurrency` keeps `level` requests in flight (closed loop); `rate` sends
    `level` requests per second on a Poisson schedule whatever the server does (open loop)."""

    mode: str
    level: float

    def __post_init__(self) -> None:
        if self.mode not in (CONCURRENCY, RATE):
            raise ValueError(f"stage mode must be {CONCURRENCY!r} or {RATE!r}, not {self.mode!r}")
        if self.level <= 0:
            raise ValueError(f"{self.mode} must be positive, not {self.level}")
        if self.mode == CONCURRENCY and self.level != int(self.level):
            raise ValueError(f"concurrency must be a whole number, not {self.level}")

    @property
    def name(self) -> str:
        return f"c={int(self.level)}" if self.mode == CONCURRENCY else f"r={self.level:g}/s"


@dataclass(frozen=True)
class LoadConfig:
    """A whole run. Each stage is bounded by `duration` seconds or by `requests` measured requests
    (exactly one of the two), after a warm-up of its own whose requests are not counted."""

    stages: tuple[Stage, ...] = (Stage(CONCURRENCY, 1), Stage(CONCURRENCY, 4))
    target: str = "127.0.0.1:8001"
    model: str = ""
    version: int = 0
    timeout: float = 30.0
    mix: OperationMix = DEFAULT_MIX
    languages: tuple[str, ...] = LANGUAGES
    batch_items: int = 1
    candidates: int = 3
    # (width, height) of the generated images; a single number means a square.
    image_size: tuple[int, int] = (224, 224)
    image_dir: Path | None = None
    duration: float | None = 10.0
    requests: int | None = None
    warmup_seconds: float = 1.0
    warmup_requests: int = 0
    seed: int = 0
    connect_timeout: float = 10.0
    security: Security | None = None  # TLS / bearer token; never written into reports
    # Free-form labels copied into the report (e.g. the server build or hardware under test).
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a run needs at least one stage")
        if (self.duration is None) == (self.requests is None):
            raise ValueError("bound each stage by exactly one of duration or requests")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be positive, not {self.duration}")
        if self.requests is not None and self.requests <= 0:
            raise ValueError(f"requests must be positive, not {self.requests}")
        if self.warmup_seconds < 0 or self.warmup_requests < 0:
            raise ValueError("warm-up seconds and requests must not be negative")
        unknown = sorted(set(self.languages) - set(LANGUAGES))
        if not self.languages or unknown:
            raise ValueError(
                f"languages must be a non-empty subset of {list(LANGUAGES)}, got {self.languages}"
            )
        for name in ("batch_items", "candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        size = (
            (self.image_size, self.image_size) if isinstance(self.image_size, Integral) else self.image_size
        )
        object.__setattr__(self, "image_size", check_image_size(*size))
        if self.seed < 0:
            raise ValueError(f"seed must not be negative, not {self.seed}")
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.image_dir is not None and not Path(self.image_dir).is_dir():
            raise ValueError(f"image folder {self.image_dir} does not exist")
