"""Refuses, before any work, a request whose response could not be sent.

A response echoes what it was sent: every text (as given, its encoded text, its jieba words) and one
vector or score per item. Those parts are known from the request, so a request whose response would
pass --max-message-bytes is answered RESOURCE_EXHAUSTED at once instead of after decoding, segmenting,
translating and embedding everything. Translations cannot be known before they are made; the server's
send limit leaves room for them (see `SEND_LIMIT_FACTOR`), so a response that passes this check is sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.core.cancellation import check_cancelled
from server.core.errors import LimitExceeded
from server.memory_budget import describe_bytes
from server.pipelines.language import CHINESE, detect_language

# Tags, lengths and small fields (language, model info) of one TextResult / Embedding / LabelScore.
TEXT_RESULT_OVERHEAD = 16
VECTOR_OVERHEAD = 8
LABEL_SCORE_BYTES = 24
FLOAT_BYTES = 4
# The send limit is this many times --max-message-bytes: the part of a response this module cannot see
# in advance (translations, which are shorter than the texts they translate in all but odd cases) fits.
SEND_LIMIT_FACTOR = 2
TEXTS_PER_CHECK = 64  # long texts take a while to size: a cancelled call stops between such runs


def text_result_bytes(text: str) -> int:
    """What the TextResult of `text` takes, leaving out translations: the text, its encoded text (the
    text itself until translated) or, for Chinese, its words (each word: its bytes, a tag and a length)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if detect_language(text) == CHINESE:
        words = sum(1 for c in text if not c.isspace())  # at most one word per character
        return TEXT_RESULT_OVERHEAD + 2 * size + 2 * words
    return TEXT_RESULT_OVERHEAD + 2 * size


def check_response_size(
    rpc: str, limit: int, texts: Iterable[str], floats: int = 0, vectors: int = 0, extra_bytes: int = 0
) -> None:
    """Raises LimitExceeded when the known part of the response (the TextResults of `texts`, `floats`
    numbers in `vectors` repeated fields, `extra_bytes` more) would be over `limit` bytes."""
    size = FLOAT_BYTES * floats + VECTOR_OVERHEAD * vectors + extra_bytes
    for count, text in enumerate(texts, start=1):
        size += text_result_bytes(text)
        if count % TEXTS_PER_CHECK == 0:
            check_cancelled("sizing the response")
    if size > limit:
        raise LimitExceeded(
            f"{rpc}: the response would be at least {describe_bytes(size)}, over the "
            f"{describe_bytes(limit)} a message may have (--max-message-bytes); send fewer or shorter items"
        )
