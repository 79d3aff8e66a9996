"""Vanilla RNN over a whole chunk: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

act is tanh (default) or relu, as torch.nn.RNN(nonlinearity=...). Time-major arrays:
xs (T, B, H), hs (T, B, H), state (h,) with h (B, H).
"""

import numpy as np

from charlm.layers import recurrent_weight_grad


def fold_input(xp, b_hh):
    """Both biases are outside the nonlinearity, so b_hh joins the projection (in place)."""
    xp += b_hh
    return xp


def activate(a, activation):
    """tanh or relu, in place."""
    if activation == "tanh":
        np.tanh(a, out=a)
    else:
        np.maximum(a, 0, out=a)


def forward(xs, state, w_hh, b_hh, activation="tanh"):
    """xs: (T, B, H) folded input. Returns hs (T, B, H), the final state and the cache."""
    (h0,) = state
    w_hh_t = np.ascontiguousarray(w_hh.T)     # (H, H); contiguous is faster than a .T view
    hs = np.empty_like(xs)                     # (T, B, H)
    h = h0
    for t in range(xs.shape[0]):
        a = hs[t]
        np.matmul(h, w_hh_t, out=a)            # only the recurrent matmul is per step
        a += xs[t]
        activate(a, activation)
        h = a
    return hs, (h.copy(),), (h0, hs, w_hh, activation)


def infer(xs, state, w_hh, b_hh, activation="tanh"):
    """forward for scoring text, feature-major like lstm.infer: xs (T, H, B) -> hs (T, H, B)."""
    (h0,) = state
    hs = np.empty(xs.shape, xs.dtype)          # C order even when xs is a strided view
    h = np.ascontiguousarray(h0.T)
    for t in range(xs.shape[0]):
        a = hs[t]
        np.dot(w_hh, h, out=a)
        a += xs[t]
        activate(a, activation)
        h = a
    return hs, (h.T.copy(),)


def backward(dhs, dstate, cache):
    """dhs: (T, B, H) gradient of every output. Returns dxp, dw_hh, db_hh, dstate0."""
    h0, hs, w_hh, activation = cache
    (dh_rec,) = dstate
    T, B, H = hs.shape
    if activation == "tanh":
        dact = 1 - hs * hs                     # (T, B, H) tanh' from the outputs
    else:
        dact = (hs > 0).astype(hs.dtype)
    da = np.empty_like(hs)                     # (T, B, H) pre-activation gradients
    dh = np.empty((B, H), hs.dtype)
    dh_rec = dh_rec.copy()
    for t in range(T - 1, -1, -1):
        np.add(dhs[t], dh_rec, out=dh)         # from the output at t and from step t + 1
        np.multiply(dh, dact[t], out=da[t])
        np.matmul(da[t], w_hh, out=dh_rec)
    dw_hh = recurrent_weight_grad(da, hs, h0)
    db_hh = da.sum(axis=(0, 1))
    return da, dw_hh, db_hh, (dh_rec,)

