"""Protobuf <-> engine types for crossmodal.v1."""

from __future__ import annotations

from collections.abc import Iterable

from crossmodal.v1 import crossmodal_pb2 as pb
from server.core.errors import InvalidInput
from server.core.types import (
    ClassifyResult,
    CompareResult,
    EncodeResult,
    ImageInput,
    Input,
    ModelRef,
    TextInput,
    TextOutcome,
    TranslateOptions,
    TranslateResult,
)
from server.pipelines.served import ServedEntry, served_entries
from server.protocols.grpc_v1 import packed
from server.repository.repository import ModelRepository
from server.retrieval.retrieval import CollectionSummary, IndexEntry, IndexOutcome, SearchOutcome

# The float fields written from NumPy buffers (see packed.py).
EMBEDDINGS = packed.field_key(pb.EncodeResponse.DESCRIPTOR, "embeddings")
EMBEDDING_VALUES = packed.field_key(pb.Embedding.DESCRIPTOR, "values", packed_floats=True)
SIMILARITY = packed.field_key(pb.CompareResponse.DESCRIPTOR, "similarity", packed_floats=True)
PROBABILITIES = packed.field_key(pb.CompareResponse.DESCRIPTOR, "probabilities", packed_floats=True)


def model_ref(spec: pb.ModelSpec) -> ModelRef:
    return ModelRef(name=spec.name, version=spec.version)


def inputs(field: str, items: Iterable[pb.Item]) -> list[Input]:
    converted: list[Input] = []
    for index, item in enumerate(items):
        kind = item.WhichOneof("kind")
        if kind == "image":
            converted.append(ImageInput(item.image))
        elif kind == "text":
            converted.append(TextInput(item.text))
        else:
            raise InvalidInput(f"{field}[{index}]: neither image nor text is set")
    return converted


def translate_options(request: pb.TranslateRequest) -> TranslateOptions:
    return TranslateOptions(
        num_beams=request.num_beams,
        num_hypotheses=request.num_hypotheses,
        max_length=request.max_length,
        length_penalty=request.length_penalty,
    )


def model_info(models: list[tuple[str, int]]) -> pb.ModelInfo:
    return pb.ModelInfo(models=[pb.ResolvedModel(name=n, version=v) for n, v in models])


def text_result(outcome: TextOutcome) -> pb.TextResult:
    return pb.TextResult(
        text=outcome.text,
        language=outcome.language,
        tokens=list(outcome.tokens),
        translations=[pb.Hypothesis(text=h.text, score=h.score) for h in outcome.translations],
        encoded_text=outcome.encoded_text,
    )


def encode_response(result: EncodeResult) -> pb.EncodeResponse:
    response = pb.EncodeResponse(
        texts=[text_result(t) for t in result.texts], model=model_info(result.models)
    )
    response.MergeFromString(packed.float_rows(EMBEDDINGS, EMBEDDING_VALUES, result.embeddings))
    return response


def compare_response(result: CompareResult) -> pb.CompareResponse:
    rows, cols = result.similarity.shape
    response = pb.CompareResponse(
        rows=rows,
        cols=cols,
        texts=[text_result(t) for t in result.texts],
        model=model_info(result.models),
        logit_scale=result.logit_scale,
    )
    response.MergeFromString(
        packed.floats(SIMILARITY, result.similarity) + packed.floats(PROBABILITIES, result.probabilities)
    )
    return response


def translate_response(result: TranslateResult) -> pb.TranslateResponse:
    return pb.TranslateResponse(
        results=[text_result(t) for t in result.texts], model=model_info(result.models)
    )


def classify_response(result: ClassifyResult) -> pb.ClassifyResponse:
    return pb.ClassifyResponse(
        results=[
            pb.Classification(
                scores=[
                    pb.LabelScore(
                        index=s.index, label=s.label, probability=s.probability, similarity=s.similarity
                    )
                    for s in scores
                ]
            )
            for scores in result.results
        ],
        labels=[text_result(t) for t in result.labels],
        model=model_info(result.models),
    )


def version_state(entry: ServedEntry) -> pb.ModelVersionState:
    return pb.ModelVersionState(
        name=entry.name,
        version=entry.version,
        state=entry.state,
        reason=entry.reason,
        kind=entry.kind,
        provider=entry.provider,
    )


def repository_index(repository: ModelRepository) -> list[pb.ModelVersionState]:
    """Pipelines (READY when they can serve) and every model version."""
    return [version_state(entry) for entry in served_entries(repository)]


def index_entries(items) -> list[IndexEntry]:
    inputs_ = inputs("items", [entry.item for entry in items])
    return [IndexEntry(e.id, item, dict(e.metadata)) for e, item in zip(items, inputs_, strict=True)]


def index_response(outcome: IndexOutcome, status_of) -> pb.IndexResponse:
    return pb.IndexResponse(
        indexed=outcome.indexed,
        skipped=outcome.skipped,
        errors=[
            pb.ItemError(index=position, id=item_id, code=status_of(error).name, message=str(error))
            for position, item_id, error in outcome.errors
        ],
        collection_size=outcome.collection_size,
        model=model_info(outcome.models),
    )


def search_response(outcome: SearchOutcome) -> pb.SearchResponse:
    return pb.SearchResponse(
        hits=[
            pb.SearchHit(id=h.id, score=h.score, modality=h.modality, metadata=h.metadata)
            for h in outcome.hits
        ],
        query_text=text_result(outcome.query_text) if outcome.query_text else None,
        model=model_info(outcome.models),
    )


def collections_response(summaries: list[CollectionSummary]) -> pb.ListCollectionsResponse:
    return pb.ListCollectionsResponse(
        collections=[
            pb.CollectionInfo(
                name=c.name,
                size=c.size,
                pipeline=c.embedder.pipeline,
                version=c.embedder.version,
                dimension=c.embedder.dimension,
            )
            for c in summaries
        ]
    )
