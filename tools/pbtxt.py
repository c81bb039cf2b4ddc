"""Writes config.pbtxt files for the model repository from the project's ModelConfig proto."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from crossmodal.v1 import model_config_pb2 as mc


def tensor(name: str, data_type: int, dims: list[int], cls):
    return cls(name=name, data_type=data_type, dims=dims)


def write_config(model_dir: Path, config: mc.ModelConfig) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "config.pbtxt"
    path.write_text(text_format.MessageToString(config), encoding="utf-8")
    return path


def instance_group(kind: str) -> mc.ModelInstanceGroup:
    if kind == "gpu":
        return mc.ModelInstanceGroup(count=1, kind=mc.ModelInstanceGroup.KIND_GPU, gpus=[0])
    return mc.ModelInstanceGroup(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)


def dynamic_batching(max_queue_delay_us: int = 0) -> mc.ModelDynamicBatching:
    """Calls join batches; with no delay a run takes whatever has queued while the previous one ran."""
    return mc.ModelDynamicBatching(max_queue_delay_microseconds=max_queue_delay_us)
