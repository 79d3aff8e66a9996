"""Forward outputs, loss and every gradient equal torch.nn.RNN/LSTM/GRU + nn.Linear (or
nn.AdaptiveLogSoftmaxWithLoss) loaded with the same weights. Skipped where PyTorch is not
installed (it is the optional `parity` extra)."""

import numpy as np
import pytest

from charlm.nn import inference, model, output
from charlm.nn.model import ModelConfig

torch = pytest.importorskip("torch")

CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
# at V = 11, H = 8: a shortlist of 4, clusters of 3 and 4 ids with inner sizes 4 and 2
SOFTMAX = {"full": {}, "adaptive": {"softmax": "adaptive", "cutoffs": (4, 7), "div_value": 2.0}}


class TorchLM(torch.nn.Module):
    """The PyTorch model a user would write: one-hot input or nn.Embedding, nn.RNN/LSTM/GRU,
    nn.Linear or nn.AdaptiveLogSoftmaxWithLoss (attribute `asm`, loaded from charlm's head.*
    and tail.* as the README says)."""

    def __init__(self, cfg, dtype):
        super().__init__()
        kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
        extra = {"nonlinearity": cfg.activation} if cfg.cell == "rnn" else {}
        self.vocab_size = cfg.vocab_size
        if cfg.embed:
            self.embed = torch.nn.Embedding(cfg.vocab_size, cfg.embed, dtype=dtype)
        self.rnn = kinds[cfg.cell](cfg.embed or cfg.vocab_size, cfg.hidden, cfg.layers,
                                   dtype=dtype, **extra)
        if cfg.softmax == "adaptive":
            self.asm = torch.nn.AdaptiveLogSoftmaxWithLoss(
                cfg.hidden, cfg.vocab_size, list(cfg.cutoffs), cfg.div_value, dtype=dtype)
        else:
            self.head = torch.nn.Linear(cfg.hidden, cfg.vocab_size, dtype=dtype)

    def forward(self, x, state):
        """(T*B, V) log-probabilities (the full softmax's logits) and the final state."""
        if hasattr(self, "embed"):
            inputs = self.embed(x)
        else:
            inputs = torch.nn.functional.one_hot(x, self.vocab_size).to(self.rnn.weight_hh_l0.dtype)
        hs, state = self.rnn(inputs, state)                   # time-major (T, B, H)
        rows = hs.reshape(-1, hs.shape[-1])
        if hasattr(self, "asm"):
            return self.asm.log_prob(rows), state
        return self.head(rows), state

    def mean_nll(self, x, y, state):
        """The mean nats of y (T, B): nn.AdaptiveLogSoftmaxWithLoss's own loss, else
        F.cross_entropy."""
        if not hasattr(self, "asm"):
            return torch.nn.functional.cross_entropy(self(x, state)[0], y.reshape(-1))
        inputs = self.embed(x) if hasattr(self, "embed") else torch.nn.functional.one_hot(
            x, self.vocab_size).to(self.rnn.weight_hh_l0.dtype)
        hs, _ = self.rnn(inputs, state)
        return self.asm(hs.reshape(-1, hs.shape[-1]), y.reshape(-1)).loss


def to_torch(params, cfg, dtype):
    ref = TorchLM(cfg, dtype)
    adaptive = cfg.softmax == "adaptive"
    ref.load_state_dict({(f"asm.{k}" if adaptive and k.startswith(("head.", "tail.")) else k):
                         torch.from_numpy(np.array(v)) for k, v in params.items()})
    return ref


def torch_state(cfg, state):
    hs = torch.from_numpy(np.stack([s[0] for s in state]))
    if cfg.cell == "lstm":
        return hs, torch.from_numpy(np.stack([s[1] for s in state]))
    return hs


def _setup(cell, activation, dtype, layers=2, seed=0, B=3, embed=0, softmax="full"):
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(cell=cell, vocab_size=11, hidden=8, layers=layers, activation=activation,
                      embed=embed, **SOFTMAX[softmax])
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
@pytest.mark.parametrize("softmax", SOFTMAX)
def test_forward_loss_and_gradients_match_torch_float64(cell, activation, B, embed, softmax):
    cfg, flat, params, x, y, state = _setup(cell, activation, np.float64, B=B, embed=embed,
                                            softmax=softmax)
    top, final, _ = model.forward(params, cfg, x, state)
    log_probs = output.log_probs(params, cfg, top).copy()
    _, grads = model.allocate(model.param_shapes(cfg), np.float64)
    nll, _, _ = model.loss_and_grads(params, cfg, x, y, state, grads)

    ref = to_torch(params, cfg, torch.float64)
    t_log_probs, t_final = ref(torch.from_numpy(x), torch_state(cfg, state))
    t_loss = ref.mean_nll(torch.from_numpy(x), torch.from_numpy(y), torch_state(cfg, state))
    t_loss.backward()

    def close(ours, theirs):
        theirs = theirs.detach().numpy()
        return np.linalg.norm(ours - theirs) <= 1e-8 * max(np.linalg.norm(theirs), 1e-30)

    assert close(log_probs, t_log_probs)
    assert abs(nll / y.size - t_loss.item()) <= 1e-8 * abs(t_loss.item())
    t_h = t_final[0] if cfg.cell == "lstm" else t_final
    assert close(np.stack([s[0] for s in final]), t_h)
    if cfg.cell == "lstm":
        assert close(np.stack([s[1] for s in final]), t_final[1])
    for name, p in ref.named_parameters():   # a cluster no target reached: torch has no grad
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        assert close(grads[name.removeprefix("asm.")], grad), name


@pytest.mark.parametrize("cell,activation", CASES)
@pytest.mark.parametrize("embed", [0, 5])
@pytest.mark.parametrize("softmax", SOFTMAX)
def test_float32_loss_matches_torch(cell, activation, embed, softmax):
    cfg, flat, params, x, y, state = _setup(cell, activation, np.float32, seed=1, embed=embed,
                                            softmax=softmax)
    top, _, _ = model.forward(params, cfg, x, state)
    nll = -output.target_log_probs(params, cfg, top, y.reshape(-1)).sum()
    ref = to_torch(params, cfg, torch.float32)
    with torch.no_grad():
        t_loss = ref.mean_nll(torch.from_numpy(x), torch.from_numpy(y),
                              torch_state(cfg, state)).item()
    assert abs(nll / y.size - t_loss) <= 1e-5 * abs(t_loss)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("embed", [0, 5])
@pytest.mark.parametrize("softmax", SOFTMAX)
def test_checkpoint_params_give_the_same_perplexity_in_torch(cell, embed, softmax, tmp_path):
    """A charlm checkpoint's params/ arrays loaded into torch score a text identically."""
    from charlm.data.vocab import Vocab
    from charlm.io import checkpoint

    rng = np.random.default_rng(2)
    cfg, flat, params, _, _, _ = _setup(cell, "tanh", np.float32, seed=2, embed=embed,
                                        softmax=softmax)
    vocab = Vocab(list(range(97, 97 + cfg.vocab_size)))
    config = {"model": cfg.to_dict(), "train": {"optimizer": "sgd", "batch_size": 1},
              "progress": {}, "data": {}}
    path = tmp_path / "m.npz"
    checkpoint.save_neural(path, config, params, vocab, {}, model.initial_state(cfg, 1))
    ckpt = checkpoint.load(path)
    # older charlm reads plain models
    assert ckpt.format_version == (3 if softmax == "adaptive" else 2 if embed else 1)
    loaded = {k[len("params/"):]: v for k, v in ckpt.arrays.items() if k.startswith("params/")}
    ids = rng.integers(0, cfg.vocab_size, 500)
    nll, count = inference.score_ids(loaded, cfg, ids, streams=1)

    ref = to_torch(loaded, cfg, torch.float32)
    layers_state = model.initial_state(cfg, 1)
    with torch.no_grad():
        x = torch.from_numpy(ids[:-1].reshape(-1, 1).astype(np.int64))
        t_log_probs, _ = ref(x, torch_state(cfg, layers_state))
        t_nll = torch.nn.functional.cross_entropy(
            t_log_probs, torch.from_numpy(ids[1:].astype(np.int64)), reduction="sum").item()
    assert count == 499
    assert abs(nll - t_nll) <= 1e-5 * t_nll
