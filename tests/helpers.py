"""Shared test helpers: free ports, a real server subprocess, test images."""

from __future__ import annotations

import importlib.util
import io
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from tools import local_server
from tools.local_server import ROOT, free_port

__all__ = ["ROOT", "encoded_image", "free_port", "load_open_clip_tokenizer", "running_server"]


def load_open_clip_tokenizer():
    """open_clip's tokenizer module, the reference CLIP tokenizer.

    Importing the open_clip package needs torchvision; its tokenizer module alone does not.
    """
    location = Path(next(iter(importlib.util.find_spec("open_clip").submodule_search_locations)))
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", location / "tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def running_server(repository: Path, *extra_args: str, ready_timeout: float = 120.0, channel_factory=None):
    """A server over `repository` on a free port, logging to a temporary file; yields (address, process).

    `channel_factory(address)` makes the channel its readiness is checked on (for TLS servers)."""
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"crossmodal-test-server-{port}.log"
    with local_server.running_server(
        repository,
        "127.0.0.1",
        port,
        *extra_args,
        log_path=log_path,
        ready_timeout=ready_timeout,
        channel_factory=channel_factory,
    ) as served:
        yield served


def encoded_image(width: int, height: int, fmt: str = "PNG", mode: str = "RGB", seed: int = 0) -> bytes:
    """A deterministic noisy image with a gradient, encoded in the given format and mode."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    base = np.concatenate(
        [
            np.broadcast_to(x, (height, width, 1)),
            np.broadcast_to(y, (height, width, 1)),
            np.full((height, width, 1), 128.0),
        ],
        axis=2,
    )
    pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@contextmanager
def in_process_server(repository: Path, **settings):
    """A CrossModalServer in this process (on its own event-loop thread), so tests can look inside it;
    yields (address, server)."""
    import asyncio
    import threading

    from server.app import CrossModalServer
    from server.core.config import ServerConfig

    settings.setdefault("metrics_port", 0)
    server = CrossModalServer(ServerConfig(model_repository=repository, port=free_port(), **settings))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        server.loop = loop  # tests run coroutines on it with asyncio.run_coroutine_threadsafe
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(120)
        yield f"127.0.0.1:{port}", server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
