"""Reused scratch arrays (charlm.workspace) change nothing but speed."""

import numpy as np
import pytest

from charlm.nn import inference, model
from charlm.nn.workspace import FRESH, Workspace


def test_the_same_name_and_shape_get_the_same_array():
    ws = Workspace()
    a = ws.empty("a", (3, 4), np.float32)
    assert ws.empty("a", (3, 4), np.float32) is a
    assert ws.scope(0).empty("a", (3, 4), np.float32) is not a     # scopes do not collide
    assert ws.empty("a", (4, 3), np.float32) is not a              # a new shape, a new array
    assert ws.empty("a", (4, 3), np.float64).dtype == np.float64
    assert FRESH.empty("a", (2,), np.float32) is not FRESH.empty("a", (2,), np.float32)


def _step(params, cfg, x, y, state, ws, seed):
    """One training step's loss, gradients and next state."""
    _, grads = model.allocate(model.param_shapes(cfg))
    nll, final, _ = model.loss_and_grads(params, cfg, x, y, state, grads,
                                         np.random.default_rng(seed), ws=ws)
    return nll, {k: v.copy() for k, v in grads.items()}, final


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("softmax", [{}, {"softmax": "adaptive", "cutoffs": (4, 7)}])
def test_steps_with_a_workspace_equal_steps_without(cell, batch, softmax):
    cfg = model.ModelConfig(cell=cell, vocab_size=11, hidden=8, layers=2, dropout=0.3,
                            **softmax)
    _, params = model.init_params(cfg, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    ws = Workspace()
    fresh_state = reused_state = model.initial_state(cfg, batch)
    for step in range(3):              # later steps write over the arrays of earlier ones
        x = rng.integers(0, cfg.vocab_size, (6, batch))
        y = rng.integers(0, cfg.vocab_size, (6, batch))
        nll_a, grads_a, fresh_state = _step(params, cfg, x, y, fresh_state, FRESH, step)
        nll_b, grads_b, reused_state = _step(params, cfg, x, y, reused_state, ws, step)
        assert nll_a == nll_b
        for name in grads_a:
            np.testing.assert_array_equal(grads_a[name], grads_b[name], err_msg=name)
        for a, b in zip(fresh_state, reused_state):
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v)
    assert ws.nbytes() > 0


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_scoring_with_a_workspace_equals_scoring_without(cell, monkeypatch):
    cfg = model.ModelConfig(cell=cell, vocab_size=11, hidden=8, layers=2)
    _, params = model.init_params(cfg, np.random.default_rng(0))
    ids = np.random.default_rng(2).integers(0, cfg.vocab_size, 200)
    reused = inference.score_ids(params, cfg, ids, streams=3, chunk_len=16)  # 5 chunks, 1 short
    monkeypatch.setattr(inference, "Workspace", lambda: FRESH)
    assert inference.score_ids(params, cfg, ids, streams=3, chunk_len=16) == reused
