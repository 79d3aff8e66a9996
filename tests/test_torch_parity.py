"""Forward outputs, loss and every gradient equal torch.nn.RNN/LSTM/GRU + nn.Linear loaded with
the same weights. Skipped where PyTorch is not installed (it is the optional `parity` extra)."""

import numpy as np
import pytest

from charlm.nn import inference, loss, model
from charlm.nn.model import ModelConfig

torch = pytest.importorskip("torch")

CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


class TorchLM(torch.nn.Module):
    """The PyTorch model a user would write: one-hot input or nn.Embedding, nn.RNN/LSTM/GRU,
    nn.Linear."""

    def __init__(self, cfg, dtype):
        super().__init__()
        kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
        extra = {"nonlinearity": cfg.activation} if cfg.cell == "rnn" else {}
        self.vocab_size = cfg.vocab_size
        if cfg.embed:
            self.embed = torch.nn.Embedding(cfg.vocab_size, cfg.embed, dtype=dtype)
        self.rnn = kinds[cfg.cell](cfg.embed or cfg.vocab_size, cfg.hidden, cfg.layers,
                                   dtype=dtype, **extra)
        self.head = torch.nn.Linear(cfg.hidden, cfg.vocab_size, dtype=dtype)

    def forward(self, x, state):
        if hasattr(self, "embed"):
            inputs = self.embed(x)
        else:
            inputs = torch.nn.functional.one_hot(x, self.vocab_size).to(self.head.weight.dtype)
        hs, state = self.rnn(inputs, state)                   # time-major (T, B, H)
        return self.head(hs), state


def to_torch(params, cfg, dtype):
    ref = TorchLM(cfg, dtype)
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
    return ref


def torch_state(cfg, state):
    hs = torch.from_numpy(np.stack([s[0] for s in state]))
    if cfg.cell == "lstm":
        return hs, torch.from_numpy(np.stack([s[1] for s in state]))
    return hs


def _setup(cell, activation, dtype, layers=2, seed=0, B=3, embed=0):
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(cell=cell, vocab_size=11, hidden=8, layers=layers, activation=activation,
                      embed=embed)
    flat, params = model.init_params(cfg, rng, dtype=dtype)
    flat += (rng.standard_normal(flat.shape) * 0.1).astype(dtype)   # non-zero biases
    T = 7
    x = rng.integers(0, cfg.vocab_size, (T, B))
    y = rng.integers(0, cfg.vocab_size, (T, B))
    state = [tuple((rng.standard_normal((B, cfg.hidden)) * 0.5).astype(dtype) for _ in s)
             for s in model.initial_state(cfg, B, dtype)]
    return cfg, flat, params, x, y, state


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("B", [1, 3, 6])     # the layout paths differ by batch (see model.py)
@pytest.mark.parametrize("embed", [0, 5])    # one-hot input; nn.Embedding(V, 5)
def test_forward_loss_and_gradients_match_torch_float64(cell, activation, B, embed):
    cfg, flat, params, x, y, state = _setup(cell, activation, np.float64, B=B, embed=embed)
    logits, final, cache = model.forward(params, cfg, x, state)
    nll, dlogits = loss.cross_entropy(logits.copy(), y.reshape(-1))
    _, grads = model.allocate(model.param_shapes(cfg), np.float64)
    model.backward(params, cfg, dlogits, cache, grads)

    ref = to_torch(params, cfg, torch.float64)
    t_logits, t_final = ref(torch.from_numpy(x), torch_state(cfg, state))
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, cfg.vocab_size),
                                               torch.from_numpy(y).reshape(-1))
    t_loss.backward()

    def close(ours, theirs):
        theirs = theirs.detach().numpy()
        return np.linalg.norm(ours - theirs) <= 1e-8 * max(np.linalg.norm(theirs), 1e-30)

    assert close(logits, t_logits.reshape(-1, cfg.vocab_size))
    assert abs(nll / y.size - t_loss.item()) <= 1e-8 * abs(t_loss.item())
    t_h = t_final[0] if cfg.cell == "lstm" else t_final
    assert close(np.stack([s[0] for s in final]), t_h)
    if cfg.cell == "lstm":
        assert close(np.stack([s[1] for s in final]), t_final[1])
    for name, p in ref.named_parameters():
        assert close(grads[name], p.grad), name


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("embed", [0, 5])
def test_float32_loss_matches_torch(cell, activation, embed):
    cfg, flat, params, x, y, state = _setup(cell, activation, np.float32, seed=1, embed=embed)
    logits, _, _ = model.forward(params, cfg, x, state)
    nll, _ = loss.cross_entropy(logits, y.reshape(-1), want_grad=False)
    ref = to_torch(params, cfg, torch.float32)
    with torch.no_grad():
        t_logits, _ = ref(torch.from_numpy(x), torch_state(cfg, state))
        t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, cfg.vocab_size),
                                                   torch.from_numpy(y).reshape(-1)).item()
    assert abs(nll / y.size - t_loss) <= 1e-5 * abs(t_loss)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("embed", [0, 5])
def test_checkpoint_params_give_the_same_perplexity_in_torch(cell, embed, tmp_path):
    """A charlm checkpoint's params/ arrays loaded into torch score a text identically."""
    from charlm.data.vocab import Vocab
    from charlm.io import checkpoint

    rng = np.random.default_rng(2)
    cfg, flat, params, _, _, _ = _setup(cell, "tanh", np.float32, seed=2, embed=embed)
    vocab = Vocab(list(range(97, 97 + cfg.vocab_size)))
    config = {"model": cfg.to_dict(), "train": {"optimizer": "sgd", "batch_size": 1},
              "progress": {}, "data": {}}
    path = tmp_path / "m.npz"
    checkpoint.save_neural(path, config, params, vocab, {}, model.initial_state(cfg, 1))
    ckpt = checkpoint.load(path)
    assert ckpt.format_version == (2 if embed else 1)        # older charlm reads plain models
    loaded = {k[len("params/"):]: v for k, v in ckpt.arrays.items() if k.startswith("params/")}
    ids = rng.integers(0, cfg.vocab_size, 500)
    nll, count = inference.score_ids(loaded, cfg, ids, streams=1)

    ref = to_torch(loaded, cfg, torch.float32)
    layers_state = model.initial_state(cfg, 1)
    with torch.no_grad():
        x = torch.from_numpy(ids[:-1].reshape(-1, 1).astype(np.int64))
        t_logits, _ = ref(x, torch_state(cfg, layers_state))
        t_nll = torch.nn.functional.cross_entropy(
            t_logits.reshape(-1, cfg.vocab_size), torch.from_numpy(ids[1:].astype(np.int64)),
            reduction="sum").item()
    assert count == 499
    assert abs(nll - t_nll) <= 1e-5 * t_nll
