"""What happens to a text before the CLIP text tower: language, jieba words and, for Chinese, translation."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import replace

from server.backends.base import Capability, Translator, has
from server.core.config import Limits
from server.core.errors import InvalidInput, LimitExceeded, ModelNotFound
from server.core.types import TextOutcome, TranslateOptions
from server.pipelines.kinds import CLIP
from server.pipelines.language import CHINESE, detect_language, unescape_entities
from server.pipelines.segmentation import segment
from server.repository.repository import ModelRepository

TRANSLATOR = CLIP.role("translator").name  # the pipeline part that translates

# Characters that show nothing: white space, format characters (zero-width spaces and joiners, the soft
# hyphen, bidirectional marks, tags) and control characters. A text of only these is as empty as a blank one.
INVISIBLE_CATEGORIES = ("Cf", "Cc")


def is_blank(text: str) -> bool:
    return all(ch.isspace() or unicodedata.category(ch) in INVISIBLE_CATEGORIES for ch in text)


def describe_text(item_name: str, text: str, limits: Limits) -> TextOutcome:
    """Language and (for Chinese) jieba words; the text is what gets encoded until it is translated.

    An empty text (blank, or only zero-width characters) is refused: it carries nothing to embed or
    translate, so it is a caller's slip. A Chinese text is segmented and translated with its HTML entities
    decoded (the translator would read "&#22823;" as punctuation and digits); an English one is encoded as
    given, since the CLIP tokenizer decodes entities itself.
    """
    if is_blank(text):
        raise InvalidInput(f"{item_name}: text is empty")
    if len(text) > limits.max_text_chars:
        raise LimitExceeded(
            f"{item_name}: text has {len(text)} characters; the limit is {limits.max_text_chars}"
        )
    language = detect_language(text)
    if language != CHINESE:
        return TextOutcome(text=text, language=language, encoded_text=text)
    decoded = unescape_entities(text)
    return TextOutcome(text=text, language=language, encoded_text=decoded, tokens=segment(decoded))


Offload = Callable[..., Awaitable]  # runs a function on a worker thread, as a stage of the current call


async def translate_outcomes(
    outcomes: list[TextOutcome], translator: Translator, options: TranslateOptions, offload: Offload
) -> list[TextOutcome]:
    """Fills translations (n-best) and encoded_text (the best one) of every outcome, in one decode.
    Tokenising runs on a worker thread; the decode is awaited, holding none."""
    pending = await offload(_queued_translations, translator, [o.encoded_text for o in outcomes], options)
    nbest = await pending.wait()  # entities decoded
    return [
        replace(o, translations=tuple(h), encoded_text=h[0].text if h else o.text)
        for o, h in zip(outcomes, nbest, strict=True)
    ]


def translator_name(repository: ModelRepository, pipeline: str) -> str | None:
    return repository.pipeline_spec(pipeline).parts.get(TRANSLATOR)


def _queued_translations(translator: Translator, texts: list[str], options: TranslateOptions):
    return translator.submit_translations(texts, options).withdrawn_on_cancel()


def resolve_translator(repository: ModelRepository, name: str, version: int) -> Translator:
    """`name` is a translator model, or a pipeline whose translator is meant; version 0 = newest ready."""
    if version < 0:
        raise InvalidInput(f"model.version must be 0 (newest) or a positive version, got {version}")
    if repository.is_pipeline(name):
        translator = translator_name(repository, name)
        if translator is None:
            raise ModelNotFound(
                f"pipeline '{name}' names no translator (parameter 'translator' in config.pbtxt)"
            )
        name = translator
    model = repository.model(name, version)
    if not has(model, Capability.TRANSLATE):
        raise ModelNotFound(f"model '{name}' is a {model.model_type} model, not a translator")
    return model
