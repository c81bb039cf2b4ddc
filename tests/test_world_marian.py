"""The demo world's Marian training data: the held-out split, the weighted pairs, the tokenizer (no full
training here: `python -m tools.world.train_marian` trains and evaluates the real model)."""

from __future__ import annotations

from collections import Counter

import pytest

from tools.world.captions import chinese, english
from tools.world.scenes import ALL_SCENES
from tools.world.train_marian import (
    EXAMPLES,
    PREFERRED_WEIGHT,
    TrainSettings,
    WorldMarianShape,
    all_pairs,
    build_model,
    build_tokenizer,
    evaluate,
    split_sentences,
    train_model,
    training_examples,
)


@pytest.fixture(scope="module")
def split():
    return split_sentences(0)


def test_all_pairs_cover_every_phrasing_once():
    pairs = all_pairs()
    assert len(pairs) == sum(len(chinese(scene)) for scene in ALL_SCENES) == 364
    assert len({pair.chinese for pair in pairs}) == len(pairs)


def test_split_is_deterministic_and_depends_on_the_seed(split):
    assert split_sentences(0) == split
    assert {p.chinese for p in split_sentences(1)[1]} != {p.chinese for p in split[1]}


def test_about_15_percent_held_out_and_never_trained_on(split):
    train, heldout = split
    total = len(all_pairs())
    assert len(train) + len(heldout) == total
    assert 0.13 <= len(heldout) / total <= 0.17
    trained = {pair.chinese for pair in train}
    assert not trained & {pair.chinese for pair in heldout}
    examples = training_examples(train)
    assert not {zh for zh, _ in examples} & {pair.chinese for pair in heldout}


def test_example_and_empty_city_sentences_stay_in_training(split):
    train, heldout = split
    trained = {pair.chinese for pair in train}
    assert set(EXAMPLES) <= trained
    assert all(pair.scene.kind is not None for pair in heldout)
    for seed in range(10):
        assert set(EXAMPLES).isdisjoint(pair.chinese for pair in split_sentences(seed)[1])


def test_every_heldout_item_has_the_four_paraphrases_of_its_scene(split):
    _, heldout = split
    for pair in heldout:
        assert len(pair.references) == len(set(pair.references)) == 4
        assert pair.references == english(pair.scene)
        assert pair.preferred in pair.references
        assert (pair.chinese, pair.references.index(pair.preferred)) in chinese(pair.scene)


def test_heldout_spread_over_scenes_and_phrasings(split):
    train, heldout = split
    assert len({pair.scene for pair in heldout}) == len(heldout)  # at most one phrasing of a scene
    assert max(Counter(pair.pattern for pair in heldout).values()) <= -(-len(heldout) // 4)
    trained_scenes = Counter(pair.scene for pair in train)
    assert all(trained_scenes[pair.scene] == 3 for pair in heldout)


def test_training_examples_weight_the_preferred_paraphrase(split):
    train, _ = split
    examples = Counter(training_examples(train))
    assert sum(examples.values()) == len(train) * (4 + PREFERRED_WEIGHT - 1)
    for pair in train:
        for reference in pair.references:
            expected = PREFERRED_WEIGHT if reference == pair.preferred else 1
            assert examples[(pair.chinese, reference)] == expected
    assert examples[("在雪地里有两条狗", "There are two dogs in the snow")] == PREFERRED_WEIGHT
    assert examples[("在雪地里有两条狗", "Two dogs in the snow")] == 1
    assert examples[("夜晚的伦敦", "London at night")] == PREFERRED_WEIGHT
    assert examples[("一只猫在桌子上", "A cat is on the table")] == PREFERRED_WEIGHT


@pytest.fixture(scope="module")
def tokenizer(split, tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("world-marian"), split[0], WorldMarianShape())


def test_tokenizer_has_opus_mt_layout_and_whole_english_words(tokenizer, split):
    vocab = tokenizer.get_vocab()
    assert vocab["</s>"] == 0 and vocab["<unk>"] == 1 and vocab["<pad>"] == len(vocab) - 1
    train, heldout = split
    words = {word for pair in train for reference in pair.references for word in reference.split()}
    for word in words:
        assert tokenizer.spm_target.encode(word, out_type=str) == [f"▁{word}"], word
    # Held-out sentences use only characters seen in training: nothing is unknown.
    encoded = tokenizer([pair.chinese for pair in heldout]).input_ids
    assert all(tokenizer.unk_token_id not in ids for ids in encoded)


def test_a_few_steps_save_and_evaluate(tokenizer, split, tmp_path):
    """Smoke test of the loop on a tiny shape (a few steps: its translations mean nothing)."""
    shape = WorldMarianShape(d_model=16, layers=1, heads=2, ffn=32)
    model = build_model(len(tokenizer.get_vocab()), tokenizer.pad_token_id, shape, seed=0)
    assert model.generation_config.decoder_start_token_id == tokenizer.pad_token_id
    assert model.generation_config.bad_words_ids == [[tokenizer.pad_token_id]]
    assert model.generation_config.num_beams == 5
    train, heldout = split
    loss = train_model(
        model, tokenizer, training_examples(train[:8]), TrainSettings(steps=3, batch_size=8), 0
    )
    assert loss == loss and loss > 0
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    result = evaluate(tmp_path, heldout[:3])
    assert result["heldout"]["sentences"] == 3
    assert 0.0 <= result["heldout"]["exact_match"] <= 1.0
    assert set(result["examples"]) == set(EXAMPLES)
    assert all(len(example["nbest"]) == 5 for example in result["examples"].values())
