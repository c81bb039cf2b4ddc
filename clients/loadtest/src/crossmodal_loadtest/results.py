"""The outcome of a run: per stage, per operation, with the configuration and machine it ran on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from crossmodal_loadtest.config import LoadConfig, Stage
from crossmodal_loadtest.stats import LatencySummary, OperationStats


@dataclass(frozen=True)
class StageResult:
    stage: Stage
    operations: list[OperationStats]
    total: OperationStats
    # Open loop only: how late requests went out against their schedule (latency already includes it).
    send_lag: LatencySummary | None = None

    @property
    def name(self) -> str:
        return self.stage.name

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "mode": self.stage.mode,
            "level": self.stage.level,
            "total": self.total.to_dict(),
            "operations": [operation.to_dict() for operation in self.operations],
            "send_lag": asdict(self.send_lag) if self.send_lag else None,
        }


@dataclass(frozen=True)
class LoadReport:
    config: LoadConfig
    started_at: str
    finished_at: str
    machine: dict = field(default_factory=dict)
    stages: list[StageResult] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(stage.total.failed for stage in self.stages)

    def to_dict(self) -> dict:
        config = asdict(self.config)
        security = config.pop("security")
        config.update(
            tls=bool(security and (security.get("tls") or security.get("root_certificates"))),
            token=bool(security and security.get("token")),  # whether one was sent, never the token
            stages=[{"mode": s.mode, "level": s.level, "name": s.name} for s in self.config.stages],
            mix=dict(self.config.mix.weights),
            image_dir=str(self.config.image_dir) if self.config.image_dir else None,
            **self._image_size_fields(),
            latency_measured_from="scheduled send time (rate stages); actual send time (concurrency stages)",
        )
        return {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "config": config,
            "machine": self.machine,
            "stages": [stage.to_dict() for stage in self.stages],
        }

    def _image_size_fields(self) -> dict:
        """The generated photos' size, as `WIDTHxHEIGHT` and in numbers; null when a folder was sent."""
        if self.config.image_dir:
            return {"image_size": None, "image_width": None, "image_height": None}
        width, height = self.config.image_size
        return {"image_size": f"{width}x{height}", "image_width": width, "image_height": height}
