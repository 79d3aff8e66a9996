"""The PyTorch side of benchmarks/bench.py: the same jobs as charlm, written as a PyTorch user
would write them (one-hot input, nn.RNN/GRU/LSTM + nn.Linear, cross-entropy, Adam, global-norm
clipping, stateful truncated BPTT with detach). Imported only where torch is installed.

Dimensions: T time steps, B batch, V vocabulary, H hidden size, S scoring streams.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def recurrent(cfg, input_size, **options):
    """nn.RNN/LSTM/GRU of cfg's cell, size and layers reading input_size features."""
    kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    if cfg.cell == "rnn":
        options["nonlinearity"] = cfg.activation
    return kinds[cfg.cell](input_size, cfg.hidden, cfg.layers, **options)


class TorchLM(torch.nn.Module):
    """One-hot input -> nn.RNN/LSTM/GRU (`rnn`) -> nn.Linear (`head`); charlm's names."""

    def __init__(self, cfg):
        super().__init__()
        self.vocab_size = cfg.vocab_size
        self.rnn = recurrent(cfg, cfg.vocab_size)
        self.head = torch.nn.Linear(cfg.hidden, cfg.vocab_size)

    def forward(self, x, state=None):
        """x: (T, B) int64 ids, time-major. Returns logits (T, B, V) and the new state."""
        onehot = F.one_hot(x, self.vocab_size).to(self.head.weight.dtype)
        hs, state = self.rnn(onehot, state)
        return self.head(hs), state

    def loss(self, x, y, state=None):
        """Mean cross-entropy of y (T, B) given x, and the new state."""
        logits, state = self(x, state)
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), y.reshape(-1)), state


def from_params(params, cfg):
    """A TorchLM holding copies of charlm's float32 parameters (state_dict names match)."""
    ref = TorchLM(cfg)
    ref.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32))
                         for k, v in params.items()})
    return ref


def zero_state(cfg, batch):
    h = torch.zeros(cfg.layers, batch, cfg.hidden)
    return (h, torch.zeros_like(h)) if cfg.cell == "lstm" else h


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class TorchTrainer:
    """Stateful TBPTT over the same B streams and windows as charlm.train.trainer.Trainer, for
    a model with loss(x, y, state) -> (mean loss, new state)."""

    def __init__(self, model, cfg, train_ids, batch_size, seq_len, lr=2e-3, clip_norm=5.0):
        self.cfg, self.B, self.T, self.clip_norm = cfg, batch_size, seq_len, clip_norm
        self.model = model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.ids = torch.from_numpy(np.asarray(train_ids).astype(np.int64))
        stream_len = (len(train_ids) - 1) // batch_size
        self.windows = stream_len // seq_len
        base = np.arange(batch_size)[None, :] * stream_len + np.arange(seq_len)[:, None]
        self.base = torch.from_numpy(base.astype(np.int64))             # (T, B)
        self.window = 0
        self.state = zero_state(cfg, batch_size)

    def train_step(self):
        """One step: batch gather, forward, loss, backward, clip, Adam; returns the loss."""
        idx = self.base + self.window * self.T
        loss, state = self.model.loss(self.ids[idx], self.ids[idx + 1], self.state)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.opt.step()
        self.state = detach(state)
        self.window = (self.window + 1) % self.windows
        return loss.item()


@torch.no_grad()
def sample(model, prime_id, length, temperature=1.0):
    """`length` ids at batch 1, each fed back in: (1, 1) input, softmax, multinomial."""
    x = torch.tensor([[prime_id]], dtype=torch.int64)
    state = None
    out = []
    for _ in range(length):
        logits, state = model(x, state)
        probs = torch.softmax(logits.view(-1) / temperature, dim=0)
        nxt = torch.multinomial(probs, 1)
        out.append(int(nxt))
        x = nxt.view(1, 1)
    return out


@torch.no_grad()
def score_ids(model, cfg, ids, streams=1, chunk_len=256):
    """Summed nats and predictions, the definition of charlm.nn.inference.score_ids: the N - 1
    predictions cut into S contiguous pieces, each from the zero state, state carried over
    chunks of chunk_len steps (one module call per chunk)."""
    n_pred = len(ids) - 1
    if n_pred <= 0:
        return 0.0, 0
    ids_t = torch.from_numpy(np.asarray(ids).astype(np.int64))
    streams = max(1, min(streams, n_pred))
    piece = math.ceil(n_pred / streams)
    starts = torch.arange(streams) * piece                             # (S,)
    state = zero_state(cfg, streams)
    total = 0.0
    for t0 in range(0, piece, chunk_len):
        pos = starts[None, :] + torch.arange(t0, min(t0 + chunk_len, piece))[:, None]  # (T, S)
        valid = pos < n_pred
        pos = pos.clamp(max=n_pred - 1)
        x, y = ids_t[pos], ids_t[pos + 1]
        logits, state = model(x, state)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        total -= float(logp[valid].sum(dtype=torch.float64))
    return total, n_pred


class TorchLargeVocabLM(torch.nn.Module):
    """The model a Chinese char-RNN tutorial writes: nn.Embedding(V, E) -> nn.GRU/LSTM/RNN with
    dropout between layers -> dropout -> nn.Linear(H, V) (full) or the head and tails of
    nn.AdaptiveLogSoftmaxWithLoss(head_bias=False) under charlm's top-level names."""

    def __init__(self, cfg, dropout=0.0, softmax="full", cutoffs=(), div_value=4.0):
        super().__init__()
        V, H = cfg.vocab_size, cfg.hidden
        self.V, self.H, self.softmax = V, H, softmax
        self.embed = torch.nn.Embedding(V, cfg.embed)
        self.rnn = recurrent(cfg, cfg.embed, dropout=dropout)
        self.drop = torch.nn.Dropout(dropout)
        if softmax == "adaptive":
            asm = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, list(cutoffs), div_value)
            self.head, self.tail = asm.head, asm.tail         # charlm's names: head.*, tail.*
            object.__setattr__(self, "asm", asm)             # not a second copy in state_dict
        else:
            self.head = torch.nn.Linear(H, V)

    def rows(self, x, state=None):
        """x (T, B) ids -> the top layer's rows (T*B, H) after dropout, and the new state."""
        hs, state = self.rnn(self.embed(x), state)
        return self.drop(hs).reshape(-1, self.H), state

    def loss(self, x, y, state=None):
        rows, state = self.rows(x, state)
        if self.softmax == "adaptive":
            return self.asm(rows, y.reshape(-1)).loss, state
        return F.cross_entropy(self.head(rows), y.reshape(-1)), state

    @torch.no_grad()
    def nll(self, x, y, state=None):
        """Summed nats of y given x, and the new state."""
        rows, state = self.rows(x, state)
        if self.softmax == "adaptive":
            logp = self.asm.log_prob(rows)
        else:
            logp = torch.log_softmax(self.head(rows), dim=-1)
        return -float(logp.gather(1, y.reshape(-1, 1)).sum(dtype=torch.float64)), state


class TorchLargeVocabTrainer(TorchTrainer):
    """TorchTrainer for TorchLargeVocabLM, which also scores validation like charlm."""

    @torch.no_grad()
    def validate(self, ids, chunk_len=256):
        """Mean nats/char of ids, one stream from the zero state (charlm's --streams 1)."""
        self.model.eval()
        ids_t = torch.from_numpy(np.asarray(ids).astype(np.int64))
        state, total = zero_state(self.cfg, 1), 0.0
        for t0 in range(0, len(ids) - 1, chunk_len):
            x = ids_t[t0:min(t0 + chunk_len, len(ids) - 1)].view(-1, 1)
            y = ids_t[t0 + 1:t0 + 1 + len(x)].view(-1, 1)
            nll, state = self.model.nll(x, y, state)
            total += nll
        self.model.train()
        return total / (len(ids) - 1)
