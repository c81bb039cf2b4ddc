"""Server configuration: frozen dataclasses validated on construction. CLI flags are parsed in __main__."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from server.batching.settings import DEFAULT_MAX_QUEUE_ITEMS

MIB = 1024 * 1024
# Decoded images in flight, all calls together: a 40-megapixel image (the pixel limit) estimates 150 MiB
# (RGB JPEG) to 460 MiB (16-bit PNG), so two to six such fit, or about twenty 12-megapixel photos; the
# models and the server take about 0.5 GiB more, so a 2 GiB machine holds it.
DEFAULT_DECODE_MEMORY = 1024 * MIB
DEFAULT_CACHE_BYTES = 256 * MIB  # about a million text embeddings of 512 floats, or far more translations


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


class ModelControl(StrEnum):
    NONE = "none"  # load the whole repository at start; never change it
    POLL = "poll"  # also rescan it every poll period: new, changed and removed models and versions
    EXPLICIT = "explicit"  # load what --load-model names; LoadModel/UnloadModel RPCs change it


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # when set, clients must present a certificate signed by it (mTLS)

    def __post_init__(self) -> None:
        for path in (self.cert, self.key, self.client_ca):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TLS file {path} does not exist")


@dataclass(frozen=True)
class ServerConfig:
    model_repository: Path
    host: str = "127.0.0.1"
    port: int = 8001
    default_pipeline: str = "clip"
    strict_gpu: bool = False  # refuse to load a KIND_GPU model when CUDA is unavailable, instead of using CPU
    # Threads of the calls' CPU stages (image decoding, jieba, tokenising, scoring, large responses). A
    # call waiting for its batch holds none (it awaits on the event loop), so they bound CPU work at
    # once, not how many calls can wait; the model batchers run ONNX Runtime on their own threads.
    workers: int = 64
    # Calls the server holds at once (running, or waiting for a worker or a batch); more get
    # RESOURCE_EXHAUSTED at once instead of piling up in memory.
    max_concurrent_calls: int = 512
    grace_seconds: float = 10.0
    limits: Limits = field(default_factory=Limits)
    # Bytes that decoding images (and request bodies) may hold at once, server-wide; a decode beyond it
    # waits (at most decode_wait_seconds, at most max_decode_waiting of them) or gets RESOURCE_EXHAUSTED.
    max_decode_memory: int = DEFAULT_DECODE_MEMORY
    max_decode_waiting: int = 256
    decode_wait_seconds: float = 30.0
    max_queue_items: int = DEFAULT_MAX_QUEUE_ITEMS  # per model version, when its config sets no queue size
    cache_bytes: int = DEFAULT_CACHE_BYTES  # the response caches of all models together; 0: off
    model_control: ModelControl = ModelControl.NONE
    poll_seconds: float = 15.0
    load_models: tuple[str, ...] = ()  # explicit mode: loaded at start ("*" = all)
    metrics_port: int = 8002  # 0 = no metrics endpoint
    tls: TlsFiles | None = None
    auth_token: str | None = None  # clients must send "authorization: Bearer <token>"
    index_path: Path = Path("crossmodal_index.db")  # Milvus Lite file of the retrieval collections
    milvus_uri: str | None = None  # a Milvus server instead (e.g. http://milvus:19530); wins over index_path
    milvus_token: str = ""

    @property
    def vector_store_uri(self) -> str:
        return self.milvus_uri or str(Path(self.index_path).resolve())

    def __post_init__(self) -> None:
        if not Path(self.model_repository).is_dir():
            raise ValueError(f"model repository {self.model_repository} is not a directory")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.max_concurrent_calls < 1:
            raise ValueError(f"max concurrent calls must be at least 1, got {self.max_concurrent_calls}")
        if self.max_decode_memory <= 0:
            raise ValueError(f"max decode memory must be positive, got {self.max_decode_memory}")
        if self.max_decode_waiting < 0 or self.decode_wait_seconds < 0:
            raise ValueError("the wait for decode memory must not be negative")
        if self.grace_seconds < 0:
            raise ValueError(f"grace period must not be negative, got {self.grace_seconds}")
        if not self.default_pipeline:
            raise ValueError("default pipeline name must not be empty")
        if self.cache_bytes < 0:
            raise ValueError(f"cache bytes must be 0 (off) or more, got {self.cache_bytes}")
        if self.max_queue_items < 1:
            raise ValueError(f"max queue items must be at least 1, got {self.max_queue_items}")
        if self.poll_seconds <= 0:
            raise ValueError(f"repository poll period must be positive, got {self.poll_seconds}")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics port must be in 0..65535, got {self.metrics_port}")
        if self.load_models and self.model_control is not ModelControl.EXPLICIT:
            raise ValueError("--load-model only applies with --model-control-mode explicit")
        if self.auth_token is not None and not self.auth_token.strip():
            raise ValueError("the auth token is empty")
