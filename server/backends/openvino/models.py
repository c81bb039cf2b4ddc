"""The CLIP towers and the Marian translator on OpenVINO: the ONNX Runtime kind classes, unchanged in
signature, batching, caching and cancellation, with their graphs compiled by OpenVINO instead."""

from __future__ import annotations

from server.backends.base import Backend
from server.backends.clip.text import ClipTextModel
from server.backends.clip.vision import ClipVisionModel
from server.backends.marian.model import MarianModel
from server.backends.onnx.session import SessionFactory
from server.backends.openvino.failures import unrecoverable
from server.backends.openvino.session import OpenVinoLoaded, OpenVinoSessionFactory
from server.backends.source import ModelSource
from server.repository.model_config import OPENVINO_PLATFORM

IR_FILE, ONNX_FILE = "model.xml", "model.onnx"


class OnOpenVino(Backend):
    """Mixed in before a kind class: its sessions come from OpenVINO, and so do its fatal errors."""

    platform = OPENVINO_PLATFORM

    def __init__(self, source: ModelSource, factory: SessionFactory) -> None:
        # The repository hands every backend its ONNX Runtime factory; only its GPU policy carries over.
        super().__init__(source, OpenVinoSessionFactory(strict_gpu=factory.strict_gpu))

    def unrecoverable(self, error: BaseException) -> str | None:
        return unrecoverable(error)


class OneGraphOnOpenVino(OnOpenVino):
    @staticmethod
    def open_session(source: ModelSource, factory: OpenVinoSessionFactory) -> OpenVinoLoaded:
        """default_model_filename, else an IR pair (model.xml + model.bin), else model.onnx."""
        directory = source.directory
        filename = source.spec.default_model_filename
        if not filename:
            filename = IR_FILE if (directory / IR_FILE).is_file() else ONNX_FILE
        return factory.create(directory / filename, source.spec)


class OpenVinoClipVisionModel(OneGraphOnOpenVino, ClipVisionModel):
    pass


class OpenVinoClipTextModel(OneGraphOnOpenVino, ClipTextModel):
    pass


class OpenVinoMarianModel(OnOpenVino, MarianModel):
    pass
