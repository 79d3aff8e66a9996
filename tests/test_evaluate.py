"""Scoring a text: S streams are S independent single-stream passes over contiguous pieces."""

import math

import numpy as np
import pytest

from charlm.nn import inference, model


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("streams", [2, 3, 16])
def test_streams_score_their_pieces_as_single_streams_would(cell, streams):
    # one stream and several take different code paths (gathers, projections, folded layouts)
    cfg = model.ModelConfig(cell=cell, vocab_size=13, hidden=12, layers=2)
    flat, params = model.init_params(cfg, np.random.default_rng(0), np.float64)
    flat[:] = np.random.default_rng(3).normal(0, 0.5, flat.size)    # biases too: none is zero
    ids = np.random.default_rng(1).integers(0, cfg.vocab_size, 301)
    n_pred = len(ids) - 1
    piece = math.ceil(n_pred / streams)
    expected = 0.0
    for start in range(0, n_pred, piece):         # a piece starts one character early
        nll, count = inference.score_ids(params, cfg, ids[start:start + piece + 1], chunk_len=32)
        expected += nll
    total, count = inference.score_ids(params, cfg, ids, streams=streams, chunk_len=32)
    assert count == n_pred
    assert total == pytest.approx(expected, rel=1e-12)
