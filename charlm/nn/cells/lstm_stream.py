"""The LSTM at one stream (B = 1) on plain vectors: infer, and forward/backward as a pair.

At one stream the ~10 calls per step, not the arithmetic, are most of the time, and a call on
a (4H,) vector costs less than on (4H, 1). forward makes the same calls as infer, on the same
kernels (the folded W_hh in charlm.nn.layout.one_stream_order), so its outputs are infer's bit
for bit: dynamic evaluation scores a segment with the forward it then learns from. The
equations and the folding are charlm.nn.cells.lstm's; arrays (T, H, 1) as there, vectors (H,).
"""

import numpy as np

from charlm.nn.workspace import FRESH


def infer(xs, state, w_scaled, scale, keep=None):
    """lstm.infer at B = 1; w_scaled: the folded W_hh (its memory order picks the kernel),
    scale: lstm.gate_scale."""
    T, G, _ = xs.shape
    H = G // 4
    dt = xs.dtype
    a = np.empty(G, dt)
    i, f, g, o = (a[k * H:(k + 1) * H] for k in range(4))
    shift = 1 - scale
    hs = np.empty((T, H, 1), dt)
    c = state[1].reshape(H).copy()
    ig = np.empty(H, dt)
    h = state[0].reshape(H)
    w_t = w_scaled.T
    zero = np.zeros(H, dt)
    keeps = np.ones(T) if keep is None else keep.reshape(T)
    dot, add, multiply, tanh = np.dot, np.add, np.multiply, np.tanh   # out= given by position
    for x, h_new, k in zip(xs.reshape(T, G), hs.reshape(T, H), keeps):
        if not k:                                             # a document starts
            h = zero
            c[:] = 0
        dot(h, w_t, a)
        add(a, x, a)
        tanh(a, a)
        multiply(a, scale, a)                                 # tanh(x/2) -> sigmoid(x) on i, f, o
        add(a, shift, a)
        multiply(c, f, c)
        multiply(i, g, ig)
        add(c, ig, c)
        tanh(c, h_new)
        multiply(h_new, o, h_new)
        h = h_new
    return hs, (h.reshape(H, 1).copy(), c.reshape(H, 1))


def forward(xs, state, w_scaled, scale, w_hh, ws=FRESH, keep=None):
    """lstm.forward at B = 1: infer's calls in infer's order on w_scaled, the folded W_hh in
    one_stream_order, keeping the gates (T, 4H), c and tanh(c) (T, H) for backward, which
    takes W_hh itself (w_hh)."""
    T, G, _ = xs.shape
    H = G // 4
    dt = xs.dtype
    acts = ws.empty("acts", (T, G), dt)
    cs, tanh_cs = ws.empty("cs", (T, H), dt), ws.empty("tanh_cs", (T, H), dt)
    hs = ws.empty("hs", (T, H, 1), dt)
    shift = 1 - scale
    ig = np.empty(H, dt)
    h0, c0 = state[0].reshape(H), state[1].reshape(H)
    h, c = h0, c0
    w_t = w_scaled.T
    zero = np.zeros(H, dt)
    keeps = np.ones(T) if keep is None else keep.reshape(T)
    dot, add, multiply, tanh = np.dot, np.add, np.multiply, np.tanh
    for x, a, i, f, g, o, c_new, tanh_c, h_new, k in zip(
            xs.reshape(T, G), acts, acts[:, :H], acts[:, H:2 * H], acts[:, 2 * H:3 * H],
            acts[:, 3 * H:], cs, tanh_cs, hs.reshape(T, H), keeps):
        if not k:                                             # a document starts
            h, c = zero, zero
        dot(h, w_t, a)
        add(a, x, a)
        tanh(a, a)
        multiply(a, scale, a)
        add(a, shift, a)
        multiply(c, f, c_new)
        multiply(i, g, ig)
        add(c_new, ig, c_new)
        tanh(c_new, tanh_c)
        multiply(tanh_c, o, h_new)
        h, c = h_new, c_new
    cache = (h0, c0, acts, cs, tanh_cs, w_hh, keep)
    return hs, (h.reshape(H, 1).copy(), c.reshape(H, 1).copy()), cache


def backward(dhs, dstate, cache, ws=FRESH):
    """lstm.backward at B = 1, for forward's cache; the same returns, da (T, 4H, 1) twice."""
    h0, c0, acts, cs, tanh_cs, w_hh, keep = cache
    T, H = cs.shape
    dt = cs.dtype
    da = ws.empty("da", (T, 4 * H, 1), dt)
    d = da.reshape(T, 4 * H)
    c_prevs = ws.empty("c_prevs", (T, H), dt)                 # the c that entered each step
    c_prevs[0] = c0
    c_prevs[1:] = cs[:-1]
    if keep is not None:
        c_prevs *= keep.reshape(T, 1)
    keeps = np.ones(T) if keep is None else keep.reshape(T)
    dh_rec, dc = (s.reshape(H).copy() for s in dstate)
    dh, tmp, od = np.empty(H, dt), np.empty(H, dt), np.empty(H, dt)
    one = dt.type(1)
    add, subtract, multiply, dot = np.add, np.subtract, np.multiply, np.dot
    back = slice(None, None, -1)
    # lstm.backward's factors and shared products, one call each on (H,) vectors
    for dh_out, i, f, g, o, tanh_c, c_prev, d_t, da_i, da_f, da_g, da_o, k in zip(
            dhs.reshape(T, H)[back], acts[back, :H], acts[back, H:2 * H],
            acts[back, 2 * H:3 * H], acts[back, 3 * H:], tanh_cs[back], c_prevs[back],
            d[back], d[back, :H], d[back, H:2 * H], d[back, 2 * H:3 * H], d[back, 3 * H:],
            keeps[back]):
        add(dh_out, dh_rec, dh)
        multiply(o, dh, od)
        multiply(tanh_c, tanh_c, tmp)                         # dc += dh o (1 - tanh(c)^2)
        subtract(one, tmp, tmp)
        multiply(tmp, od, tmp)
        add(dc, tmp, dc)
        subtract(one, o, da_o)                                # a_o: dh o (1 - o) tanh(c)
        multiply(da_o, tanh_c, da_o)
        multiply(da_o, od, da_o)
        multiply(i, dc, tmp)                                  # i dc, shared by a_i and a_g
        multiply(g, g, da_g)                                  # a_g: i dc (1 - g^2)
        subtract(one, da_g, da_g)
        multiply(da_g, tmp, da_g)
        subtract(one, i, da_i)                                # a_i: i dc (1 - i) g
        multiply(da_i, g, da_i)
        multiply(da_i, tmp, da_i)
        multiply(dc, f, dc)                                   # f dc: a_f's factor, dc_{t-1}
        subtract(one, f, da_f)                                # a_f: f dc (1 - f) c_prev
        multiply(da_f, c_prev, da_f)
        multiply(da_f, dc, da_f)
        dot(d_t, w_hh, dh_rec)                                # W_hh^T d_t
        if not k:                                             # a restart passes nothing back
            dh_rec[...] = 0
            dc[...] = 0
    return da, da, (dh_rec.reshape(H, 1), dc.reshape(H, 1))
