"""Reads `config.pbtxt` (protobuf text format) into the project's Triton-compatible ModelConfig proto."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from google.protobuf import text_format

from crossmodal.v1 import model_config_pb2 as mc
from server.core.errors import ModelLoadError

log = logging.getLogger(__name__)

ONNX_PLATFORM = "onnxruntime_onnx"
OPENVINO_PLATFORM = "openvino"
PIPELINE_PLATFORM = "crossmodal_pipeline"
# Triton configs may name a backend but no platform
BACKEND_PLATFORMS = {"onnxruntime": ONNX_PLATFORM, "openvino": OPENVINO_PLATFORM}


def parse_model_config(text: str, source: str = "<config>") -> mc.ModelConfig:
    """Parses pbtxt text. Triton fields this server does not use are ignored, with a log line."""
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as strict_error:
        try:
            config = mc.ModelConfig()
            text_format.Parse(text, config, allow_unknown_field=True)
        except text_format.ParseError as error:
            raise ModelLoadError(f"{source}: invalid config.pbtxt: {error}") from error
        log.info("%s: ignoring Triton settings this server does not use (first: %s)", source, strict_error)
    return config


def load_model_config(model_dir: Path, platforms: Collection[str] = (ONNX_PLATFORM,)) -> mc.ModelConfig:
    """Loads and checks `<model_dir>/config.pbtxt`; the model name defaults to the folder name. A model
    must name one of `platforms` (the repository passes those its backend registry knows)."""
    path = model_dir / "config.pbtxt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ModelLoadError(f"{path}: cannot read: {error.strerror}") from error
    config = parse_model_config(text, str(path))
    if not config.name:
        config.name = model_dir.name
    elif config.name != model_dir.name:
        raise ModelLoadError(f"{path}: name '{config.name}' does not match its folder '{model_dir.name}'")
    if not is_pipeline(config) and platform_of(config) not in platforms:
        raise ModelLoadError(
            f"{path}: unsupported platform '{config.platform}' / backend '{config.backend}' "
            f"(supported: {', '.join(sorted(platforms))}, {PIPELINE_PLATFORM})"
        )
    if config.max_batch_size < 0:
        raise ModelLoadError(f"{path}: max_batch_size must not be negative")
    return config


def is_pipeline(config: mc.ModelConfig) -> bool:
    return config.platform == PIPELINE_PLATFORM


def platform_of(config: mc.ModelConfig) -> str:
    """The platform the config names, or the one its backend implies."""
    return config.platform or BACKEND_PLATFORMS.get(config.backend, "")
