"""What a small call costs beyond its models: at most one hop to a worker thread, none for work cheaper
than the hop; responses built from NumPy buffers read back exactly what the arrays held."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from crossmodal.v1 import crossmodal_pb2 as pb
from server.backends.onnx.session import SessionFactory
from server.core.cache import ResponseCache
from server.core.config import Limits
from server.core.types import CompareResult, EncodeResult, ImageInput, ModelRef, TextInput
from server.engine import Engine
from server.pipelines.clip import INLINE_TEXT_CHARS
from server.protocols.common import CallRunner
from server.protocols.grpc_v1 import convert
from server.protocols.grpc_v1.service import CrossModalService
from server.repository.repository import ModelRepository
from tests.fixtures.server import encoded_image
from tools.local_server import ROOT

DEMO_REPOSITORY = ROOT / "model_repository"
IMAGE = encoded_image(64, 48, "JPEG", seed=3)
CHINESE = ["在雪地里有两条狗", "一只猫在桌子上", "夜晚的伦敦"]


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that counts the work handed to it: each submission is one hop to a worker thread."""

    def __init__(self) -> None:
        super().__init__(max_workers=2, thread_name_prefix="counted")
        self.hops = 0

    def submit(self, fn, /, *args, **kwargs):
        self.hops += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture(scope="module")
def demo_repository():
    repository = ModelRepository(DEMO_REPOSITORY, SessionFactory(), response_cache=ResponseCache(64 << 20))
    repository.load_all()
    yield repository
    repository.close()


@pytest.fixture
def counted(demo_repository):
    executor = CountingExecutor()
    engine = Engine(demo_repository, Limits(), executor=executor)
    yield engine, executor
    engine.close()
    executor.shutdown(wait=True)


def hops_of(executor: CountingExecutor, call) -> int:
    before = executor.hops
    asyncio.run(call())
    return executor.hops - before


def test_an_image_and_short_texts_hop_once_for_the_image(counted):
    engine, executor = counted
    queries, candidates = [ImageInput(IMAGE)], [TextInput(t) for t in CHINESE]
    for _ in range(2):  # the first call fills the response cache; the second is answered from it
        assert hops_of(executor, lambda: engine.compare(ModelRef(), queries, candidates)) == 1


def test_short_texts_alone_do_not_hop(counted):
    engine, executor = counted
    texts = [TextInput(t) for t in CHINESE] + [TextInput("a dog in the snow")]
    assert hops_of(executor, lambda: engine.encode(ModelRef(), texts)) == 0
    assert hops_of(executor, lambda: engine.compare(ModelRef(), texts[:1], texts[1:])) == 0


def test_long_texts_are_prepared_on_a_worker_thread(counted):
    engine, executor = counted
    long_text = "一只猫在桌子上" * (INLINE_TEXT_CHARS // 7 + 1)
    assert hops_of(executor, lambda: engine.encode(ModelRef(), [TextInput(long_text)])) >= 1


def test_a_small_compare_through_the_service_hops_once(demo_repository):
    executor = CountingExecutor()
    engine = Engine(demo_repository, Limits(), executor=executor)
    service = CrossModalService(engine, CallRunner(executor))
    image_item = pb.Item(image=IMAGE)
    request = pb.CompareRequest(queries=[image_item], candidates=[pb.Item(text=t) for t in CHINESE])
    try:
        for _ in range(2):
            before = executor.hops
            response = asyncio.run(service.Compare(request, context=None))
            assert executor.hops - before == 1
            assert (response.rows, response.cols) == (1, 3)
            assert np.isclose(sum(response.probabilities), 1.0, atol=1e-5)
    finally:
        engine.close()
        executor.shutdown(wait=True)


def per_float_encode_response(result: EncodeResult) -> pb.EncodeResponse:
    return pb.EncodeResponse(
        embeddings=[pb.Embedding(values=row.tolist()) for row in result.embeddings],
        model=convert.model_info(result.models),
    )


@pytest.mark.parametrize("shape", [(3, 5), (1, 512), (4, 0)])
def test_embeddings_written_from_buffers_match_per_float_ones(shape):
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal(shape).astype(np.float32)
    if shape[1]:
        embeddings[1 % shape[0]] = np.nan  # an item that failed keeps its NaN row
    result = EncodeResult(embeddings, [], [("clip_vision", 1)])
    packed = convert.encode_response(result)
    assert packed.SerializeToString() == per_float_encode_response(result).SerializeToString()
    assert len(packed.embeddings) == shape[0]
    read = np.array([list(e.values) for e in packed.embeddings], dtype=np.float32).reshape(shape)
    np.testing.assert_array_equal(read, embeddings)


def test_compare_scores_written_from_buffers_read_back_row_major():
    similarity = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    probabilities = np.arange(6, 12, dtype=np.float32).reshape(2, 3) / 100
    response = convert.compare_response(CompareResult(similarity, probabilities, 100.0, [], []))
    assert (response.rows, response.cols) == (2, 3)
    assert list(response.similarity) == similarity.ravel().tolist()
    assert list(response.probabilities) == probabilities.ravel().tolist()
