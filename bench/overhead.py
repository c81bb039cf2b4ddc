"""p4: what the network layer adds to one call: Compare over loopback gRPC minus the same call in process.

Both sides use the committed demo models and the reference example (the two-dogs picture against
three Chinese texts, so translation runs too). Calls are sequential, so the difference is the gRPC
path itself: (de)serialisation, the event loop, the hop to a worker thread, and loopback TCP. The two
sides alternate in blocks, each block after an untimed call, so slow drifts of the machine hit both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bench.figures import Figure
from bench.measure import latencies, percentile
from bench.serving import close_in_process, serving
from bench.settings import BenchSettings
from tools.local_server import ROOT

DEMO_REPOSITORY = ROOT / "model_repository"
IMAGE = ROOT / "clients" / "python" / "examples" / "data" / "two_dogs_in_snow.jpg"
TEXTS = ("在雪地里有两条狗", "一只猫在桌子上", "夜晚的伦敦")
BLOCK = 20


def measure(
    settings: BenchSettings, say: Callable[[str], None], repository: Path = DEMO_REPOSITORY
) -> Figure:
    from crossmodal import CrossModalClient
    from server.backends.onnx.session import SessionFactory
    from server.core.config import Limits
    from server.core.types import ImageInput, ModelRef, TextInput
    from server.engine import Engine
    from server.repository.repository import ModelRepository

    image = IMAGE.read_bytes()
    loaded = ModelRepository(repository, SessionFactory())
    loaded.load_all()
    engine = Engine(loaded, Limits())
    loop = asyncio.new_event_loop()  # one loop for all in-process calls, as a server has
    queries, candidates = [ImageInput(image)], [TextInput(t) for t in TEXTS]
    say(f"{settings.overhead_repeats} sequential Compare(1 image, 3 texts) each over gRPC and in process")
    try:
        with serving(repository) as address, CrossModalClient(address) as client:
            grpc_s, local_s = alternate(
                lambda: client.compare([image], list(TEXTS)),
                lambda: loop.run_until_complete(engine.compare(ModelRef(), queries, candidates)),
                settings.overhead_repeats,
            )
    finally:
        loop.close()
        close_in_process(engine, loaded)
    grpc_p50, local_p50 = percentile(grpc_s, 50) * 1e3, percentile(local_s, 50) * 1e3
    say(f"p50 over gRPC {grpc_p50:.2f} ms, in process {local_p50:.2f} ms")
    raw = {
        "repository": str(repository),
        "calls_each": len(grpc_s),
        "grpc_ms": _spread(grpc_s),
        "in_process_ms": _spread(local_s),
    }
    return Figure("p4_overhead_ms", grpc_p50 - local_p50, raw)


def alternate(first: Callable, second: Callable, repeats: int) -> tuple[list[float], list[float]]:
    """`repeats` timings of each, taken in alternating blocks of BLOCK calls."""
    a: list[float] = []
    b: list[float] = []
    while len(a) < repeats:
        block = min(BLOCK, repeats - len(a))
        a += latencies(first, block)
        b += latencies(second, block)
    return a, b


def _spread(seconds: list[float]) -> dict[str, float]:
    return {f"p{q}": percentile(seconds, q) * 1e3 for q in (10, 50, 90, 99)}
