"""The crossmodal.v1.CrossModal service: a thin adapter over the engine, through the shared call runner."""

from __future__ import annotations

import functools

from crossmodal.v1 import crossmodal_pb2 as pb
from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc
from server.core.cancellation import run_here
from server.core.errors import CrossModalError, InvalidInput, NotAllowed
from server.core.types import Input, TextInput
from server.engine import Engine, label_prompts
from server.pipelines.clip import heavy_texts
from server.pipelines.served import version_entry
from server.protocols.common import CallRunner
from server.protocols.grpc_status import grpc_handler, status_code
from server.protocols.grpc_v1 import convert
from server.protocols.grpc_v1.response_size import LABEL_SCORE_BYTES, check_response_size
from server.repository.control import ModelController
from server.retrieval.retrieval import Retrieval

# Sizing a response takes about a third of a microsecond per text character: requests with more
# characters in all are sized on a worker thread, others on the event loop (the hop would cost more).
INLINE_CHECK_CHARS = 512
# Answers with more of these than the limits are built on a worker thread; smaller ones take less time
# than the hop (a packed float: a few nanoseconds; a TextResult or a LabelScore: a few microseconds).
INLINE_RESPONSE_FLOATS = 32768
INLINE_RESPONSE_TEXTS = 32
INLINE_LABEL_SCORES = 64


def large_response(texts: int, floats: int = 0, label_scores: int = 0) -> bool:
    """Whether building an answer of that many parts is worth a hop to a worker thread."""
    return (
        texts > INLINE_RESPONSE_TEXTS or floats > INLINE_RESPONSE_FLOATS or label_scores > INLINE_LABEL_SCORES
    )


def texts(items: list[Input]) -> list[str]:
    return [item.text for item in items if isinstance(item, TextInput)]


class CrossModalService(pb_grpc.CrossModalServicer):
    def __init__(
        self,
        engine: Engine,
        runner: CallRunner,
        controller: ModelController | None = None,
        retrieval: Retrieval | None = None,
    ) -> None:
        self._engine = engine
        self._runner = runner
        self._controller = controller
        self._retrieval = retrieval
        self._send_check = engine.limits.max_message_bytes  # what a response may have, known in advance

    async def _run_checked(self, check, texts: list[str], operation, *args):
        """Runs the engine `operation` as one call, with `check()` first (it refuses responses too large
        to send; it sizes `texts`, on a worker thread when they are long). Both share the call's model
        leases: what the check looks up is held until the call ends."""
        repository, runner = self._engine.repository, self._runner
        checking = runner.offload if heavy_texts(texts, INLINE_CHECK_CHARS) else run_here

        @functools.wraps(operation)  # the call is known by the engine operation it runs
        async def checked(*args):
            with repository.call_scope():
                await checking(check)
                return await operation(*args)

        return await self._runner.call(checked, *args)

    async def _respond(self, convert_result, result, large: bool):
        """The protobuf answer of `result`, built on a worker thread only when it is `large`."""
        return await (self._runner.offload if large else run_here)(convert_result, result)

    def _embedding_dim(self, ref) -> int:
        try:
            return self._engine.pipeline(ref).embedding_dim
        except CrossModalError:
            return 0  # the engine call itself reports why the pipeline cannot serve

    @grpc_handler
    async def Encode(self, request: pb.EncodeRequest, context) -> pb.EncodeResponse:
        items, ref = convert.inputs("items", request.items), convert.model_ref(request.model)

        sent = texts(items)

        def fits() -> None:
            rows = len(items)
            floats = rows * self._embedding_dim(ref)
            check_response_size("Encode", self._send_check, sent, floats, vectors=rows)

        result = await self._run_checked(fits, sent, self._engine.encode, ref, items)
        large = large_response(len(result.texts), floats=result.embeddings.size)
        return await self._respond(convert.encode_response, result, large)

    @grpc_handler
    async def Compare(self, request: pb.CompareRequest, context) -> pb.CompareResponse:
        queries = convert.inputs("queries", request.queries)
        candidates = convert.inputs("candidates", request.candidates)

        sent = texts(queries + candidates)
        scores = 2 * len(queries) * len(candidates)  # similarity and probabilities

        def fits() -> None:
            check_response_size("Compare", self._send_check, sent, floats=scores)

        result = await self._run_checked(
            fits, sent, self._engine.compare, convert.model_ref(request.model), queries, candidates
        )
        large = large_response(len(result.texts), floats=scores)
        return await self._respond(convert.compare_response, result, large)

    @grpc_handler
    async def Classify(self, request: pb.ClassifyRequest, context) -> pb.ClassifyResponse:
        items, labels = convert.inputs("items", request.items), list(request.labels)
        prompts = label_prompts(labels, request.prompt_template)
        sent = texts(items) + prompts

        def fits() -> None:
            kept = min(request.top_k or len(labels), len(labels))
            echoed = sum(len(label.encode("utf-8", "surrogatepass")) for label in labels[:kept])
            scores = len(items) * (kept * LABEL_SCORE_BYTES + echoed)  # each item's scores name labels
            check_response_size("Classify", self._send_check, sent, vectors=len(items), extra_bytes=scores)

        result = await self._run_checked(
            fits,
            sent,
            self._engine.classify,
            convert.model_ref(request.model),
            items,
            labels,
            request.prompt_template,
            request.top_k,
        )
        large = large_response(len(result.labels), label_scores=sum(len(s) for s in result.results))
        return await self._respond(convert.classify_response, result, large)

    @grpc_handler
    async def Translate(self, request: pb.TranslateRequest, context) -> pb.TranslateResponse:
        sources = list(request.texts)
        result = await self._run_checked(
            lambda: check_response_size("Translate", self._send_check, sources, 0),
            sources,
            self._engine.translate,
            convert.model_ref(request.model),
            sources,
            convert.translate_options(request),
        )
        return convert.translate_response(result)

    @grpc_handler
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context
    ) -> pb.RepositoryIndexResponse:
        entries = convert.repository_index(self._engine.repository)
        if request.ready_only:
            entries = [e for e in entries if e.state == "READY"]
        return pb.RepositoryIndexResponse(models=entries)

    @grpc_handler
    async def LoadModel(self, request: pb.LoadModelRequest, context) -> pb.LoadModelResponse:
        statuses = await self._control().load(request.name)
        return pb.LoadModelResponse(models=[convert.version_state(version_entry(s)) for s in statuses])

    @grpc_handler
    async def UnloadModel(self, request: pb.UnloadModelRequest, context) -> pb.UnloadModelResponse:
        await self._control().unload(request.name)
        return pb.UnloadModelResponse()

    @grpc_handler
    async def Index(self, request: pb.IndexRequest, context) -> pb.IndexResponse:
        entries = convert.index_entries(request.items)
        outcome = await self._runner.call(
            self._retrieval_or_refuse().index,
            request.collection,
            entries,
            convert.model_ref(request.model),
            request.skip_existing,
        )
        return convert.index_response(outcome, status_code)

    @grpc_handler
    async def Search(self, request: pb.SearchRequest, context) -> pb.SearchResponse:
        if not request.HasField("query"):
            raise InvalidInput("query: missing; send a text or an image")
        query = convert.inputs("query", [request.query])[0]
        outcome = await self._runner.call(
            self._retrieval_or_refuse().search,
            request.collection,
            query,
            request.top_k,
            request.modality,
            convert.model_ref(request.model),
        )
        return convert.search_response(outcome)

    @grpc_handler
    async def Delete(self, request: pb.DeleteRequest, context) -> pb.DeleteResponse:
        deleted = await self._runner.call(
            self._retrieval_or_refuse().delete, request.collection, list(request.ids), request.drop_collection
        )
        return pb.DeleteResponse(deleted=deleted)

    @grpc_handler
    async def ListCollections(self, request: pb.ListCollectionsRequest, context):
        summaries = await self._runner.call(self._retrieval_or_refuse().collections)
        return convert.collections_response(summaries)

    def _retrieval_or_refuse(self) -> Retrieval:
        if self._retrieval is None:
            raise NotAllowed("this server has no vector store")
        return self._retrieval

    def _control(self) -> ModelController:
        if self._controller is None:
            raise NotAllowed("this server has no model control")
        return self._controller
