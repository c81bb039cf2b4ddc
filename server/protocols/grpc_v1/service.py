"""The crossmodal.v1.CrossModal service: a thin adapter over the engine."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import Executor

import grpc

from crossmodal.v1 import crossmodal_pb2 as pb
from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc
from server.core.cancellation import CancelToken, calls_on
from server.core.errors import (
    Cancelled,
    CrossModalError,
    InvalidInput,
    LimitExceeded,
    ModelNotFound,
    ModelNotReady,
    NotAllowed,
    Overloaded,
    Unavailable,
)
from server.core.types import Input, TextInput
from server.engine import Engine, label_prompts
from server.metrics import ServerMetrics
from server.protocols.grpc_v1 import convert
from server.protocols.grpc_v1.response_size import LABEL_SCORE_BYTES, check_response_size
from server.repository.control import ModelController
from server.retrieval.retrieval import Retrieval

log = logging.getLogger(__name__)

STATUS_OF = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Cancelled: grpc.StatusCode.CANCELLED,
    NotAllowed: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_code(error: CrossModalError) -> grpc.StatusCode:
    for kind, code in STATUS_OF.items():
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def handles_errors(method):
    """Turns engine errors into gRPC statuses (anything unexpected: INTERNAL, logged) and records the
    call in the metrics: count by status code, latency, calls in flight. The call is recorded before its
    answer leaves, so a client that reads the metrics after its answer always finds its call there."""
    rpc = method.__name__

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        started = time.perf_counter()
        metrics = self._metrics

        def record(code: grpc.StatusCode) -> None:
            if metrics:
                metrics.in_flight.labels(rpc).dec()
                metrics.requests.labels(rpc, code.name).inc()
                metrics.request_seconds.labels(rpc).observe(time.perf_counter() - started)

        if metrics:
            metrics.in_flight.labels(rpc).inc()
        try:
            response = await method(self, request, context)
        except CrossModalError as error:
            code, details = status_code(error), str(error)
        except asyncio.CancelledError:
            record(grpc.StatusCode.CANCELLED)
            raise
        except Exception:
            log.exception("%s failed unexpectedly", rpc)
            code, details = grpc.StatusCode.INTERNAL, f"{rpc}: internal error (see server log)"
        else:
            record(grpc.StatusCode.OK)
            return response
        record(code)
        await context.abort(code, details)

    return wrapper


async def run_in_worker(executor: Executor, function, *args):
    """Runs function(*args) on a worker thread: ONNX Runtime, decoding and tokenising never run on the event
    loop. When the call is cancelled (client gone, deadline passed, server stopping) its token withdraws
    its work still waiting in model queues and stops its running stages at their next check. The call is
    registered on the executor while its thread runs it, so that a stopping server can cut it off."""
    token = CancelToken()
    what = getattr(function, "__qualname__", repr(function))
    work = asyncio.get_running_loop().run_in_executor(
        executor, calls_on(executor).run, token, what, function, *args
    )
    try:
        return await work
    except asyncio.CancelledError:
        token.cancel()
        raise


def texts(items: list[Input]) -> list[str]:
    return [item.text for item in items if isinstance(item, TextInput)]


class CrossModalService(pb_grpc.CrossModalServicer):
    def __init__(
        self,
        engine: Engine,
        executor: Executor,
        controller: ModelController | None = None,
        metrics: ServerMetrics | None = None,
        retrieval: Retrieval | None = None,
    ) -> None:
        self._engine = engine
        self._executor = executor
        self._controller = controller
        self._metrics = metrics
        self._retrieval = retrieval
        self._send_check = engine.limits.max_message_bytes  # what a response may have, known in advance

    async def _run(self, function, *args):
        return await run_in_worker(self._executor, function, *args)

    async def _run_checked(self, check, function, *args):
        """Like _run, with `check()` first on the worker thread (it refuses responses too large to send)."""

        @functools.wraps(function)  # the call is known by the function it runs
        def checked():
            check()
            return function(*args)

        return await self._run(checked)

    def _embedding_dim(self, ref) -> int:
        try:
            return self._engine.pipeline(ref).text.embedding_dim
        except CrossModalError:
            return 0  # the engine call itself reports why the pipeline cannot serve

    @handles_errors
    async def Encode(self, request: pb.EncodeRequest, context) -> pb.EncodeResponse:
        items, ref = convert.inputs("items", request.items), convert.model_ref(request.model)

        def fits() -> None:
            rows = len(items)
            floats = rows * self._embedding_dim(ref)
            check_response_size("Encode", self._send_check, texts(items), floats, vectors=rows)

        result = await self._run_checked(fits, self._engine.encode, ref, items)
        return convert.encode_response(result)

    @handles_errors
    async def Compare(self, request: pb.CompareRequest, context) -> pb.CompareResponse:
        queries = convert.inputs("queries", request.queries)
        candidates = convert.inputs("candidates", request.candidates)

        def fits() -> None:
            scores = 2 * len(queries) * len(candidates)  # similarity and probabilities
            check_response_size("Compare", self._send_check, texts(queries + candidates), floats=scores)

        result = await self._run_checked(
            fits, self._engine.compare, convert.model_ref(request.model), queries, candidates
        )
        return convert.compare_response(result)

    @handles_errors
    async def Classify(self, request: pb.ClassifyRequest, context) -> pb.ClassifyResponse:
        items, labels = convert.inputs("items", request.items), list(request.labels)
        template = request.prompt_template

        def fits() -> None:
            prompts = label_prompts(labels, template)
            kept = min(request.top_k or len(labels), len(labels))
            echoed = sum(len(label.encode("utf-8", "surrogatepass")) for label in labels[:kept])
            scores = len(items) * (kept * LABEL_SCORE_BYTES + echoed)  # each item's scores name labels
            check_response_size(
                "Classify", self._send_check, texts(items) + prompts, vectors=len(items), extra_bytes=scores
            )

        result = await self._run_checked(
            fits,
            self._engine.classify,
            convert.model_ref(request.model),
            items,
            labels,
            template,
            request.top_k,
        )
        return convert.classify_response(result)

    @handles_errors
    async def Translate(self, request: pb.TranslateRequest, context) -> pb.TranslateResponse:
        sources = list(request.texts)
        result = await self._run_checked(
            lambda: check_response_size("Translate", self._send_check, sources, 0),
            self._engine.translate,
            convert.model_ref(request.model),
            sources,
            convert.translate_options(request),
        )
        return convert.translate_response(result)

    @handles_errors
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context
    ) -> pb.RepositoryIndexResponse:
        entries = convert.repository_index(self._engine.repository)
        if request.ready_only:
            entries = [e for e in entries if e.state == "READY"]
        return pb.RepositoryIndexResponse(models=entries)

    @handles_errors
    async def LoadModel(self, request: pb.LoadModelRequest, context) -> pb.LoadModelResponse:
        statuses = await self._control().load(request.name)
        return pb.LoadModelResponse(models=[convert.version_state(s) for s in statuses])

    @handles_errors
    async def UnloadModel(self, request: pb.UnloadModelRequest, context) -> pb.UnloadModelResponse:
        await self._control().unload(request.name)
        return pb.UnloadModelResponse()

    @handles_errors
    async def Index(self, request: pb.IndexRequest, context) -> pb.IndexResponse:
        entries = convert.index_entries(request.items)
        outcome = await self._run(
            self._retrieval_or_refuse().index,
            request.collection,
            entries,
            convert.model_ref(request.model),
            request.skip_existing,
        )
        return convert.index_response(outcome, status_code)

    @handles_errors
    async def Search(self, request: pb.SearchRequest, context) -> pb.SearchResponse:
        if not request.HasField("query"):
            raise InvalidInput("query: missing; send a text or an image")
        query = convert.inputs("query", [request.query])[0]
        outcome = await self._run(
            self._retrieval_or_refuse().search,
            request.collection,
            query,
            request.top_k,
            request.modality,
            convert.model_ref(request.model),
        )
        return convert.search_response(outcome)

    @handles_errors
    async def Delete(self, request: pb.DeleteRequest, context) -> pb.DeleteResponse:
        deleted = await self._run(
            self._retrieval_or_refuse().delete, request.collection, list(request.ids), request.drop_collection
        )
        return pb.DeleteResponse(deleted=deleted)

    @handles_errors
    async def ListCollections(self, request: pb.ListCollectionsRequest, context):
        summaries = await self._run(self._retrieval_or_refuse().collections)
        return convert.collections_response(summaries)

    def _retrieval_or_refuse(self) -> Retrieval:
        if self._retrieval is None:
            raise NotAllowed("this server has no vector store")
        return self._retrieval

    def _control(self) -> ModelController:
        if self._controller is None:
            raise NotAllowed("this server has no model control")
        return self._controller
