"""Image-text search, the reference example over gRPC: one image against three Chinese texts.

Prints the texts, the image, the vector dimension, the image embedding, per text its jieba tokens and top
translations (when the server translates), the text embedding and similarity (cosine x 100 %), then the
softmax probabilities of the image over the texts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossmodal import CrossModalClient
from crossmodal.report import vector

DEFAULT_IMAGE = Path(__file__).parent / "data" / "two_dogs_in_snow.jpg"
DEFAULT_TEXTS = ["在雪地里有两条狗", "一只猫在桌子上", "夜晚的伦敦"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="127.0.0.1:8001", help="server address host:port")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="image file")
    parser.add_argument(
        "--text", action="append", help="text to compare (repeatable; default: the three examples)"
    )
    args = parser.parse_args(argv)
    texts = args.text or DEFAULT_TEXTS
    image = args.image.read_bytes()

    with CrossModalClient(args.server) as client:
        encoded = client.encode([image, *texts])
        compared = client.compare([image], texts)

    print(f"texts: {texts}")
    print(f"image: {args.image}")
    image_embedding = encoded.embeddings[0].values
    print(f"vector dimension: {len(image_embedding)}")
    print(f"image embedding: {vector(image_embedding)}")
    for index, (text, result) in enumerate(zip(texts, encoded.texts, strict=True)):
        print(f"text: {text}")
        if result.tokens:
            print(f"  tokens: [{', '.join(result.tokens)}]")
        for rank, hypothesis in enumerate(result.translations[:5], 1):
            print(f"  translation {rank}: {hypothesis.text}  (score {hypothesis.score:.4f})")
        print(f"  text embedding: {vector(encoded.embeddings[index + 1].values)}")
        print(f"  similarity: {compared.similarity[index] * 100:.2f}%")
    probabilities = ", ".join(f"{p:.4f}" for p in compared.probabilities)
    print(f"probabilities: [{probabilities}]")
    models = ", ".join(f"{m.name} v{m.version}" for m in encoded.model.models)
    print(f"served by: {models}")


if __name__ == "__main__":
    main()
