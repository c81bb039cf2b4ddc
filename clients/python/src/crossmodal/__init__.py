"""Python client for the crossmodal server: `CrossModalClient` (blocking) and `AsyncCrossModalClient`."""

from crossmodal.client import (
    AsyncCrossModalClient,
    CrossModalClient,
    Security,
    image_item,
    make_item,
    text_item,
)

__all__ = ["AsyncCrossModalClient", "CrossModalClient", "Security", "image_item", "make_item", "text_item"]
