"""Cancellation reaches every long stage: beam search steps, jieba, CLIP tokenising, the server's calls.

The unit tests drive each stage with a cancelled (or cancelled part-way) token; the end-to-end tests
measure the CPU time a real server process spends after its callers gave up.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import psutil
import pytest

from crossmodal import CrossModalClient
from server.backends.clip.tokenizer import TEXTS_PER_CHECK, ClipTokenizer
from server.backends.marian.beam_search import BeamSearch, SearchSettings
from server.backends.marian.generation import DEFAULT_HYPOTHESES
from server.core.cancellation import (
    CallRegistry,
    CancelToken,
    check_cancelled,
    run_with_token,
)
from server.core.errors import Cancelled
from server.pipelines import segmentation
from tests.fixtures.server import ROOT, running_server

VOCAB, EOS, START = 12, 0, 11


class HashDecoder:
    """Logits that depend only on a row's sentence and tokens so far, so pruning cannot change them.
    EOS is unlikely until a sentence has `lengths[sentence]` tokens. Counts its steps and rows."""

    def __init__(self, lengths: list[int], on_advance=None) -> None:
        self.lengths = lengths
        self.rows: list[tuple[int, tuple[int, ...]]] = []
        self.advanced_rows: list[int] = []
        self.on_advance = on_advance

    def _logits(self) -> np.ndarray:
        out = np.empty((len(self.rows), VOCAB), dtype=np.float32)
        for i, (sentence, history) in enumerate(self.rows):
            seed = int.from_bytes(hashlib.sha256(repr((sentence, history)).encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).normal(0, 2, VOCAB)
            out[i, EOS] = 6.0 if len(history) >= self.lengths[sentence] else -6.0
        return out

    def start(self, num_beams: int) -> np.ndarray:
        self.rows = [(s, ()) for s in range(len(self.lengths)) for _ in range(num_beams)]
        return self._logits()

    def advance(self, parents, tokens, kept_rows) -> np.ndarray:
        self.rows = [
            (self.rows[p][0], (*self.rows[p][1], int(t))) for p, t in zip(parents, tokens, strict=True)
        ]
        self.advanced_rows.append(len(self.rows))
        if self.on_advance:
            self.on_advance(len(self.advanced_rows))
        return self._logits()


SETTINGS = SearchSettings(num_beams=3, num_return=2, max_length=40, eos_id=EOS, early_stopping=True)


def test_a_cancelled_beam_search_stops_at_its_next_step():
    token = CancelToken()
    decoder = HashDecoder([30, 30], on_advance=lambda step: step == 3 and token.cancel())
    with pytest.raises(Cancelled, match="beam search"):
        run_with_token(token, BeamSearch(SETTINGS, START).run, decoder, 2)
    assert len(decoder.advanced_rows) == 3  # not one decoder step after the cancellation


def test_an_abandoned_sentence_leaves_the_search_and_the_others_keep_their_results():
    lengths = [12, 14, 16]
    full = BeamSearch(SETTINGS, START).run(HashDecoder(lengths), 3)
    decoder = HashDecoder(lengths)
    gone: set[int] = set()
    decoder.on_advance = lambda step: step == 2 and gone.add(1)
    pruned = BeamSearch(SETTINGS, START).run(decoder, 3, lambda: gone)
    assert pruned[1] == [] and pruned[0] == full[0] and pruned[2] == full[2]
    k = SETTINGS.num_beams
    assert decoder.advanced_rows[:2] == [3 * k, 3 * k]
    assert decoder.advanced_rows[2] == 2 * k  # sentence 1 decoded no further


def test_jieba_segmentation_stops_when_the_call_is_cancelled(monkeypatch):
    token = CancelToken()
    consumed = []

    def words(text, cut_all):
        for index in range(100_000):
            consumed.append(index)
            if index == 10:
                token.cancel()
            yield "狗"

    monkeypatch.setattr(segmentation.jieba, "cut", words)
    with pytest.raises(Cancelled, match="jieba"):
        run_with_token(token, segmentation.segment, "狗" * 100_000)
    assert len(consumed) <= segmentation.WORDS_PER_CHECK


def test_jieba_segmentation_of_a_live_call_is_unchanged():
    assert run_with_token(CancelToken(), segmentation.segment, "在雪地里有两条狗") == (
        "在",
        "雪地",
        "里",
        "有",
        "两条",
        "狗",
    )


@pytest.fixture(scope="module")
def clip_tokenizer() -> ClipTokenizer:
    return ClipTokenizer.from_file(ROOT / "model_repository" / "clip_text" / "1" / "tokenizer.json", 77)


def test_clip_tokenising_stops_when_the_call_is_cancelled(clip_tokenizer):
    token = CancelToken()
    texts = [f"text {i}" for i in range(4 * TEXTS_PER_CHECK)]
    calls = []
    original = clip_tokenizer._tokenizer.encode_batch

    def encode_batch(chunk):
        calls.append(len(chunk))
        token.cancel()  # the caller leaves while the first chunk is encoded
        return original(chunk)

    clip_tokenizer._tokenizer.encode_batch = encode_batch
    try:
        with pytest.raises(Cancelled, match="CLIP tokenising"):
            run_with_token(token, clip_tokenizer.token_ids, texts)
    finally:
        del clip_tokenizer._tokenizer.encode_batch
    assert calls == [TEXTS_PER_CHECK]


def test_clip_tokenising_in_chunks_gives_the_ids_of_each_text_alone(clip_tokenizer):
    texts = [f"a photo of {i} dogs" + " in the snow" * (i % 9) for i in range(3 * TEXTS_PER_CHECK + 5)]
    assert clip_tokenizer.token_ids(texts) == [clip_tokenizer.token_ids([t])[0] for t in texts]


def test_the_registry_cancels_running_calls_and_knows_when_they_stopped():
    registry = CallRegistry()
    started, stuck = threading.Event(), threading.Event()
    outcome = []

    def polite():
        started.set()
        while True:
            check_cancelled("polite work")
            time.sleep(0.01)

    def run_polite():
        try:
            registry.run(CancelToken(), "polite", polite)
        except Cancelled as error:
            outcome.append(error)

    thread = threading.Thread(target=run_polite)
    thread.start()
    assert started.wait(5)
    assert registry.running() == ["polite"]
    assert registry.cancel_all() == ["polite"]
    assert registry.wait_idle(5) and registry.running() == []
    thread.join(5)
    assert len(outcome) == 1

    stubborn = threading.Thread(target=registry.run, args=(CancelToken(), "stubborn", stuck.wait, 10))
    stubborn.start()
    time.sleep(0.05)
    assert registry.cancel_all() == ["stubborn"]
    assert not registry.wait_idle(0.2)  # work that never checks its token is reported, not waited for
    stuck.set()
    stubborn.join(5)
    assert registry.wait_idle(1)


# -- a real server: CPU time after the callers gave up -------------------------------------------------

HAN = "在雪地里有两条狗一只猫在桌子上夜晚的伦敦红色汽车海滩天空房子小孩跑步"
HEAVY_SEARCH = {"num_beams": 32, "num_hypotheses": 1, "max_length": 128}
QUIET_CPU_SECONDS = 0.3  # CPU time a quiet server may use over a 2-second window (health, timers)


def chinese_texts(count: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(HAN), length)) for _ in range(count)]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def cpu_between(process: psutil.Process, start: float, end: float) -> float:
    """CPU seconds the process spends between monotonic instants `start` and `end` (both ahead)."""
    time.sleep(max(0.0, start - time.monotonic()))
    before = cpu_seconds(process)
    time.sleep(max(0.0, end - time.monotonic()))
    return cpu_seconds(process) - before


@pytest.fixture(scope="module")
def translating_server(tmp_path_factory):
    """The demo models, with translation runs of up to 128 sentences: one run can take seconds."""
    repository = tmp_path_factory.mktemp("cancellation") / "model_repository"
    shutil.copytree(ROOT / "model_repository", repository)
    config = repository / "opus_mt_zh_en" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 16", "max_batch_size: 128"))
    with running_server(repository) as (address, process):
        yield address, psutil.Process(process.pid)


def expire(address: str, seconds: float, texts: list[str], **options) -> float:
    """Sends a Translate with a `seconds` deadline; returns when the deadline passed (monotonic)."""
    with CrossModalClient(address, timeout=seconds) as client, pytest.raises(grpc.RpcError) as raised:
        client.translate(texts, **options)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    return time.monotonic()


def still_serves(address: str) -> None:
    with CrossModalClient(address, timeout=30) as client:
        translations = client.translate(["一只猫在桌子上"]).results[0].translations
    assert len(translations) == DEFAULT_HYPOTHESES and all(t.text for t in translations)


def test_a_translate_past_its_deadline_stops_segmenting(translating_server):
    address, process = translating_server
    passed = expire(address, 1.5, chinese_texts(1024, 8000))  # jieba alone needs 30 s for these
    assert cpu_between(process, passed + 1.0, passed + 3.0) < QUIET_CPU_SECONDS
    still_serves(address)


def test_a_translate_past_its_deadline_stops_its_beam_search(translating_server):
    address, process = translating_server
    passed = expire(address, 1.0, chinese_texts(128, 100, seed=1), **HEAVY_SEARCH)  # one 5-s run
    assert cpu_between(process, passed + 1.0, passed + 3.0) < QUIET_CPU_SECONDS
    still_serves(address)


CLIENT = """
import sys
from crossmodal import CrossModalClient
texts = sys.stdin.read().split()
with CrossModalClient(sys.argv[1], timeout=600) as client:
    print("sending", flush=True)
    client.translate(texts, num_beams=32, num_hypotheses=1, max_length=128)
"""


def test_killed_clients_leave_the_server_quiet(translating_server):
    address, process = translating_server
    clients = []
    for seed in range(8):
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        client.stdin.write(" ".join(chinese_texts(32, 100, seed=10 + seed)))
        client.stdin.close()
        clients.append(client)
    try:
        for client in clients:
            assert client.stdout.readline().strip() == "sending"
        time.sleep(1.5)
        assert cpu_between(process, time.monotonic(), time.monotonic() + 0.5) > 0.2  # they are working
    finally:
        for client in clients:
            client.kill()
            client.wait(10)
    killed = time.monotonic()
    assert cpu_between(process, killed + 1.5, killed + 3.5) < QUIET_CPU_SECONDS
    still_serves(address)
