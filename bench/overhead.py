"""p4: what the network layer adds to one call: Compare over loopback gRPC minus the same call in process.

Both sides use the committed demo models and the reference example (the two-dogs picture against
three Chinese texts, so translation runs too), each with a response cache of the server's default size,
so both answer a repeated call the way users send it (the texts' translations and embeddings cached,
the image embedded each time). Calls are sequential, so the difference is the gRPC path itself:
(de)serialisation, the interceptors and call runner, and loopback TCP. The two sides alternate in
blocks, each block after an untimed call, so slow drifts of the machine hit both. A bare grpc.aio
unary round trip (empty bytes each way) is recorded beside them, back to back and after a pause as long
as the in-process call: the floor any gRPC call of that length pays here.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
ECHO_METHOD = "/bench.Echo/Echo"
SERVER_START_TIMEOUT_S = 30.0


def measure(
    settings: BenchSettings, say: Callable[[str], None], repository: Path = DEMO_REPOSITORY
) -> Figure:
    from crossmodal import CrossModalClient
    from server.backends.onnx.session import SessionFactory
    from server.core.cache import ResponseCache
    from server.core.config import DEFAULT_CACHE_BYTES, Limits
    from server.core.types import ImageInput, ModelRef, TextInput
    from server.engine import Engine
    from server.repository.repository import ModelRepository

    image = IMAGE.read_bytes()
    loaded = ModelRepository(repository, SessionFactory(), response_cache=ResponseCache(DEFAULT_CACHE_BYTES))
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
    bare_s = bare_round_trips(settings.overhead_repeats)
    idle_bare_s = bare_round_trips(settings.overhead_repeats, idle_s=local_p50 / 1e3)
    say(
        f"p50 over gRPC {grpc_p50:.2f} ms, in process {local_p50:.2f} ms; bare grpc.aio round trip "
        f"{percentile(bare_s, 50) * 1e3:.2f} ms back to back, {percentile(idle_bare_s, 50) * 1e3:.2f} ms "
        f"after {local_p50:.1f} ms idle"
    )
    raw = {
        "repository": str(repository),
        "calls_each": len(grpc_s),
        "grpc_ms": _spread(grpc_s),
        "in_process_ms": _spread(local_s),
        "bare_grpc_round_trip_ms": _spread(bare_s),
        "bare_grpc_round_trip_after_idle_ms": _spread(idle_bare_s),
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


def bare_round_trips(repeats: int, idle_s: float = 0.0) -> list[float]:
    """Seconds per sequential unary call (empty bytes each way) to a grpc.aio server doing nothing else,
    from the same kind of blocking client the Compare calls use. With `idle_s`, each call follows that
    long a pause, as a Compare call follows the engine's work: threads that slept take longer to wake
    (on small virtual machines, markedly), which back-to-back calls never see."""
    import grpc

    with _echo_server() as address, grpc.insecure_channel(address) as channel:
        echo = channel.unary_unary(ECHO_METHOD)
        if not idle_s:
            return latencies(lambda: echo(b""), repeats)
        timings = []
        for _ in range(repeats):
            time.sleep(idle_s)
            timings += latencies(lambda: echo(b""), 1, warmup=0)
        return timings


@contextmanager
def _echo_server() -> Iterator[str]:
    """A grpc.aio server on loopback answering ECHO_METHOD with its request, on its own thread's loop."""
    import grpc

    async def echo(request: bytes, context) -> bytes:
        return request

    service, method = ECHO_METHOD.strip("/").split("/")
    handler = grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(echo)}
    )
    started = threading.Event()
    serving_on: dict = {}

    async def serve() -> None:
        server = grpc.aio.server()  # made on the loop that runs it
        server.add_generic_rpc_handlers((handler,))
        serving_on["port"] = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = serving_on["stop"] = asyncio.Event()
        serving_on["loop"] = asyncio.get_running_loop()
        started.set()
        await stop.wait()
        await server.stop(None)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="echo-server", daemon=True)
    thread.start()
    if not started.wait(SERVER_START_TIMEOUT_S):
        raise RuntimeError(f"the bare grpc.aio server did not start in {SERVER_START_TIMEOUT_S:g}s")
    try:
        yield f"127.0.0.1:{serving_on['port']}"
    finally:
        serving_on["loop"].call_soon_threadsafe(serving_on["stop"].set)
        thread.join()


def _spread(seconds: list[float]) -> dict[str, float]:
    return {f"p{q}": percentile(seconds, q) * 1e3 for q in (10, 50, 90, 99)}
