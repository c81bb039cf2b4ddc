"""The beam search's candidate selection equals a full sort, on the shapes it meets."""

from __future__ import annotations

import numpy as np
import pytest

from server.backends.marian.beam_search import STRIDES, log_softmax, top_candidates


@pytest.mark.parametrize(
    ("rows", "width", "count"),
    [(1, 5 * 65001, 10), (8, 5 * 65001, 10), (3, 50, 4), (2, STRIDES * 21 + 5, 10), (4, STRIDES * 40, 2)],
)
def test_top_candidates_equal_a_full_stable_sort(rows, width, count):
    rng = np.random.default_rng(width + rows)
    scores = rng.standard_normal((rows, width)).astype(np.float32)
    scores[:, ::7] = -np.inf  # banned tokens
    scores[0, -2] = 50.0  # a winner among the columns left over after the strided groups
    scores[-1, [3, 900 % width]] = 40.0  # a tie: the lower column comes first
    top, top_scores = top_candidates(scores, count)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :count]
    np.testing.assert_array_equal(top, expected)
    np.testing.assert_array_equal(top_scores, np.take_along_axis(scores, expected, axis=1))


def test_log_softmax_matches_the_definition_and_keeps_banned_tokens_impossible():
    logits = np.array([[1.0, 2.0, 3.0, -np.inf], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    result = log_softmax(logits.copy())
    finite = logits[0, :3].astype(np.float64)
    expected = finite - np.log(np.exp(finite).sum())
    np.testing.assert_allclose(result[0, :3], expected, rtol=1e-6)
    assert result[0, 3] == -np.inf
    np.testing.assert_allclose(result[1], np.log(0.25), rtol=1e-6)
