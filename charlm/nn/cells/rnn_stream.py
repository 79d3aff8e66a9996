"""The vanilla RNN at one stream (B = 1) on plain vectors: infer, and forward/backward as a
pair.

A call on an (H,) vector costs less than on (H, 1). forward makes the same calls as infer, on
the same kernel (W_hh in charlm.nn.layout.one_stream_order), so its outputs are infer's bit
for bit: dynamic evaluation scores a segment with the forward it then learns from. The
equations are charlm.nn.cells.rnn's; arrays (T, H, 1) as there, vectors (H,).
"""

import numpy as np

from charlm.nn.workspace import FRESH


def infer(xs, state, w_hh, activate, activation, keep=None, hs=None):
    """rnn.infer at B = 1; w_hh in the memory order that picks the kernel; activate(a,
    activation) applies the nonlinearity in place; hs: a (T, H, 1) array for the outputs."""
    T, H, _ = xs.shape
    hs = np.empty((T, H, 1), xs.dtype) if hs is None else hs
    h = state[0].reshape(H)
    w_t = w_hh.T
    zero = np.zeros(H, xs.dtype)
    keeps = np.ones(T) if keep is None else keep.reshape(T)
    for x, a, k in zip(xs.reshape(T, H), hs.reshape(T, H), keeps):
        if not k:                                             # a document starts
            h = zero
        np.dot(h, w_t, a)                                     # out= given by position
        np.add(a, x, a)
        activate(a, activation)
        h = a
    return hs, (h.reshape(H, 1).copy(),)


def forward(xs, state, w_ordered, w_hh, activate, activation, ws=FRESH, keep=None):
    """rnn.forward at B = 1: infer itself on w_ordered (W_hh in one_stream_order); the cache
    is the outputs, and backward takes W_hh itself (w_hh)."""
    hs = ws.empty("hs", xs.shape, xs.dtype)
    hs, final = infer(xs, state, w_ordered, activate, activation, keep, hs)
    return hs, final, (state[0].reshape(-1), hs, w_hh, activation, keep)


def backward(dhs, dstate, cache, ws=FRESH):
    """rnn.backward at B = 1, for forward's cache; the same returns, da (T, H, 1) twice."""
    h0, hs, w_hh, activation, keep = cache
    T, H, _ = hs.shape
    dt = hs.dtype
    out = hs.reshape(T, H)
    da = ws.empty("da", (T, H, 1), dt)
    d = da.reshape(T, H)
    if activation == "tanh":                   # the activation's derivative, whole chunk
        np.multiply(out, out, out=d)           # tanh' from the outputs
        np.subtract(1, d, out=d)
    else:
        np.greater(out, 0, out=d)
    keeps = np.ones(T) if keep is None else keep.reshape(T)
    dh_rec = dstate[0].reshape(H).copy()
    dh = np.empty(H, dt)
    back = slice(None, None, -1)
    for dh_out, d_t, k in zip(dhs.reshape(T, H)[back], d[back], keeps[back]):
        np.add(dh_out, dh_rec, dh)             # from the output at t and from step t + 1
        np.multiply(dh, d_t, d_t)
        np.dot(d_t, w_hh, dh_rec)              # W_hh^T d_t
        if not k:                              # a restarted state passes no gradient back
            dh_rec[...] = 0
    return da, da, (dh_rec.reshape(H, 1),)
