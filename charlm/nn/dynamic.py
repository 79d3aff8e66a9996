"""Dynamic evaluation (Krause et al. 2018): the model keeps learning from the text it scores.

Dimensions: L segment length, N characters, P parameters (all of them, flat).

The text is cut into segments of L characters. Each segment is first scored with the current
weights, then the weights take one step on it; one training forward serves both, since at one
stream it gives the numbers of infer, the code of every static score, bit for bit (the cells'
one-stream paths, charlm.nn.cells.*_stream):

    theta += lambda * decrate * (theta_0 - theta) - eta * g / (ms + eps)

g is the gradient of the segment's mean nats (charlm.nn.model.loss_and_grads), theta_0 the
trained weights, ms (P,) the root mean square of training-data gradients (gradient_rms),
at least RMS_FLOOR of its mean, decrate = ms / mean(ms) clipped at 1 / lambda (a larger
decay would overshoot theta_0). So a segment's characters are scored before any step computed
from them: each prediction uses only the text before it. eta = 0 changes no weight (theta_0 -
theta stays exactly 0), so it scores exactly as the static model when L is the static chunk
(charlm.nn.inference.score_ids).
"""

import math

import numpy as np

from charlm.nn import model
from charlm.nn.workspace import Workspace

EPSILON = 2e-5          # Krause et al.'s epsilon, in units of the gradient RMS
# A weight whose gradient the training windows never reached (a rare character's embedding
# row or output row) has an RMS of 0: with epsilon alone below it, its step was 50,000 times
# the typical one, and on Chinese manual pages (1,937 characters, many rare) the adapted model
# diverged. Its RMS counts as this share of the mean instead. Measured on 40,000 characters of
# those pages (2x192 GRU, static 2.799 nats): floor 0.001 diverged (29.99), 0.01 2.385, 0.1
# 2.390; on tiny Shakespeare (2x128 GRU, validation) 0.1 cost 0.0007 (1.5198 -> 1.5205).
RMS_FLOOR = 0.1


def gradient_rms(params, cfg, windows, count):
    """(P,) float32 sqrt of the mean squared gradient of the mean nats over `count` training
    windows [(x, y), each (T, B)], the state carried from one to the next as in training."""
    flat_grads, grads = model.allocate(model.param_shapes(cfg))
    total = np.zeros_like(flat_grads, dtype=np.float64)
    state = None
    for k in range(count):
        x, y = windows[k]
        if state is None:
            state = model.initial_state(cfg, x.shape[1], flat_grads.dtype)
        _, state, _ = model.loss_and_grads(params, cfg, x, y, state, grads)
        total += np.square(flat_grads, dtype=np.float64)
    return np.sqrt(total / max(count, 1)).astype(np.float32)


class Adapter:
    """One stream's copy of the weights, adapted segment by segment."""

    def __init__(self, params, cfg, rms, lr, decay):
        shapes = model.param_shapes(cfg)
        self.cfg = cfg
        self.flat, self.params = model.allocate(shapes)
        for name, value in params.items():
            self.params[name][...] = value
        self.trained = self.flat.copy()                                    # theta_0
        self.grad_flat, self.grads = model.allocate(shapes)
        rms = np.asarray(rms, np.float32)
        mean = max(float(rms.mean()), 1e-30)
        rms = np.maximum(rms, RMS_FLOOR * mean)
        # per weight: the pull toward theta_0 and the step size
        self.pull = np.minimum(decay * rms / mean, 1.0).astype(np.float32)
        self.step_size = (lr / (rms + EPSILON * mean)).astype(np.float32)
        self.scratch = np.empty_like(self.flat)
        self.workspace = Workspace()        # the step's large arrays, reused (5% measured)

    def segment(self, ids, state):
        """Score ids (L + 1,) from state (L predictions), then step on them.
        Returns ((L,) float64 log-probabilities, the state after the segment)."""
        x, y = ids[:-1, None], ids[1:, None]                               # (L, 1)
        log_probs = np.empty(len(y), np.float64)
        # at one stream the training forward is infer's arithmetic, bit for bit (the cells'
        # one-stream paths), so the scores come from the forward the step learns from
        _, new_state, _ = model.loss_and_grads(self.params, self.cfg, x, y, state, self.grads,
                                               ws=self.workspace, log_probs=log_probs)
        if np.isfinite(self.grad_flat.sum()):       # a non-finite gradient takes no step
            self._step()
        return log_probs, new_state

    def _step(self):
        s = self.scratch
        np.subtract(self.trained, self.flat, out=s)
        s *= self.pull
        self.flat += s
        np.multiply(self.grad_flat, self.step_size, out=s)
        self.flat -= s


def adapted_log_probs(params, cfg, ids, rms, lr, decay, seg_len, streams=1):
    """(N - 1,) float64 log p of each prediction of ids (N,) under dynamic evaluation; with S
    streams the text is cut as score_ids cuts it and each piece adapts its own copy."""
    n_pred = len(ids) - 1
    out = np.zeros(max(n_pred, 0), np.float64)
    if n_pred <= 0:
        return out
    streams = max(1, min(streams, n_pred))
    piece = math.ceil(n_pred / streams)
    for start in range(0, n_pred, piece):
        stop = min(start + piece, n_pred)
        adapter = Adapter(params, cfg, rms, lr, decay)
        state = model.initial_state(cfg, 1, adapter.flat.dtype)
        for t0 in range(start, stop, seg_len):
            t1 = min(t0 + seg_len, stop)
            out[t0:t1], state = adapter.segment(ids[t0:t1 + 1], state)
    return out
