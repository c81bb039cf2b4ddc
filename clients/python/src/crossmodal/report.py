"""Readable reports of responses, in the spirit of the reference example's log.

Similarity is shown as cosine x 100 %, probabilities as the softmax over candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

from crossmodal.v1 import crossmodal_pb2 as pb

SHOWN_VALUES = 6


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
