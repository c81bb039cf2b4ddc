"""Readable reports of responses, in the spirit of the reference example's log.

Similarity is shown as cosine x 100 %, probabilities as the softmax over candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import json_format

from crossmodal.v1 import crossmodal_pb2 as pb

SHOWN_VALUES = 6


def proto_json(message) -> str:
    """A response as JSON with the proto field names (what --json prints)."""
    return json_format.MessageToJson(message, preserving_proto_field_name=True, ensure_ascii=False)


def vector(values: Sequence[float]) -> str:
    """A vector abbreviated to its first and last values."""
    if len(values) <= SHOWN_VALUES:
        return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"
    half = SHOWN_VALUES // 2
    head = ", ".join(f"{v:.4f}" for v in values[:half])
    tail = ", ".join(f"{v:.4f}" for v in values[-half:])
    return f"[{head}, ..., {tail}] ({len(values)} values)"


def models(info: pb.ModelInfo) -> str:
    return ", ".join(f"{m.name} v{m.version}" for m in info.models)


def text_details(result: pb.TextResult, indent: str = "    ") -> list[str]:
    lines = [f"{indent}language: {result.language}"]
    if result.tokens:
        lines.append(f"{indent}tokens: [{', '.join(result.tokens)}]")
    if result.translations:
        lines.append(f"{indent}translations:")
        lines += [
            f"{indent}  {i}. {h.text}  (score {h.score:.4f})" for i, h in enumerate(result.translations, 1)
        ]
    if result.encoded_text != result.text:
        lines.append(f"{indent}encoded as: {result.encoded_text}")
    return lines


def _described(descriptions: Sequence[str], texts: Sequence[pb.TextResult]):
    """Pairs each item description with its TextResult (None for images); texts come in item order."""
    remaining = iter(texts)
    return [(d, next(remaining) if d.startswith("text") else None) for d in descriptions]


def encode_report(response: pb.EncodeResponse, descriptions: Sequence[str]) -> str:
    dim = len(response.embeddings[0].values) if response.embeddings else 0
    lines = [f"model: {models(response.model)}", f"vector dimension: {dim}"]
    for index, ((description, text), embedding) in enumerate(
        zip(_described(descriptions, response.texts), response.embeddings, strict=True)
    ):
        lines.append(f"[{index}] {description}")
        if text is not None:
            lines += text_details(text)
        lines.append(f"    embedding: {vector(embedding.values)}")
    return "\n".join(lines)


def compare_report(
    response: pb.CompareResponse, query_descriptions: Sequence[str], candidate_descriptions: Sequence[str]
) -> str:
    described = _described([*query_descriptions, *candidate_descriptions], response.texts)
    queries, candidates = described[: response.rows], described[response.rows :]
    lines = [f"model: {models(response.model)}", f"{response.rows} queries x {response.cols} candidates"]
    for description, text in described:
        if text is not None and text.language != "en":
            lines.append(f"{description}")
            lines += text_details(text)
    for row, (query, _) in enumerate(queries):
        lines.append(f"query [{row}] {query}")
        probabilities = []
        for col, (candidate, _) in enumerate(candidates):
            similarity = response.similarity[row * response.cols + col]
            probability = response.probabilities[row * response.cols + col]
            probabilities.append(probability)
            lines.append(
                f"  vs [{col}] {candidate}: similarity {similarity * 100:.2f}%  probability {probability:.4f}"
            )
        lines.append("  probabilities: [" + ", ".join(f"{p:.4f}" for p in probabilities) + "]")
    return "\n".join(lines)


def translate_report(response: pb.TranslateResponse) -> str:
    lines = [f"model: {models(response.model)}"]
    for index, result in enumerate(response.results):
        lines.append(f"[{index}] {result.text}")
        lines += text_details(result)
    return "\n".join(lines)


def classify_report(response: pb.ClassifyResponse, descriptions: Sequence[str]) -> str:
    lines = [f"model: {models(response.model)}"]
    for label in response.labels:
        if label.language != "en":
            lines.append(f'label "{label.text}"')
            lines += text_details(label)
    for index, (description, result) in enumerate(zip(descriptions, response.results, strict=True)):
        lines.append(f"[{index}] {description}")
        for rank, score in enumerate(result.scores, 1):
            lines.append(
                f"    {rank}. {score.label}: probability {score.probability:.4f}  "
                f"similarity {score.similarity * 100:.2f}%"
            )
    return "\n".join(lines)


# Longer ids are cut in the table (the JSON output has them whole), so one odd path keeps it readable.
MAX_ID_WIDTH = 60
SHOWN_FAILURES = 10


def _cell(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def search_report(response: pb.SearchResponse, query_description: str) -> str:
    """Hits best first: rank, cosine score, modality, id and metadata; for a text query what the server
    made of it (language, jieba words, the translation the CLIP text tower saw)."""
    lines = [f"model: {models(response.model)}", f"query: {query_description}"]
    if response.HasField("query_text"):
        lines += text_details(response.query_text)
    if not response.hits:
        return "\n".join([*lines, "no hits (is the collection empty, or the modality filter too strict?)"])
    width = min(MAX_ID_WIDTH, max(len("id"), *(len(hit.id) for hit in response.hits)))
    lines.append(f"{'rank':>4}  {'score':>7}  {'modality':8}  {'id':{width}}  metadata")
    for rank, hit in enumerate(response.hits, 1):
        metadata = ", ".join(f"{key}={value}" for key, value in sorted(hit.metadata.items()))
        lines.append(
            f"{rank:>4}  {hit.score:7.4f}  {hit.modality:8}  {_cell(hit.id, width):{width}}  {metadata}"
        )
    return "\n".join(lines)


def collections_report(response: pb.ListCollectionsResponse) -> str:
    if not response.collections:
        return "no collections"
    width = max(len("collection"), *(len(c.name) for c in response.collections))
    lines = [f"{'collection':{width}}  {'size':>9}  {'pipeline':16} {'version':>7}  {'dimension':>9}"]
    for c in response.collections:
        lines.append(f"{c.name:{width}}  {c.size:>9}  {c.pipeline:16} {c.version:>7}  {c.dimension:>9}")
    return "\n".join(lines)


def index_report(summary: dict) -> str:
    """One line of totals (`summary` as IndexSummary.as_dict gives it); the failures were reported as
    they happened."""
    failed = len(summary["errors"])
    line = (
        f"indexed {summary['indexed']}, skipped {summary['skipped']} (already present), failed {failed}; "
        f"collection {summary['collection']} holds {summary['collection_size']} items"
    )
    if not failed:
        return line
    shown = [e["id"] for e in summary["errors"][:SHOWN_FAILURES]]
    more = f" and {failed - len(shown)} more" if failed > len(shown) else ""
    return f"{line}\nfailed items (reasons above): {', '.join(shown)}{more}"
