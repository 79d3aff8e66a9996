"""Vanilla RNN over a whole chunk: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

act is tanh (default) or relu, as torch.nn.RNN(nonlinearity=...). Feature-major arrays (see
charlm.nn.layout): xs (T, H, B), hs (T, H, B); state (h,), h (H, B).
"""

import numpy as np

from charlm.nn.cells import rnn_stream
from charlm.nn.init import orthogonal_blocks
from charlm.nn.layout import one_stream_order
from charlm.nn.resets import carried
from charlm.nn.workspace import FRESH

GATES = 1
STATE = ("h",)
USES_ACTIVATION = True
SEPARATE_RECURRENT = False


# ReLU's W_hh starts orthogonal at half scale. At full scale (every singular value 1) the
# first Adam steps push some above 1, and a state that is never squashed then grows without
# bound over a long text: validating 111,539 characters of tiny Shakespeare from the zero
# state overflowed to NaN at step 8 (1x64, batch 16 x 32, seed 3). Measured on it, 300
# steps, best of 30,000 validation characters, seeds 1-3, at 1x64 (batch 16 x 32):
# orthogonal x 1 2.434, exploded, 2.422; x 0.5 2.431, 2.428, 2.376; identity x 0.5 (Le et
# al. 2015) 2.438, 2.461, 2.464; identity x 0.9 2.669, 2.821, 2.689; at 2x128 (batch 32 x
# 64): orthogonal x 1 2.080, 2.047, 2.086; x 0.5 2.057, 2.038, 2.067.
RELU_RECURRENT_SCALE = 0.5


def init_recurrent(w_hh, b_ih, rng, activation="tanh"):
    """An orthogonal W_hh (at RELU_RECURRENT_SCALE for relu); the biases stay zero."""
    orthogonal_blocks(w_hh, rng)
    if activation == "relu":
        w_hh *= RELU_RECURRENT_SCALE


def gate_scale(H, dtype):
    """(H,) no pre-scale: the RNN has no sigmoid gate."""
    return np.ones(H, dtype)


def fold_input(xp, b_hh):
    """Both biases are outside the nonlinearity, so b_hh joins the projection (in place)."""
    xp += b_hh
    return xp


def fold_recurrent(w_hh, out=None):
    """W_hh as forward and infer use it: unchanged (no gate to pre-scale)."""
    return w_hh


def activate(a, activation):
    """tanh or relu, in place."""
    if activation == "tanh":
        np.tanh(a, out=a)
    else:
        np.maximum(a, 0, out=a)


def forward(xs, state, w_hh, b_hh=None, activation="tanh", ws=FRESH, keep=None):
    """xs: (T, H, B) folded input; state (h,), h (H, B); ws: where arrays come from; keep:
    None, or (T, 1, B) with 0 where the state entering a step restarts (charlm.nn.resets).

    Returns hs (T, H, B), the final state and the cache.
    """
    if xs.shape[2] == 1:
        return rnn_stream.forward(xs, state, one_stream_order(w_hh), w_hh, activate, activation,
                                  ws, keep)
    (h0,) = state
    hs = ws.empty("hs", xs.shape, xs.dtype)    # C order even when xs is a strided view
    prev = None if keep is None else ws.empty("prev_h", h0.shape, xs.dtype)
    h = h0
    for t in range(xs.shape[0]):
        if keep is not None:
            h = carried(h, keep[t], prev)
        a = hs[t]
        np.dot(w_hh, h, out=a)                 # only the recurrent matmul is per step
        a += xs[t]
        activate(a, activation)
        h = a
    return hs, (h.copy(),), (h0, hs, w_hh, activation, keep)


def infer(xs, state, w_hh, b_hh=None, activation="tanh", ws=FRESH, keep=None):
    """forward for scoring text: the cache is the outputs, so this is forward without it.

    At one stream the product is h @ w_hh.T on plain vectors, so the caller picks the GEMV
    kernel by the memory order it gives w_hh (charlm.nn.inference).
    """
    if xs.shape[2] == 1:
        return rnn_stream.infer(xs, state, w_hh, activate, activation, keep)
    hs, final, _ = forward(xs, state, w_hh, b_hh, activation, ws, keep)
    return hs, final


def backward(dhs, dstate, cache, ws=FRESH):
    """dhs: (T, H, B) gradient of every output; dstate: (dh,) into the final state.

    Returns the pre-activation gradient (T, H, B) twice (it is the gradient of both the input
    projection and of W_hh h + b_hh) and the gradient for the initial state.
    """
    if dhs.shape[2] == 1:
        return rnn_stream.backward(dhs, dstate, cache, ws)
    h0, hs, w_hh, activation, keep = cache
    (dh_rec,) = dstate
    T, H, B = hs.shape
    dt = hs.dtype
    dact = ws.empty("dact", hs.shape, dt)      # (T, H, B) the activation's derivative
    if activation == "tanh":
        np.multiply(hs, hs, out=dact)          # tanh' from the outputs
        np.subtract(1, dact, out=dact)
    else:
        np.greater(hs, 0, out=dact)
    da = ws.empty("da", hs.shape, dt)          # (T, H, B) pre-activation gradients
    dh = ws.empty("dh", (H, B), dt)
    dh_rec = dh_rec.copy()
    w_hh_t = ws.empty("w_hh_t", w_hh.T.shape, dt)
    np.copyto(w_hh_t, w_hh.T)
    for t in range(T - 1, -1, -1):
        np.add(dhs[t], dh_rec, out=dh)         # from the output at t and from step t + 1
        np.multiply(dh, dact[t], out=da[t])
        np.dot(w_hh_t, da[t], out=dh_rec)
        if keep is not None:                   # a restarted state passes no gradient back
            dh_rec *= keep[t]
    return da, da, (dh_rec,)


def step_constants(b_hh, activation, dtype):
    """The RNN's one step needs only its nonlinearity (b_hh is folded into xs)."""
    return activation


def step(a, xs, state, activation):
    """One step on plain vectors: h = act(a + xs), with a = W_hh h; a is scratch."""
    (h,) = state
    a += xs
    if activation == "tanh":              # written straight into h
        np.tanh(a, out=h)
    else:
        np.maximum(a, 0, out=h)
