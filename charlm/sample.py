"""Autoregressive sampling: a single-step forward path with every weight folded and laid out
once, then draw, feed the character back in, repeat.

Dimensions: V vocabulary, H hidden size, G gates. Batch size is 1, so every array is a vector.
"""

import numpy as np

from charlm.cells import CELLS, GATES


class Stepper:
    """Runs the model one character at a time; the state lives in preallocated vectors."""

    def __init__(self, params, cfg):
        self.cfg = cfg
        G, H = GATES[cfg.cell], cfg.hidden
        dtype = params["head.weight"].dtype
        cell = CELLS[cfg.cell]
        # the same folding as the model: biases outside products joined, sigmoid rows halved
        self.scale = cell.gate_scale(H, dtype)                # (G*H,)
        # Above layer 0, the RNN and the LSTM take W_ih x + W_hh h as one product of the
        # stacked (2H, G*H) weights with [h below, h], two neighbours in self.hidden: one call
        # instead of two products and an add. The GRU's reset gate needs W_hn h on its own.
        self.stacked = cfg.cell != "gru"
        # w_step[k], the product taken every step: W_hh^T (H, G*H), or [W_ih^T; W_hh^T] stacked
        self.tables, self.w_ih, self.w_step, self.b_hn = [], [], [], []
        for k in range(cfg.layers):
            w_ih, w_hh = params[f"rnn.weight_ih_l{k}"], params[f"rnn.weight_hh_l{k}"]
            b_ih, b_hh = params[f"rnn.bias_ih_l{k}"], params[f"rnn.bias_hh_l{k}"]
            if cfg.cell == "gru":
                self.b_hn.append(b_hh[2 * H:].copy())        # b_hn stays inside the reset product
            w_hh_t = w_hh.T * self.scale                                   # (H, G*H)
            if k == 0:
                self.tables.append(cell.fold_input(w_ih.T + b_ih, b_hh))     # (V, G*H)
                self.w_step.append(np.ascontiguousarray(w_hh_t))
                continue
            self.tables.append(cell.fold_input(b_ih.copy(), b_hh))
            if self.stacked:
                self.w_step.append(np.concatenate([w_ih.T * self.scale, w_hh_t]))  # (2H, G*H)
            else:
                self.w_ih.append(np.ascontiguousarray(w_ih.T * self.scale))    # (H, G*H)
                self.w_step.append(np.ascontiguousarray(w_hh_t))
        self.head_w = np.ascontiguousarray(params["head.weight"].T)   # (H, V)
        self.head_b = params["head.bias"].copy()
        self.shift = (1 - self.scale) if cfg.cell != "rnn" else None
        self.hidden = np.zeros(cfg.layers * H, dtype)                 # every layer's h, in order
        self.h = [self.hidden[k * H:(k + 1) * H] for k in range(cfg.layers)]
        self.c = [np.zeros(H, dtype) for _ in range(cfg.layers)]
        self.a = np.empty(G * H, dtype)
        self.tmp = np.empty(H, dtype)
        self.logits = np.empty(cfg.vocab_size, dtype)

    def reset(self):
        self.hidden[:] = 0
        for c in self.c:
            c[:] = 0

    def step(self, char_id):
        """Feed one id; returns the logits (V,) for the next character (a reused buffer)."""
        cfg, H, a = self.cfg, self.cfg.hidden, self.a
        for k in range(cfg.layers):
            h = self.h[k]
            if k == 0:
                np.matmul(h, self.w_step[0], out=a)
                xs = self.tables[0][char_id]
            elif self.stacked:
                np.matmul(self.hidden[(k - 1) * H:(k + 1) * H], self.w_step[k], out=a)
                xs = self.tables[k]                           # the folded biases
            else:
                np.matmul(h, self.w_step[k], out=a)
                xs = self.h[k - 1] @ self.w_ih[k - 1]
                xs += self.tables[k]
            if cfg.cell == "rnn":
                a += xs
                if cfg.activation == "tanh":              # written straight into h
                    np.tanh(a, out=h)
                else:
                    np.maximum(a, 0, out=h)
            elif cfg.cell == "lstm":
                c = self.c[k]
                a += xs
                np.tanh(a, out=a)
                a *= self.scale
                a += self.shift
                c *= a[H:2 * H]
                np.multiply(a[:H], a[2 * H:3 * H], out=self.tmp)
                c += self.tmp
                np.tanh(c, out=h)
                h *= a[3 * H:]
            else:
                rz = a[:2 * H]
                rz += xs[:2 * H]
                np.tanh(rz, out=rz)
                rz *= 0.5
                rz += 0.5
                n = a[2 * H:]
                n += self.b_hn[k]
                n *= rz[:H]
                n += xs[2 * H:]
                np.tanh(n, out=n)
                h -= n                                       # h' = n + z * (h - n)
                h *= rz[H:]
                h += n
        np.matmul(self.h[-1], self.head_w, out=self.logits)
        self.logits += self.head_b
        return self.logits


def draw(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    """One id from softmax(logits / temperature), optionally restricted to the top k ids or the
    smallest set whose probability reaches top_p. temperature 0 is greedy (argmax)."""
    top = float(logits.max())                                # NaN if any logit is NaN
    if not np.isfinite(top):
        raise FloatingPointError("model produced non-finite probabilities")
    if temperature == 0:
        return int(np.argmax(logits))
    # Shift before dividing: z <= 0, so a tiny temperature (1e-300, 1e-320) can only overflow
    # to -inf, whose exp is 0, while the maximum stays exp(0) = 1: greedy in the limit.
    with np.errstate(over="ignore"):
        z = (logits.astype(np.float64) - top) / temperature
    p = np.exp(z)
    if top_k and top_k < len(p):
        cutoff = np.partition(p, -top_k)[-top_k]
        p[p < cutoff] = 0
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cumulative = np.cumsum(p[order])
        keep = np.searchsorted(cumulative, top_p * cumulative[-1]) + 1
        p[order[keep:]] = 0
    cdf = np.cumsum(p)
    if not np.isfinite(cdf[-1]) or cdf[-1] <= 0:
        raise FloatingPointError("model produced non-finite probabilities")
    return int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))


def generate(stepper, prime_ids, length, rng, temperature=1.0, top_k=0, top_p=1.0):
    """Yields `length` ids, each fed back in as the next input. prime_ids must be non-empty."""
    for char_id in prime_ids[:-1]:
        stepper.step(char_id)
    logits = stepper.step(prime_ids[-1])
    for produced in range(1, length + 1):
        next_id = draw(logits, rng, temperature, top_k, top_p)
        yield next_id
        if produced < length:                     # the last character is never fed back
            logits = stepper.step(next_id)
