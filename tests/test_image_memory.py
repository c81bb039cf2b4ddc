"""Hostile images cost bounded memory: the server subprocess's peak RSS stays low, calls answer OK or
RESOURCE_EXHAUSTED naming the memory budget, and the server keeps serving."""

from __future__ import annotations

import io
import struct
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import numpy as np
import psutil
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from crossmodal.v1 import crossmodal_pb2 as pb
from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc
from server.repository.model_config import load_model_config
from tests.fixtures.server import ROOT, free_port, running_server

GIB = 1024**3
MIB = 1024**2
# The committed demo models: their vision tower preprocesses to 224x224, as OpenAI's CLIP does.
DEMO_REPOSITORY = ROOT / "model_repository"
IMAGE_EMBEDDING_DIM = load_model_config(DEMO_REPOSITORY / "clip_vision").output[0].dims[-1]
TEXT_EMBEDDING_DIM = load_model_config(DEMO_REPOSITORY / "clip_text").output[0].dims[-1]


def tall_png(height: int) -> bytes:
    """A 1 x height noise PNG (about 70 KB for 20000 rows)."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, 1, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def gif_with_screen(width: int, height: int) -> bytes:
    """A 35-byte GIF whose logical screen is width x height, holding one 1x1 frame."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"


class PeakRss:
    """Samples a process's resident memory every 20 ms; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.Error:
                return

    @contextmanager
    def watching(self):
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


@dataclass(frozen=True)
class ServedDemo:
    """A server subprocess over the demo models, and the port its metrics are scraped on."""

    address: str
    process: subprocess.Popen
    metrics_port: int

    def gauge(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).read()
        for family in text_string_to_metric_families(text.decode()):
            if family.name == name:
                (sample,) = family.samples
                return sample.value
        raise AssertionError(f"no gauge {name} in the metrics")


@pytest.fixture
def server(tmp_path, request):
    flags = getattr(request, "param", ())
    metrics_port = free_port()
    index = ("--index-path", str(tmp_path / "index.db"))
    with running_server(DEMO_REPOSITORY, *index, "--metrics-port", str(metrics_port), *flags) as (
        address,
        process,
    ):
        yield ServedDemo(address, process, metrics_port)


def encode(stub, image: bytes):
    return stub.Encode(pb.EncodeRequest(items=[pb.Item(image=image)]), timeout=60)


def assert_still_serving(stub) -> None:
    reply = stub.Encode(pb.EncodeRequest(items=[pb.Item(text="a dog in the snow")]), timeout=30)
    (embedding,) = reply.embeddings
    assert len(embedding.values) == TEXT_EMBEDDING_DIM
    assert abs(np.linalg.norm(embedding.values) - 1) < 1e-4


def test_a_1x20000_png_is_embedded_in_bounded_memory(server):
    """Resizing the short side to 224 before cropping made this 224 x 4480000 (over 6 GiB)."""
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.CrossModalStub(channel)
        with PeakRss(server.process.pid).watching() as rss:
            reply = encode(stub, tall_png(20000))
        (embedding,) = reply.embeddings
        values = np.asarray(embedding.values)
        assert values.size == IMAGE_EMBEDDING_DIM and np.isfinite(values).all()
        assert abs(np.linalg.norm(values) - 1) < 1e-4
        assert rss.peak < 1 * GIB, f"peak RSS {rss.peak / MIB:.0f} MiB"
        assert_still_serving(stub)


@pytest.mark.parametrize("server", [("--max-decode-memory", str(300 * MIB))], indirect=True)
def test_many_concurrent_gif_screens_stay_within_the_budget(server):
    """48 calls each with a 35-byte GIF of a 6000x6000 screen (about 180 MiB decoded) held over 6 GiB."""
    image = gif_with_screen(6000, 6000)
    assert len(image) < 40
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.CrossModalStub(channel)

        def call(_):
            try:
                encode(stub, image)
                return "OK"
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
                assert "--max-decode-memory" in error.details() and "items[0]" in error.details()
                return "RESOURCE_EXHAUSTED"

        with PeakRss(server.process.pid).watching() as rss, ThreadPoolExecutor(48) as callers:
            outcomes = list(callers.map(call, range(48)))
        # How many are served depends on how fast each decodes while the others wait: at least the first.
        assert outcomes.count("OK") >= 1
        assert server.gauge("crossmodal_decode_memory_used_bytes") == 0  # every call gave its memory back
        assert server.gauge("crossmodal_decode_memory_waiting_calls") == 0
        assert rss.peak < 1 * GIB, f"peak RSS {rss.peak / MIB:.0f} MiB"
        assert_still_serving(stub)


@pytest.mark.parametrize("server", [("--max-decode-memory", str(400 * MIB))], indirect=True)
def test_tall_narrow_images_are_counted_with_their_row_pointers(server):
    """A 1 x 24000000 palette PNG holds 24 MB of pixels but 192 MB of row pointers per Pillow copy (about
    480 MiB to decode in all): counted by its pixels alone (115 MiB) it was admitted into a 400 MiB budget."""
    buffer = io.BytesIO()
    Image.new("P", (1, 24_000_000)).save(buffer, format="PNG")
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.CrossModalStub(channel)
        baseline = psutil.Process(server.process.pid).memory_info().rss
        with PeakRss(server.process.pid).watching() as rss, pytest.raises(grpc.RpcError) as refused:
            encode(stub, buffer.getvalue())
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value.details()
        assert "--max-decode-memory" in refused.value.details() and "1x24000000" in refused.value.details()
        assert rss.peak - baseline < 100 * MIB, f"grew {(rss.peak - baseline) / MIB:.0f} MiB"
        assert_still_serving(stub)


@pytest.mark.parametrize("server", [("--max-decode-memory", str(64 * MIB))], indirect=True)
def test_an_image_larger_than_the_whole_budget_is_refused_at_once(server):
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.CrossModalStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            stub.Encode(
                pb.EncodeRequest(items=[pb.Item(text="a cat"), pb.Item(image=gif_with_screen(6000, 6000))]),
                timeout=30,
            )
        assert time.monotonic() - started < 5
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        details = refused.value.details()
        assert "items[1]" in details and "6000x6000" in details
        assert "--max-decode-memory" in details and "64.0 MiB" in details
        assert_still_serving(stub)
