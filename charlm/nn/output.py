"""The output layer: the top recurrent layer's outputs -> a distribution over the vocabulary.

Dimensions: N = T * B rows, H hidden size, V vocabulary.
Two kinds, chosen by ModelConfig.softmax:
    full       nn.Linear(H, V) and a softmax: head.weight (V, H), head.bias (V,)
    adaptive   nn.AdaptiveLogSoftmaxWithLoss(H, V, cutoffs, div_value) (charlm.nn.adaptive),
               whose names head.weight and tail.{i}.{0,1}.weight are kept as they are
H is what the output layer reads per character (cfg.head_inputs: 2H for the bidirectional
model's [h; g]). Every function takes the rows as `top` (H, N), the layout the model's layers
produce. Training (loss, backward) and scoring (target_log_probs) never form an (N, V) array
with the adaptive softmax; log_probs gives the whole distribution, for sampling one row at a
time.
"""

import numpy as np

from charlm.names import SOFTMAXES
from charlm.nn import adaptive
from charlm.nn import loss as softmax_loss
from charlm.nn.workspace import FRESH

FULL, ADAPTIVE = SOFTMAXES


def param_shapes(cfg):
    """Name -> shape of the output layer's parameters."""
    if cfg.softmax == ADAPTIVE:
        return adaptive.param_shapes(cfg.vocab_size, cfg.head_inputs, cfg.cutoffs,
                                     cfg.div_value)
    return {"head.weight": (cfg.vocab_size, cfg.head_inputs), "head.bias": (cfg.vocab_size,)}


def init(params, cfg, rng):
    """Each matrix uniform in +-bound. The adaptive softmax: bound 1/sqrt(fan-in), as
    nn.AdaptiveLogSoftmaxWithLoss's nn.Linear layers start. Xavier's bound sqrt(6 / (n + d))
    would make a cluster's output matrix tail.{i}.1 (n, d), with an inner size d of 2 to 32
    and n in the hundreds or thousands, some ten times smaller than 1/sqrt(d), and such a
    cluster learns slowly: on 400 Tang poems (2x128 GRU, 24 passes) the best validation was
    4.973 nats with Xavier tails and 4.894 with these. The full softmax: the larger of
    Xavier's bound and 1/sqrt(H). Xavier's shrinks as V grows: on the same poems (V 2,842)
    with a full softmax it gave 5.233 and 1/sqrt(H) 4.908; on tiny Shakespeare (V 65) Xavier
    is the larger and stays (600 steps of a 2x128 GRU: 1.796 with it, 1.885 with 1/sqrt(H)).
    Biases start at zero."""
    for name, shape in param_shapes(cfg).items():
        if len(shape) != 2:
            continue
        bound = 1.0 / np.sqrt(max(shape[1], 1))            # a (n, 0) tail holds nothing
        if cfg.softmax != ADAPTIVE:
            bound = max(bound, np.sqrt(6.0 / (shape[0] + shape[1])))
        params[name][...] = rng.uniform(-bound, bound, shape)


def loss(params, cfg, top, targets, ws=FRESH, log_probs=None):
    """Summed nats (float64) of targets (N,) and the cache backward needs (the gradient of
    the mean nats, prepared here for the full softmax). log_probs: None, or an (N,) float64
    array to receive target_log_probs' numbers, bit for bit (dynamic evaluation scores and
    learns from one forward)."""
    if cfg.softmax == ADAPTIVE:
        nll_sum, cache = adaptive.loss_forward(params, top.T, targets, cfg.cutoffs, log_probs)
        return nll_sum, (top, cache)
    nll_sum, dlogits = softmax_loss.cross_entropy(_logits(params, top, ws), targets,
                                                  log_probs=log_probs)
    return nll_sum, (top, dlogits)


def backward(params, cfg, cache, grads, shape, ws=FRESH):
    """Writes the output layer's gradients (of the mean nats) into grads; returns the gradient
    of the top layer's outputs, (T, H, B) for shape (T, B)."""
    top, inner = cache
    T, B = shape
    H, N = top.shape
    if cfg.softmax == ADAPTIVE:
        d_rows = adaptive.loss_backward(params, inner, grads, scale=1.0 / N)      # (N, H)
        out = ws.empty("dhs", (T, H, B), d_rows.dtype)
        np.copyto(out, d_rows.reshape(T, B, H).transpose(0, 2, 1))
        return out
    dlogits = inner                                                                # (N, V)
    np.matmul(dlogits.T, top.T, out=grads["head.weight"])
    np.sum(dlogits, axis=0, out=grads["head.bias"])
    V = dlogits.shape[1]
    return np.matmul(params["head.weight"].T, dlogits.reshape(T, B, V).transpose(0, 2, 1),
                     out=ws.empty("dhs", (T, H, B), dlogits.dtype))


def target_log_probs(params, cfg, top, targets, ws=FRESH):
    """(N,) float64 log p(target) of each row: what scoring a text needs."""
    if cfg.softmax == ADAPTIVE:
        return adaptive.target_log_probs(params, top.T, targets, cfg.cutoffs)
    return softmax_loss.token_log_probs(_logits(params, top, ws), targets)


def log_probs(params, cfg, top, ws=FRESH):
    """(N, V) scores whose softmax is the model's distribution: the logits of the full softmax,
    the log-probabilities of the adaptive one."""
    if cfg.softmax == ADAPTIVE:
        return adaptive.log_prob(params, top.T, cfg.cutoffs, cfg.vocab_size)
    return _logits(params, top, ws)


def _logits(params, top, ws):
    """(N, V) logits of the full softmax's rows top (H, N)."""
    w, b = params["head.weight"], params["head.bias"]
    logits = np.matmul(top.T, w.T, out=ws.empty("logits", (top.shape[1], w.shape[0]), top.dtype))
    logits += b
    return logits
