"""Turns the mix into concrete requests: which operation, which items, and the call that sends it."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from crossmodal.client import AsyncCrossModalClient
from crossmodal_loadtest.config import LoadConfig
from crossmodal_loadtest.inputs import PROMPT_TEMPLATES, InputPool
from crossmodal_loadtest.mix import CLASSIFY, COMPARE, ENCODE_IMAGES, ENCODE_TEXTS, TRANSLATE

SendCall = Callable[[AsyncCrossModalClient], Awaitable[object]]


@dataclass(frozen=True)
class PlannedRequest:
    """One request ready to send. `items` is what it counts towards items/s: the images or texts
    embedded, compared or classified (compare candidates and classify labels are not counted)."""

    operation: str
    items: int
    send: SendCall


class WorkloadPlanner:
    """Draws requests from a seeded generator, so a stage sends the same sequence of requests on
    every run with the same seed (which request goes out when still depends on the server)."""

    def __init__(self, config: LoadConfig, pool: InputPool, seed: int) -> None:
        self._config = config
        self._pool = pool
        self._rng = random.Random(seed)
        self._builders = {
            ENCODE_IMAGES: self._encode_images,
            ENCODE_TEXTS: self._encode_texts,
            COMPARE: self._compare,
            CLASSIFY: self._classify,
            TRANSLATE: self._translate,
        }

    def next(self) -> PlannedRequest:
        operation = self._config.mix.choose(self._rng)
        return PlannedRequest(operation, self._config.batch_items, self._builders[operation]())

    def _pick(self, values: Sequence, count: int) -> list:
        return [self._rng.choice(values) for _ in range(count)]

    def _texts(self, count: int) -> list:
        return [
            self._rng.choice(self._pool.texts[self._rng.choice(self._config.languages)]) for _ in range(count)
        ]

    def _encode_images(self) -> SendCall:
        items = self._pick(self._pool.images, self._config.batch_items)
        model, version = self._config.model, self._config.version
        return lambda client: client.encode(items, model=model, version=version)

    def _encode_texts(self) -> SendCall:
        items = self._texts(self._config.batch_items)
        model, version = self._config.model, self._config.version
        return lambda client: client.encode(items, model=model, version=version)

    def _compare(self) -> SendCall:
        # Image queries against caption candidates: the image-text search the server exists for.
        queries = self._pick(self._pool.images, self._config.batch_items)
        candidates = self._texts(self._config.candidates)
        model, version = self._config.model, self._config.version
        return lambda client: client.compare(queries, candidates, model=model, version=version)

    def _classify(self) -> SendCall:
        # One language per request: the prompt template and the labels must speak the same one.
        language = self._rng.choice(self._config.languages)
        items = self._pick(self._pool.images, self._config.batch_items)
        vocabulary = self._pool.labels[language]
        start = self._rng.randrange(len(vocabulary))
        labels = [vocabulary[(start + i) % len(vocabulary)] for i in range(self._config.candidates)]
        template = PROMPT_TEMPLATES[language]
        model, version = self._config.model, self._config.version
        return lambda client: client.classify(items, labels, template, model=model, version=version)

    def _translate(self) -> SendCall:
        texts = self._pick(self._pool.chinese_texts, self._config.batch_items)
        model, version = self._config.model, self._config.version
        return lambda client: client.translate(texts, model=model, version=version)
