"""Finite-difference gradient checks (float64) for every cell, stacks, both output layers,
the loss and dropout."""

import numpy as np
import pytest
from gradcheck import numeric_grad, rel_error

from charlm.nn import inference, layout, loss, model, output
from charlm.nn.model import ModelConfig

CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
# the adaptive softmax at V = 5: a shortlist of 2 and clusters of 1 and 2 ids (inner sizes 2, 1)
SOFTMAX = {"full": {}, "adaptive": {"softmax": "adaptive", "cutoffs": (2, 3), "div_value": 2.0}}


def _random_model(cell, activation, layers, rng, V=5, H=4, dropout=0.0, embed=0,
                  softmax="full"):
    cfg = ModelConfig(cell=cell, vocab_size=V, hidden=H, layers=layers,
                      activation=activation, dropout=dropout, embed=embed, **SOFTMAX[softmax])
    flat, params = model.init_params(cfg, rng, dtype=np.float64)
    flat[:] = rng.standard_normal(flat.shape) * 0.5    # non-trivial biases too
    if activation == "relu":
        flat += 0.1                                    # keep pre-activations away from the kink
    return cfg, flat, params


def _mean_nll(params, cfg, x, y, state, dropout_rng=None):
    """(mean nats of y, final state) by the forward pass and the output layer's scoring."""
    top, final, _ = model.forward(params, cfg, x, state, dropout_rng)
    return -output.target_log_probs(params, cfg, top, y.reshape(-1)).mean(), final


def _grads(params, cfg, x, y, state, dropout_rng=None, dstate=None):
    """(gradients keyed like params, gradient of the initial state) from loss_and_grads."""
    _, grads = model.allocate(model.param_shapes(cfg), np.float64)
    _, _, dstate0 = model.loss_and_grads(params, cfg, x, y, state, grads, dropout_rng, dstate)
    return grads, dstate0


def _random_state(cfg, B, rng):
    return [tuple(rng.standard_normal((B, cfg.hidden)) * 0.5 for _ in s)
            for s in model.initial_state(cfg, B, np.float64)]


# The layout code takes different paths at one stream, a few, and from 4 up (projection.SMALL_BATCH,
# the LSTM's sigmoid blocks), so every check runs at each.
BATCHES = [1, 3, 5]


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("embed", [0, 3])            # one-hot input, a learned embedding
@pytest.mark.parametrize("softmax", SOFTMAX)
def test_model_gradients_match_finite_differences(cell, activation, layers, B, embed, softmax):
    rng = np.random.default_rng(0)
    cfg, flat, params = _random_model(cell, activation, layers, rng, embed=embed,
                                      softmax=softmax)
    T = 4
    x = rng.integers(0, cfg.vocab_size, (T, B))
    y = rng.integers(0, cfg.vocab_size, (T, B))
    state = _random_state(cfg, B, rng)                 # a chunk boundary: non-zero h0 (and c0)
    dstate = _random_state(cfg, B, rng)                # gradient arriving at the final state

    def objective():
        nll, final = _mean_nll(params, cfg, x, y, state)
        extra = sum(float(np.sum(a * d)) for s, ds in zip(final, dstate) for a, d in zip(s, ds))
        return nll + extra

    grads, dstate0 = _grads(params, cfg, x, y, state, dstate=dstate)

    for name in params:
        assert rel_error(grads[name], numeric_grad(objective, params[name])) < 1e-6, name
    for k in range(layers):
        for part, d in zip(state[k], dstate0[k]):
            assert rel_error(d, numeric_grad(objective, part)) < 1e-6


@pytest.mark.parametrize("cell,activation", CASES)
def test_gradients_across_a_chunk_boundary(cell, activation):
    """Two chunks run back to back, with the second's state gradient fed into the first,
    give the gradient of the total loss: truncation is the only approximation in training."""
    rng = np.random.default_rng(1)
    cfg, flat, params = _random_model(cell, activation, 2, rng)
    T, B = 3, 2
    xs = rng.integers(0, cfg.vocab_size, (2, T, B))
    ys = rng.integers(0, cfg.vocab_size, (2, T, B))
    state0 = _random_state(cfg, B, rng)

    def objective():
        state, total = state0, 0.0
        for x, y in zip(xs, ys):
            nll, state = _mean_nll(params, cfg, x, y, state)
            total += nll
        return total

    _, state1 = _mean_nll(params, cfg, xs[0], ys[0], state0)
    g2, dstate1 = _grads(params, cfg, xs[1], ys[1], state1)
    g1, _ = _grads(params, cfg, xs[0], ys[0], state0, dstate=dstate1)
    for name in params:
        assert rel_error(g1[name] + g2[name], numeric_grad(objective, params[name])) < 1e-6, name


def test_dropout_gradients_match_finite_differences():
    """With the mask drawn from a fixed seed, dropout is a fixed linear map to differentiate."""
    rng = np.random.default_rng(2)
    cfg, flat, params = _random_model("lstm", "tanh", 2, rng, dropout=0.3)
    T, B = 3, 2
    x = rng.integers(0, cfg.vocab_size, (T, B))
    y = rng.integers(0, cfg.vocab_size, (T, B))
    state = model.initial_state(cfg, B, np.float64)

    def objective():
        return _mean_nll(params, cfg, x, y, state, np.random.default_rng(7))[0]

    grads, _ = _grads(params, cfg, x, y, state, np.random.default_rng(7))
    _, _, cache = model.forward(params, cfg, x, state, np.random.default_rng(7))
    masks = [layer_cache[-1] for layer_cache in cache[1]]
    assert all(m is not None and (m == 0).any() for m in masks)
    for name in params:
        assert rel_error(grads[name], numeric_grad(objective, params[name])) < 1e-6, name


def test_cross_entropy_gradient_and_extreme_logits():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 5))
    targets = rng.integers(0, 5, 6)

    def objective():
        return loss.cross_entropy(logits.copy(), targets, want_grad=False)[0] / 6

    _, dlogits = loss.cross_entropy(logits.copy(), targets)
    assert rel_error(dlogits, numeric_grad(objective, logits)) < 1e-7
    extreme = np.array([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0]], np.float32)
    nll, _ = loss.cross_entropy(extreme, np.array([0, 2]), want_grad=False)
    assert nll == pytest.approx(2000.0)


def test_float32_stays_float32():
    rng = np.random.default_rng(4)
    cfg = ModelConfig(cell="gru", vocab_size=7, hidden=6, layers=2)
    _, params = model.init_params(cfg, rng)
    x = rng.integers(0, 7, (5, 3))
    top, state, _ = model.forward(params, cfg, x, model.initial_state(cfg, 3))
    assert top.dtype == np.float32 and state[0][0].dtype == np.float32
    assert output.log_probs(params, cfg, top).dtype == np.float32


@pytest.mark.parametrize("cell,activation", CASES)
def test_one_stream_inference_is_the_same_for_either_weight_order(cell, activation):
    # At one stream the folded W_hh is column-major for small models and row-major from
    # layout.GEMV_THREADED_SIZE up; the GEMV follows the order, the numbers must not.
    rng = np.random.default_rng(6)
    cfg, flat, params = _random_model(cell, activation, 2, rng)
    x = rng.integers(0, cfg.vocab_size, (6, 1))
    state = _random_state(cfg, 1, rng)
    folded = inference.fold_for_inference(params, cfg, 1)
    assert all(w_hh.flags.f_contiguous for _, _, w_hh, _ in folded)
    row_major = [(w, b, np.ascontiguousarray(w_hh), b_hh) for w, b, w_hh, b_hh in folded]
    top_f, final_f = inference.infer(params, cfg, x, state, folded=folded)
    top_c, final_c = inference.infer(params, cfg, x, state, folded=row_major)
    assert np.allclose(top_f, top_c, rtol=1e-12, atol=1e-12)
    for a, b in zip(final_f, final_c):
        for u, v in zip(a, b):
            assert np.allclose(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("B", BATCHES)
@pytest.mark.parametrize("embed", [0, 3])
def test_inference_path_equals_the_training_forward(cell, activation, B, embed):
    """Scoring reads layer 0 from one table by id, embed.weight @ W_ih^T with an embedding;
    training multiplies the gathered rows: the same numbers."""
    rng = np.random.default_rng(5)
    cfg, flat, params = _random_model(cell, activation, 2, rng, embed=embed)
    x = rng.integers(0, cfg.vocab_size, (6, B))
    state = _random_state(cfg, B, rng)
    top, final, _ = model.forward(params, cfg, x, state)
    top_infer, final_infer = inference.infer(params, cfg, x, state)
    assert np.allclose(top, top_infer, rtol=1e-12, atol=1e-12)
    for a, b in zip(final, final_infer):
        for u, v in zip(a, b):
            assert np.allclose(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("embed", [0, 16])
@pytest.mark.parametrize("softmax", ["full", "adaptive"])
@pytest.mark.parametrize("weights", ["column-major", "row-major"])
def test_one_stream_training_forward_is_inference_bit_for_bit(cell, activation, embed, softmax,
                                                              weights, monkeypatch):
    """Dynamic evaluation scores a segment with the training forward it learns from: at one
    stream its rows, final state and per-target log-probabilities must be what infer and
    target_log_probs give, bit for bit (float32, a size where BLAS and SIMD kernels matter),
    with restarts inside the chunk, for either memory order of the one-stream W_hh."""
    if weights == "row-major":
        monkeypatch.setattr(layout, "GEMV_THREADED_SIZE", 0)
    rng = np.random.default_rng(8)
    cfg = ModelConfig(cell=cell, vocab_size=70, hidden=48, layers=2, activation=activation,
                      embed=embed, **({"softmax": "adaptive", "cutoffs": (20, 45)}
                                       if softmax == "adaptive" else {}))
    flat, params = model.init_params(cfg, rng)
    flat += rng.standard_normal(flat.shape).astype(np.float32) * 0.05
    x, y = rng.integers(0, 70, (37, 1)), rng.integers(0, 70, (37, 1))
    keep = np.ones((37, 1, 1), np.float32)
    keep[[5, 20]] = 0                                  # two documents start inside the chunk
    state = [tuple(s.astype(np.float32) for s in layer) for layer in _random_state(cfg, 1, rng)]
    top, final = inference.infer(params, cfg, x, state, keep=keep)
    want = output.target_log_probs(params, cfg, top, y.reshape(-1))
    top_train, final_train, _ = model.forward(params, cfg, x, state, keep=keep)
    got = np.empty(37)
    _, grads = model.allocate(model.param_shapes(cfg))
    _, final_loss, _ = model.loss_and_grads(params, cfg, x, y, state, grads, keep=keep,
                                            log_probs=got)
    assert np.array_equal(top_train, top)
    assert np.array_equal(got, want)
    for states in (final_train, final_loss):
        for a, b in zip(states, final):
            for u, v in zip(a, b):
                assert np.array_equal(u, v)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_embedding_gradient_over_a_large_vocabulary(cell):
    """From ONE_HOT_MAX_COLS up the rows are summed by sorting ids, not through a one-hot
    matrix: the gradient of embed.weight (and W_ih) there, ids repeated and most rows unseen."""
    rng = np.random.default_rng(7)
    cfg, flat, params = _random_model(cell, "tanh", 1, rng, V=300, H=3, embed=2)
    x = rng.integers(0, 12, (4, 3)) * 25                # 12 distinct ids of 300, repeated
    y = rng.integers(0, cfg.vocab_size, (4, 3))
    state = _random_state(cfg, 3, rng)

    def objective():
        return _mean_nll(params, cfg, x, y, state)[0]

    grads, _ = _grads(params, cfg, x, y, state)
    seen = np.unique(x)
    numeric = numeric_grad(objective, params["embed.weight"])
    assert rel_error(grads["embed.weight"], numeric) < 1e-6
    assert not np.any(np.delete(grads["embed.weight"], seen, axis=0))   # unseen rows: zero
    assert rel_error(grads["rnn.weight_ih_l0"],
                     numeric_grad(objective, params["rnn.weight_ih_l0"])) < 1e-6
