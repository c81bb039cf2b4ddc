"""Plain Python values as request items: `str` is a text, `bytes` or `pathlib.Path` an encoded image."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from crossmodal.v1 import crossmodal_pb2 as pb

ItemLike = str | bytes | Path | pb.Item


def text_item(text: str) -> pb.Item:
    return pb.Item(text=text)


def image_item(image: bytes | Path | str) -> pb.Item:
    """An image item from encoded bytes or a file path."""
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return pb.Item(image=data)


def make_item(value: ItemLike) -> pb.Item:
    if isinstance(value, pb.Item):
        return value
    if isinstance(value, str):
        return text_item(value)
    if isinstance(value, bytes | Path):
        return image_item(value)
    raise TypeError(f"cannot make an item of {type(value).__name__}; use str, bytes, Path or Item")


def make_items(values: Iterable[ItemLike]) -> list[pb.Item]:
    return [make_item(v) for v in values]
