"""The bidirectional cloze model against PyTorch loaded with the same weights, as the README
tells a PyTorch user to load them: one layer is nn.GRU/LSTM/RNN(bidirectional=True) with the
one-step shift (position t reads the forward output at t - 1 and the backward one at t + 1);
several layers are two stacks, the second run on the flipped text. Skipped where PyTorch is
not installed (the optional `parity` extra)."""

import numpy as np
import pytest

from charlm.nn import bidirectional, model
from charlm.nn.model import ModelConfig

torch = pytest.importorskip("torch")
F = torch.nn.functional

CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
SOFTMAX = {"full": {}, "adaptive": {"softmax": "adaptive", "cutoffs": (4, 7), "div_value": 2.0}}
KINDS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def _setup(cell, activation, layers, embed=0, softmax="full", seed=0):
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(cell=cell, vocab_size=11, hidden=6, layers=layers, activation=activation,
                      embed=embed, bidirectional=True, **SOFTMAX[softmax])
    flat, params = model.init_params(cfg, rng, dtype=np.float64)
    flat[:] = rng.standard_normal(flat.shape) * 0.4
    return rng, cfg, params


def _tensors(params, names):
    return {k: torch.from_numpy(np.array(params[n])) for k, n in names.items()}


class Head(torch.nn.Module):
    """nn.Linear(2H, V), or nn.AdaptiveLogSoftmaxWithLoss(2H, V, ...) as `asm`."""

    def __init__(self, cfg, params):
        super().__init__()
        if cfg.softmax == "adaptive":
            self.asm = torch.nn.AdaptiveLogSoftmaxWithLoss(
                2 * cfg.hidden, cfg.vocab_size, list(cfg.cutoffs), cfg.div_value,
                dtype=torch.float64)
            owned = {f"asm.{k}": k for k in params if k.startswith(("head.", "tail."))}
        else:
            self.head = torch.nn.Linear(2 * cfg.hidden, cfg.vocab_size, dtype=torch.float64)
            owned = {"head.weight": "head.weight", "head.bias": "head.bias"}
        self.load_state_dict(_tensors(params, owned))

    def log_probs(self, rows):
        if hasattr(self, "asm"):
            return self.asm.log_prob(rows)
        return F.log_softmax(self.head(rows), dim=-1)


def _inputs(cfg, embed, ids):
    if embed is not None:
        return embed(ids)
    return F.one_hot(ids, cfg.vocab_size).to(torch.float64)


def _embedding(cfg, params):
    if not cfg.embed:
        return None
    embed = torch.nn.Embedding(cfg.vocab_size, cfg.embed, dtype=torch.float64)
    embed.load_state_dict(_tensors(params, {"weight": "embed.weight"}))
    return embed


def _stack(cfg, params, suffix):
    extra = {"nonlinearity": cfg.activation} if cfg.cell == "rnn" else {}
    rnn = KINDS[cfg.cell](cfg.embed or cfg.vocab_size, cfg.hidden, cfg.layers,
                          dtype=torch.float64, **extra)
    names = {k: f"rnn.{k}{suffix}" for k in rnn.state_dict()}
    rnn.load_state_dict(_tensors(params, names))
    return rnn


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("softmax", SOFTMAX)
@pytest.mark.parametrize("embed", [0, 4])
def test_one_layer_is_pytorchs_bidirectional_module_with_the_shift(cell, activation, softmax,
                                                                   embed):
    _, cfg, params = _setup(cell, activation, 1, embed, softmax)
    ids = np.random.default_rng(5).integers(0, cfg.vocab_size, (2, 13))      # two texts
    ours = np.concatenate([lp for _, lp in bidirectional.cloze_log_probs(
        params, cfg, ids, chunk_len=5)])                                      # (N, B, V)
    extra = {"nonlinearity": cfg.activation} if cell == "rnn" else {}
    rnn = KINDS[cell](cfg.embed or cfg.vocab_size, cfg.hidden, 1, bidirectional=True,
                      dtype=torch.float64, **extra)
    rnn.load_state_dict(_tensors(params, {k: f"rnn.{k}" for k in rnn.state_dict()}))
    H = cfg.hidden
    with torch.no_grad():
        out, _ = rnn(_inputs(cfg, _embedding(cfg, params), torch.from_numpy(ids.T)))
        zero = torch.zeros(1, 2, H, dtype=torch.float64)
        left = torch.cat([zero, out[:-1, :, :H]])          # h_{t-1}: shifted one step right
        right = torch.cat([out[1:, :, H:], zero])          # g_{t+1}: shifted one step left
        theirs = Head(cfg, params).log_probs(torch.cat([left, right], -1).reshape(-1, 2 * H))
    np.testing.assert_allclose(ours.reshape(-1, cfg.vocab_size), theirs.numpy(), atol=1e-10)


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("softmax", SOFTMAX)
@pytest.mark.parametrize("embed", [0, 4])
def test_training_loss_and_every_gradient(cell, activation, layers, softmax, embed):
    """One training chunk: the forward stack from a carried state, the reversed one from zero
    at the chunk's right end; the loss, every gradient and the initial state's gradient."""
    rng, cfg, params = _setup(cell, activation, layers, embed, softmax, seed=layers)
    T, B, H = 6, 3, cfg.hidden
    x, y = rng.integers(0, cfg.vocab_size, (T, B)), rng.integers(0, cfg.vocab_size, (T, B))
    state = [tuple(rng.standard_normal((B, H)) * 0.5 for _ in s)
             for s in model.initial_state(cfg, B, np.float64)]
    _, grads = model.allocate(model.param_shapes(cfg), np.float64)
    nll, final, dstate0 = bidirectional.loss_and_grads(params, cfg, x, y, state, grads)

    embed_mod, head = _embedding(cfg, params), Head(cfg, params)
    fwd, rev = _stack(cfg, params, ""), _stack(cfg, params, "_reverse")
    h0 = [torch.from_numpy(np.stack([s[p] for s in state])).requires_grad_()
          for p in range(len(state[0]))]
    hs, _ = fwd(_inputs(cfg, embed_mod, torch.from_numpy(x)),
                tuple(h0) if cell == "lstm" else h0[0])
    gs, _ = rev(_inputs(cfg, embed_mod, torch.from_numpy(y).flip(0)))
    right = torch.cat([gs[:T - 1].flip(0), torch.zeros(1, B, H, dtype=torch.float64)])
    rows = torch.cat([hs, right], -1).reshape(-1, 2 * H)
    targets = torch.from_numpy(y).reshape(-1)
    loss = F.nll_loss(head.log_probs(rows), targets)
    loss.backward()
    np.testing.assert_allclose(nll / y.size, loss.item(), rtol=1e-10)
    theirs = {f"rnn.{k}": p.grad for k, p in fwd.named_parameters()}
    theirs |= {f"rnn.{k}_reverse": p.grad for k, p in rev.named_parameters()}
    theirs |= {k.removeprefix("asm."): p.grad for k, p in head.named_parameters()}
    if embed_mod is not None:
        theirs["embed.weight"] = embed_mod.weight.grad
    assert set(theirs) == set(grads)
    for name, grad in theirs.items():
        np.testing.assert_allclose(grads[name], grad.numpy(), atol=1e-10, err_msg=name)
    for p, part in enumerate(h0):
        np.testing.assert_allclose(np.stack([d[p] for d in dstate0]), part.grad.numpy(),
                                   atol=1e-10)
