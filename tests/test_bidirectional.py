"""The bidirectional cloze model (charlm.nn.bidirectional): float64 finite-difference gradients,
PyTorch parity (nn.GRU/LSTM/RNN(bidirectional=True) with the one-step shift, and two stacks
for several layers), and the scoring path against the training forward."""

import numpy as np
import pytest
from gradcheck import numeric_grad, rel_error

from charlm.nn import bidirectional, model
from charlm.nn.model import ModelConfig

CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
SOFTMAX = {"full": {}, "adaptive": {"softmax": "adaptive", "cutoffs": (2, 3), "div_value": 2.0}}


def _random_model(cell, activation, layers, rng, V=5, H=3, embed=0, softmax="full",
                  dropout=0.0, dtype=np.float64):
    cfg = ModelConfig(cell=cell, vocab_size=V, hidden=H, layers=layers, activation=activation,
                      embed=embed, dropout=dropout, bidirectional=True, **SOFTMAX[softmax])
    flat, params = model.init_params(cfg, rng, dtype=dtype)
    flat[:] = rng.standard_normal(flat.shape) * 0.5
    if activation == "relu":
        flat += 0.1
    return cfg, flat, params


def _loss(params, cfg, x, y, state, seed=None):
    _, grads = model.allocate(model.param_shapes(cfg), np.float64)
    rng = None if seed is None else np.random.default_rng(seed)
    nll, final, dstate0 = bidirectional.loss_and_grads(params, cfg, x, y, state, grads, rng)
    return nll / y.size, grads, dstate0, final


def test_parameters_carry_pytorchs_bidirectional_names():
    cfg = ModelConfig(cell="gru", vocab_size=7, hidden=4, layers=2, bidirectional=True)
    shapes = model.param_shapes(cfg)
    assert shapes["rnn.weight_ih_l0_reverse"] == (12, 7)
    assert shapes["rnn.weight_hh_l1_reverse"] == (12, 4)
    assert shapes["rnn.weight_ih_l1_reverse"] == (12, 4)    # its own direction's layer below
    assert shapes["head.weight"] == (7, 8)                   # [h; g]
    assert cfg.describe() == "2x4 bidirectional GRU"


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("embed", [0, 2])
@pytest.mark.parametrize("softmax", SOFTMAX)
def test_gradients_match_finite_differences(cell, activation, layers, B, embed, softmax):
    rng = np.random.default_rng(1)
    cfg, flat, params = _random_model(cell, activation, layers, rng, embed=embed,
                                      softmax=softmax)
    T = 4
    x = rng.integers(0, cfg.vocab_size, (T, B))
    y = rng.integers(0, cfg.vocab_size, (T, B))
    state = [tuple(rng.standard_normal((B, cfg.hidden)) * 0.5 for _ in s)
             for s in model.initial_state(cfg, B, np.float64)]
    _, grads, dstate0, _ = _loss(params, cfg, x, y, state)
    numeric = numeric_grad(lambda: _loss(params, cfg, x, y, state)[0], flat)
    ordered = np.concatenate([grads[name].ravel() for name in model.param_shapes(cfg)])
    assert rel_error(ordered, numeric) < 1e-6
    for layer, d_layer in zip(state, dstate0):               # the carried forward state
        for part, d_part in zip(layer, d_layer):
            assert rel_error(d_part, numeric_grad(
                lambda: _loss(params, cfg, x, y, state)[0], part)) < 1e-6


def test_dropout_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    cfg, flat, params = _random_model("lstm", "tanh", 2, rng, dropout=0.3)
    x, y = rng.integers(0, 5, (4, 3)), rng.integers(0, 5, (4, 3))
    state = model.initial_state(cfg, 3, np.float64)
    _, grads, _, _ = _loss(params, cfg, x, y, state, seed=7)
    numeric = numeric_grad(lambda: _loss(params, cfg, x, y, state, seed=7)[0], flat)
    ordered = np.concatenate([grads[name].ravel() for name in model.param_shapes(cfg)])
    assert rel_error(ordered, numeric) < 1e-6


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("embed", [0, 2])
def test_scoring_equals_the_training_forward(cell, activation, embed, monkeypatch):
    """Over one chunk from the zero state, the cloze score of targets 1 .. T-2 (where both
    see the same context) is the training loss's; cloze_rows in chunks of 3, with the
    reversed stack's outputs kept (two passes) or rerun (three), the same as one chunk."""
    rng = np.random.default_rng(3)
    cfg, _, params = _random_model(cell, activation, 2, rng, embed=embed)
    ids = rng.integers(0, cfg.vocab_size, 9)
    whole = np.concatenate([lp for _, lp in bidirectional.cloze_log_probs(
        params, cfg, ids[None, :], chunk_len=100)])[:, 0]              # (N, V)
    pieces = np.concatenate([lp for _, lp in bidirectional.cloze_log_probs(
        params, cfg, ids[None, :], chunk_len=3)])[:, 0]
    np.testing.assert_allclose(pieces, whole, atol=1e-12)
    monkeypatch.setattr(bidirectional, "KEEP_BYTES", 0)
    rerun = np.concatenate([lp for _, lp in bidirectional.cloze_log_probs(
        params, cfg, ids[None, :], chunk_len=3)])[:, 0]
    np.testing.assert_allclose(rerun, whole, atol=1e-12)
    nll, count = bidirectional.score_ids(params, cfg, ids, chunk_len=4)
    assert count == 8
    np.testing.assert_allclose(nll, -whole[np.arange(1, 9), ids[1:]].sum(), rtol=1e-12)
    # training: x = ids[:-1], y = ids[1:]; its targets y_i = ids[i+1] see ids[:i+1] on the
    # left and ids[i+2:] on the right, the whole text's context
    _, grads = model.allocate(model.param_shapes(cfg), np.float64)
    x, y = ids[:-1, None], ids[1:, None]
    train_nll, _, _ = bidirectional.loss_and_grads(params, cfg, x, y,
                                                   model.initial_state(cfg, 1, np.float64),
                                                   grads)
    np.testing.assert_allclose(train_nll, nll, rtol=1e-12)


@pytest.mark.parametrize("N, streams", [(9, 1), (9, 2), (9, 4), (10, 4), (23, 5)])
def test_streams_score_contiguous_pieces_as_texts_of_their_own(N, streams):
    rng = np.random.default_rng(6)
    cfg, _, params = _random_model("lstm", "tanh", 2, rng)
    ids = rng.integers(0, cfg.vocab_size, N)
    nll, count = bidirectional.score_ids(params, cfg, ids, streams, chunk_len=3)
    assert count == N - 1
    L = -(-N // min(streams, N // 2))
    expected, counted = 0.0, 0
    for a in range(0, N, L):                    # each piece alone; the last one ends at N
        start = min(a, N - L)
        piece = ids[start:start + L]
        log_probs = np.concatenate([lp for _, lp in bidirectional.cloze_log_probs(
            params, cfg, piece[None, :], chunk_len=100)])[:, 0]
        keep = np.arange(start, start + L) >= max(a, 1)
        expected -= log_probs[np.arange(L), piece][keep].sum()
        counted += keep.sum()
    assert counted == N - 1
    np.testing.assert_allclose(nll, expected, rtol=1e-12)


def test_each_side_is_used():
    """The prediction of a position changes with a character far to its right and one far to
    its left, and not with itself."""
    rng = np.random.default_rng(4)
    cfg, _, params = _random_model("gru", "tanh", 1, rng, V=6, H=5)
    ids = rng.integers(0, 6, 30)

    def at(text, t):
        return np.concatenate([lp for _, lp in bidirectional.cloze_log_probs(
            params, cfg, text[None, :], chunk_len=7)])[t, 0]

    base = at(ids, 12)
    for where in (0, 29, 12):
        changed = ids.copy()
        changed[where] = (ids[where] + 1) % 6
        same = np.allclose(at(changed, 12), base)
        assert same == (where == 12), where
