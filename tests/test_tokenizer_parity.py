"""ClipTokenizer (tokenizers + tokenizer.json) must give the same ids as open_clip's CLIP tokenizer."""

from __future__ import annotations

import random

import numpy as np
import pytest

from server.backends.clip.tokenizer import ClipTokenizer
from tests.fixtures.reference import load_open_clip_tokenizer

CONTEXT = 77
START, END = 49406, 49407

SENTENCES = [
    "",
    "   ",
    "a photo of a cat",
    "A Photo Of A DOG sitting on a red couch.",
    "Hello, world! How's it going? It's fine; really: fine...",
    "They're here, we've been waiting; I'm sure you'll like it, he'd said. Don't!",
    "THEY'RE LOUD. IT'S LATE. DON'T SHOUT.",
    "numbers: 3.14159, 1,000,000, 2024-01-31, 42nd street, 10x zoom, #1, $9.99, 50%",
    "tabs\there\tand\t\tthere",
    "new\nlines\n\n\nand\r\nwindows\r\nendings",
    "  leading and trailing whitespace   ",
    "multiple     spaces    between   words",
    "café crème brûlée à la carte, naïve façade, jalapeño, smörgåsbord, Ærøskøbing, straße",
    "cafe\u0301 (a decomposed accent) and Zoë",
    "ÉCOLE ÉLÉMENTAIRE À PARIS",
    "一只猫坐在红色的沙发上。",
    "你好，世界！这是一个测试。",
    "猫がソファの上に座っています。",
    "カタカナとひらがなと漢字のテキスト",
    "😀 🐱‍👤 👍🏽 🇯🇵 ❤️ 🙂🙃",
    "family: 👨‍👩‍👧‍👦 and a flag 🏳️‍🌈",
    "fish &amp; chips &lt;3 &gt; all",
    "&lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;single&#39; &#x263A;",
    "&amp;lt; double-escaped &amp;amp;",
    "<html><body>raw tags &amp; entity</body></html>",
    "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
    "doesnâ€™t, cafÃ©, â€œquotedâ€\x9d",
    "Ã¢â‚¬Å“mojibakeÃ¢â‚¬\x9d",
    "curly quotes ‘single’ “double” and dashes – — …",
    "!!!???...,,,;;;:::---___***",
    "e-mail: someone@example.com, url: https://example.com/a?b=c&d=e#f",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
    "a" * 60,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "mixed 中文 and English and 日本語 and émojis 🎉",
    "\u00a0non-breaking\u00a0spaces\u3000and ideographic space",
    "zero\u200bwidth\u200bspace and \ufeffbom",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "한국어 문장입니다",
    "Привет, мир! Это тест.",
]

# Short pieces the generator glues together with varied separators and casing.
FRAGMENTS = [
    "a dog",
    "the cat's toy",
    "it isn't",
    "we're late",
    "3 apples",
    "1999",
    "0.5",
    "crème",
    "über",
    "niño",
    "北京",
    "東京タワー",
    "🙂",
    "🚗💨",
    "&amp;",
    "&lt;tag&gt;",
    "cafÃ©",
    "doesnâ€™t",
    "?!",
    "...",
    "(parenthesis)",
    "[brackets]",
    'quote"s',
    "o'clock",
    "rock'n'roll",
    "high-res",
    "f/2.8",
    "user@host",
    "#hashtag",
    "@mention",
]
SEPARATORS = [" ", "  ", "\t", "\n", " \n\t ", ", ", "", "\r\n"]
CASINGS = [str, str.upper, str.lower, str.title, str.swapcase]


def generated_corpus(count: int, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        pieces = [rng.choice(FRAGMENTS + SENTENCES) for _ in range(rng.randint(1, 4))]
        text = pieces[0]
        for piece in pieces[1:]:
            text += rng.choice(SEPARATORS) + piece
        texts.append(rng.choice(CASINGS)(text))
    return texts


# Longer than the context: truncation must cut at 77 and keep the end token last.
LONG_TEXTS = [
    " ".join(["a photo of a very large dog"] * 20),
    "word " * 200,
    "猫" * 150,
    "🙂" * 80,
    "a, " * 100 + "end",
    "supercalifragilistic " * 30,
]

CORPUS = SENTENCES + generated_corpus(180) + LONG_TEXTS


@pytest.fixture(scope="module")
def ours(tiny_checkpoint) -> ClipTokenizer:
    return ClipTokenizer.from_file(tiny_checkpoint / "tokenizer.json", CONTEXT)


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    return load_open_clip_tokenizer()


def reference_ids(open_clip_tokenizer, texts: list[str]) -> list[list[int]]:
    """open_clip rows cut after the first end token (the rest is zero padding)."""
    rows = open_clip_tokenizer.tokenize(texts, context_length=CONTEXT).tolist()
    return [row[: row.index(END) + 1] for row in rows]


def test_corpus_is_large_enough():
    assert len(set(CORPUS)) >= 200


def test_ids_match_open_clip(ours, open_clip_tokenizer):
    expected = reference_ids(open_clip_tokenizer, CORPUS)
    actual = ours.token_ids(CORPUS)
    mismatches = [(text, a, e) for text, a, e in zip(CORPUS, actual, expected, strict=True) if a != e]
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:3]}"


def test_empty_text_is_start_and_end(ours):
    assert ours.token_ids(["", " \t\n "]) == [[START, END], [START, END]]


@pytest.mark.parametrize("text", LONG_TEXTS, ids=range(len(LONG_TEXTS)))
def test_truncation_keeps_end_token_last(ours, open_clip_tokenizer, text):
    (ids,) = ours.token_ids([text])
    assert len(ids) == CONTEXT
    assert ids[0] == START and ids[-1] == END
    assert END not in ids[:-1]
    assert ids == open_clip_tokenizer.tokenize([text], context_length=CONTEXT)[0].tolist()


def test_pad_to_longest_in_batch(ours, open_clip_tokenizer):
    texts = ["a dog", "a photo of a cat on a sofa", ""]
    sequences = ours.token_ids(texts)
    ids, mask = ours.pad(sequences)
    lengths = [len(s) for s in sequences]
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.shape == mask.shape == (3, max(lengths))
    assert ids.shape[1] < CONTEXT  # padded to the batch's longest, not to the context length
    assert mask.sum(axis=1).tolist() == lengths
    for row, length in enumerate(lengths):
        assert (mask[row, :length] == 1).all() and (mask[row, length:] == 0).all()
        assert (ids[row, length:] == 0).all()
    # open_clip pads with 0 as well, so its rows cut to our width are the same array.
    reference = open_clip_tokenizer.tokenize(texts, context_length=CONTEXT).numpy()
    np.testing.assert_array_equal(ids, reference[:, : ids.shape[1]])


def test_pad_with_a_full_length_row(ours):
    ids, mask = ours.pad(ours.token_ids(["a cat", LONG_TEXTS[0]]))
    assert ids.shape == (2, CONTEXT)
    assert mask[1].all() and mask[0].sum() == 4


# Edge cases found while comparing; each is a divergence from open_clip worth knowing about.
EDGE_CASES = [
    "ΟΔΥΣΣΕΥΣ",  # capital final sigma: Python lowercases a word-final Σ to ς, per-character lowering gives σ
    "ΣΊΣΥΦΟΣ and ΟΔΟΣ",
    "please ignore <|endoftext|> this",  # plain text to open_clip, whose special tokens are spelt differently
    "<|startoftext|> a caption",
]


@pytest.mark.parametrize("text", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_edge_cases_match_open_clip(ours, open_clip_tokenizer, text):
    assert ours.token_ids([text]) == reference_ids(open_clip_tokenizer, [text])
