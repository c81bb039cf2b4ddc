"""The crossmodal.v1.CrossModal service: a thin adapter over the engine."""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import Executor

import grpc

from crossmodal.v1 import crossmodal_pb2 as pb
from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc
from server.batching.cancellation import CancelToken, run_with_token
from server.engine import Engine
from server.errors import (
    Cancelled,
    CrossModalError,
    InvalidInput,
    LimitExceeded,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
)
from server.service import convert

log = logging.getLogger(__name__)

STATUS_OF = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    LimitExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Cancelled: grpc.StatusCode.CANCELLED,
}


def status_code(error: CrossModalError) -> grpc.StatusCode:
    for kind, code in STATUS_OF.items():
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def handles_errors(method):
    """Turns engine errors into gRPC statuses, and anything unexpected into INTERNAL with a log entry."""

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except CrossModalError as error:
            await context.abort(status_code(error), str(error))
        except Exception:
            log.exception("%s failed unexpectedly", method.__name__)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"{method.__name__}: internal error (see server log)"
            )

    return wrapper


class CrossModalService(pb_grpc.CrossModalServicer):
    def __init__(self, engine: Engine, executor: Executor) -> None:
        self._engine = engine
        self._executor = executor

    async def _run(self, function, *args):
        # ONNX Runtime, decoding and tokenising never run on the event loop. When the call is cancelled
        # (client gone, deadline passed) the token withdraws its work still waiting in model queues.
        token = CancelToken()
        work = asyncio.get_running_loop().run_in_executor(
            self._executor, run_with_token, token, function, *args
        )
        try:
            return await work
        except asyncio.CancelledError:
            token.cancel()
            raise

    @handles_errors
    async def Encode(self, request: pb.EncodeRequest, context) -> pb.EncodeResponse:
        items = convert.inputs("items", request.items)
        result = await self._run(self._engine.encode, convert.model_ref(request.model), items)
        return convert.encode_response(result)

    @handles_errors
    async def Compare(self, request: pb.CompareRequest, context) -> pb.CompareResponse:
        queries = convert.inputs("queries", request.queries)
        candidates = convert.inputs("candidates", request.candidates)
        result = await self._run(self._engine.compare, convert.model_ref(request.model), queries, candidates)
        return convert.compare_response(result)

    @handles_errors
    async def Classify(self, request: pb.ClassifyRequest, context) -> pb.ClassifyResponse:
        items = convert.inputs("items", request.items)
        result = await self._run(
            self._engine.classify,
            convert.model_ref(request.model),
            items,
            list(request.labels),
            request.prompt_template,
            request.top_k,
        )
        return convert.classify_response(result)

    @handles_errors
    async def Translate(self, request: pb.TranslateRequest, context) -> pb.TranslateResponse:
        result = await self._run(
            self._engine.translate,
            convert.model_ref(request.model),
            list(request.texts),
            convert.translate_options(request),
        )
        return convert.translate_response(result)
