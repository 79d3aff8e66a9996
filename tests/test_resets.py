"""Documents (`--reset-at`): where the state restarts, the gradients with restarts inside a
chunk (float64 finite differences and PyTorch run document by document), and a text of two
documents scoring as the two alone (charlm.nn.resets states the rule)."""

import numpy as np
import pytest
from gradcheck import numeric_grad, rel_error

from charlm.nn import inference, model, output, resets
from charlm.nn.model import ModelConfig

CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def _random_model(cell, activation, layers, rng, V=5, H=4, embed=0):
    cfg = ModelConfig(cell=cell, vocab_size=V, hidden=H, layers=layers,
                      activation=activation, embed=embed)
    flat, params = model.init_params(cfg, rng, dtype=np.float64)
    flat[:] = rng.standard_normal(flat.shape) * 0.5
    if activation == "relu":
        flat += 0.1                                    # keep pre-activations away from the kink
    return cfg, params


def _random_state(cfg, B, rng):
    return [tuple(rng.standard_normal((B, cfg.hidden)) * 0.5 for _ in s)
            for s in model.initial_state(cfg, B, np.float64)]


def _restart(T, B):
    """(T, B) restarts at the chunk's first step, inside it, twice in a row and at its end."""
    restart = np.zeros((T, B), bool)
    restart[0, 0] = restart[2, -1] = restart[3, -1] = restart[T - 1, B // 2] = True
    restart[1, B // 2] = True
    return restart


def test_restarts_mark_the_last_character_of_every_occurrence():
    ids = np.array([1, 0, 0, 2, 0, 0, 0, 1, 0])
    assert resets.restarts(ids, [0, 0]).tolist() == [
        False, False, True, False, False, True, True, False, False]     # overlapping: both
    assert resets.restarts(ids, [0]).tolist() == (ids == 0).tolist()
    assert resets.restarts(ids, [2, 0, 0, 0]).tolist() == [False] * 6 + [True, False, False]
    assert not resets.restarts(ids, []).any() and not resets.restarts(ids[:1], [1, 0]).any()
    watcher = resets.Watcher([0, 0])                 # sampling applies the same rule
    assert [watcher.restarts_before(i) for i in ids] == resets.restarts(ids, [0, 0]).tolist()
    assert resets.keep_mask(np.zeros((3, 2), bool), np.float32) is None


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("B", [1, 3, 5])
@pytest.mark.parametrize("embed", [0, 3])
def test_gradients_with_restarts_inside_a_chunk(cell, activation, layers, B, embed):
    rng = np.random.default_rng(0)
    cfg, params = _random_model(cell, activation, layers, rng, embed=embed)
    T = 5
    x = rng.integers(0, cfg.vocab_size, (T, B))
    y = rng.integers(0, cfg.vocab_size, (T, B))
    state = _random_state(cfg, B, rng)                 # non-zero h0 (and c0): keep[0] matters
    dstate = _random_state(cfg, B, rng)
    keep = resets.keep_mask(_restart(T, B), np.float64)

    def objective():
        top, final, _ = model.forward(params, cfg, x, state, keep=keep)
        nll = -output.target_log_probs(params, cfg, top, y.reshape(-1)).mean()
        return nll + sum(float(np.sum(a * d)) for s, ds in zip(final, dstate)
                         for a, d in zip(s, ds))

    _, grads = model.allocate(model.param_shapes(cfg), np.float64)
    _, _, dstate0 = model.loss_and_grads(params, cfg, x, y, state, grads, dstate=dstate,
                                         keep=keep)
    for name in params:
        assert rel_error(grads[name], numeric_grad(objective, params[name])) < 1e-6, name
    for k in range(layers):
        for part, d in zip(state[k], dstate0[k]):
            assert rel_error(d, numeric_grad(objective, part)) < 1e-6
            assert not d[0].any()                     # stream 0 restarts at once: no gradient


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("B", [1, 3, 5])
def test_scoring_with_restarts_equals_the_training_forward(cell, activation, B):
    """inference.infer (its one-stream paths included) restarts where model.forward does."""
    rng = np.random.default_rng(1)
    cfg, params = _random_model(cell, activation, 2, rng, embed=3 if B == 3 else 0)
    x = rng.integers(0, cfg.vocab_size, (6, B))
    state = _random_state(cfg, B, rng)
    keep = resets.keep_mask(_restart(6, B), np.float64)
    top, final, _ = model.forward(params, cfg, x, state, keep=keep)
    top_infer, final_infer = inference.infer(params, cfg, x, state, keep=keep)
    plain, _, _ = model.forward(params, cfg, x, state)
    assert not np.allclose(top, plain)                 # the restarts change the outputs
    assert np.allclose(top, top_infer, rtol=1e-12, atol=1e-12)
    for a, b in zip(final, final_infer):
        for u, v in zip(a, b):
            assert np.allclose(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("sep", [[4], [3, 4], [4, 4]])
def test_two_documents_score_as_each_alone(cell, sep):
    """score(A + sep + B) = score(A + sep) + score(sep[-1] + B), for scoring and sampling."""
    rng = np.random.default_rng(2)
    cfg, params = _random_model(cell, "tanh", 2, rng)
    a = rng.integers(0, 3, 40)                         # ids 0..2: no separator inside
    b = rng.integers(0, 3, 30)
    text = np.concatenate([a, sep, b])
    whole, n = inference.score_ids(params, cfg, text, reset_ids=sep)
    first, n1 = inference.score_ids(params, cfg, np.concatenate([a, sep]), reset_ids=sep)
    second, n2 = inference.score_ids(params, cfg, np.concatenate([sep[-1:], b]), reset_ids=sep)
    assert n == n1 + n2 == len(text) - 1
    assert whole == pytest.approx(first + second, rel=1e-12)
    carried, _ = inference.score_ids(params, cfg, text)          # without the separator
    assert abs(carried - whole) > 1e-6                             # the restart matters
    stepper = inference.Stepper(params, cfg, reset_ids=sep)      # sampling: the same rule
    stepped = 0.0
    for now, nxt in zip(text[:-1], text[1:]):
        logits = stepper.step(now).astype(np.float64)
        stepped -= logits[nxt] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
    assert stepped == pytest.approx(whole, rel=1e-10)


def test_many_documents_over_several_chunks_score_as_each_alone():
    rng = np.random.default_rng(3)
    cfg, params = _random_model("lstm", "tanh", 2, rng)
    docs = [rng.integers(0, 4, rng.integers(5, 60)) for _ in range(12)]
    text = np.concatenate([np.concatenate([d, [4]]) for d in docs])
    alone = sum(inference.score_ids(params, cfg, np.concatenate([[4], d, [4]]))[0]
                for d in docs[1:]) + inference.score_ids(params, cfg, text[:len(docs[0]) + 1])[0]
    for chunk in (256, 7, 1):                          # restarts at chunk boundaries too
        whole, _ = inference.score_ids(params, cfg, text, 1, chunk, reset_ids=[4])
        assert whole == pytest.approx(alone, rel=1e-12)


@pytest.mark.parametrize("cell,activation", CASES)
def test_restarts_match_torch_run_document_by_document(cell, activation):
    """PyTorch's nn.RNN/LSTM/GRU run on each stream's pieces between restarts, every piece
    after the first from a zero state: the same loss and gradients in float64."""
    torch = pytest.importorskip("torch")
    from test_torch_parity import to_torch
    rng = np.random.default_rng(4)
    cfg, params = _random_model(cell, activation, 2, rng, V=6, H=5, embed=3)
    T, B = 7, 3
    x = rng.integers(0, cfg.vocab_size, (T, B))
    y = rng.integers(0, cfg.vocab_size, (T, B))
    state = _random_state(cfg, B, rng)
    restart = _restart(T, B)
    _, grads = model.allocate(model.param_shapes(cfg), np.float64)
    nll, _, _ = model.loss_and_grads(params, cfg, x, y, state, grads,
                                     keep=resets.keep_mask(restart, np.float64))

    ref = to_torch(params, cfg, torch.float64)
    rows = [[None] * B for _ in range(T)]
    for b in range(B):
        starts = [0] + [t for t in range(1, T) if restart[t, b]] + [T]
        for t0, t1 in zip(starts[:-1], starts[1:]):
            fresh = t0 > 0 or restart[0, b]
            parts = [torch.zeros(cfg.layers, 1, cfg.hidden, dtype=torch.float64) if fresh else
                     torch.from_numpy(np.stack([s[i][b:b + 1] for s in state]))
                     for i in range(len(state[0]))]
            inputs = ref.embed(torch.from_numpy(x[t0:t1, b:b + 1]))
            hs, _ = ref.rnn(inputs, tuple(parts) if cell == "lstm" else parts[0])
            for t in range(t0, t1):
                rows[t][b] = hs[t - t0, 0]
    logits = ref.head(torch.stack([r for step in rows for r in step]))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y.reshape(-1)))
    loss.backward()
    assert abs(nll / y.size - loss.item()) <= 1e-10 * loss.item()
    for name, p in ref.named_parameters():
        theirs = p.grad.numpy()
        assert np.linalg.norm(grads[name] - theirs) <= 1e-8 * np.linalg.norm(theirs), name
