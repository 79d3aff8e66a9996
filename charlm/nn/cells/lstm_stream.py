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
    """lstm.backward at B = 1, for forward's cache; the same returns, da (T, 4H, 1) twice.

    Each gate's gradient is dh_t or dc_t times a factor that does not depend on them: the
    factors are formed for the whole chunk at once ((T, 4H) stays in cache at one stream),
    leaving seven calls per step where lstm.backward's per-step blocks take twenty-one.
    """
    h0, c0, acts, cs, tanh_cs, w_hh, keep = cache
    T, H = cs.shape
    dt = cs.dtype
    da = ws.empty("da", (T, 4 * H, 1), dt)
    d = da.reshape(T, 4 * H)
    i, f, g, o = (acts[:, k * H:(k + 1) * H] for k in range(4))
    factors = ws.empty("factors", (T, 5, H), dt)              # of dc: a_i, a_f, a_g; of dh
    for_i, for_f, for_g, for_c, for_o = (factors[:, k] for k in range(5))
    np.subtract(1, i, out=for_i)                              # a_i: dc i (1 - i) g
    for_i *= i
    for_i *= g
    for_f[0] = c0.reshape(H)                                  # a_f: dc f (1 - f) c_prev
    for_f[1:] = cs[:-1]
    if keep is not None:                                      # the c that entered each step
        for_f *= keep.reshape(T, 1)
    for_f *= f
    np.subtract(1, f, out=for_g)
    for_f *= for_g
    np.multiply(g, g, out=for_g)                              # a_g: dc i (1 - g^2)
    np.subtract(1, for_g, out=for_g)
    for_g *= i
    np.multiply(tanh_cs, tanh_cs, out=for_c)                  # dc += dh o (1 - tanh(c)^2)
    np.subtract(1, for_c, out=for_c)
    for_c *= o
    np.subtract(1, o, out=for_o)                              # a_o: dh o (1 - o) tanh(c)
    for_o *= o
    for_o *= tanh_cs
    keeps = np.ones(T) if keep is None else keep.reshape(T)
    dh_rec, dc = (s.reshape(H).copy() for s in dstate)
    dh, tmp = np.empty(H, dt), np.empty(H, dt)
    add, multiply, dot = np.add, np.multiply, np.dot
    back = slice(None, None, -1)
    for dh_out, f_ifg, f_c, f_o, f_t, d_t, da_ifg, da_o, k in zip(
            dhs.reshape(T, H)[back], factors[back, :3], for_c[back], for_o[back], f[back],
            d[back], d.reshape(T, 4, H)[back, :3], d[back, 3 * H:], keeps[back]):
        add(dh_out, dh_rec, dh)
        multiply(dh, f_c, tmp)
        add(dc, tmp, dc)
        multiply(dh, f_o, da_o)
        multiply(f_ifg, dc, da_ifg)                           # (3, H) by (H,): a_i, a_f, a_g
        multiply(dc, f_t, dc)                                 # dc_{t-1} = f dc_t
        dot(d_t, w_hh, dh_rec)                                # W_hh^T d_t
        if not k:                                             # a restart passes nothing back
            dh_rec[...] = 0
            dc[...] = 0
    return da, da, (dh_rec.reshape(H, 1), dc.reshape(H, 1))
