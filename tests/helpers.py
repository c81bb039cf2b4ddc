"""Shared test helpers: free ports, a real server subprocess, test images."""

from __future__ import annotations

import importlib.util
import io
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def load_open_clip_tokenizer():
    """open_clip's tokenizer module, the reference CLIP tokenizer.

    Importing the open_clip package needs torchvision; its tokenizer module alone does not.
    """
    location = Path(next(iter(importlib.util.find_spec("open_clip").submodule_search_locations)))
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", location / "tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(repository: Path, *extra_args: str, ready_timeout: float = 120.0):
    """Starts `python -m server` on a free port; yields (address, process); stops it afterwards."""
    port = free_port()
    log_path = repository.parent / f"server-{port}.log"
    command = [
        sys.executable,
        "-m",
        "server",
        "--model-repository",
        str(repository),
        "--port",
        str(port),
        *extra_args,
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        wait_until_serving(address, process, log_path, ready_timeout)
        yield address, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until_serving(address: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        with grpc.insecure_channel(address) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                continue
    raise RuntimeError(f"server not ready after {timeout}s:\n{log_path.read_text()}")


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
