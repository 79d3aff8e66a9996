"""The GRU at one stream (B = 1) on plain vectors: infer, and forward/backward as a pair.

At one stream the calls per step, not the arithmetic, are most of the time, and a call on a
(3H,) vector costs less than on (3H, 1). forward makes the same calls as infer, on the same
kernels (the folded W_hh in charlm.nn.layout.one_stream_order), so its outputs are infer's bit
for bit: dynamic evaluation scores a segment with the forward it then learns from. The
equations and the folding are charlm.nn.cells.gru's; arrays (T, H, 1) as there, vectors (H,).
"""

import numpy as np

from charlm.nn.workspace import FRESH


def infer(xs, state, w_scaled, b_hh, keep=None):
    """gru.infer at B = 1; w_scaled: the folded W_hh (its memory order picks the kernel)."""
    T, G, _ = xs.shape
    H = G // 3
    dt = xs.dtype
    b_hn = b_hh[2 * H:]
    gh = np.empty(G, dt)
    rz, gh_n = gh[:2 * H], gh[2 * H:]
    r, z = gh[:H], gh[H:2 * H]
    half = dt.type(0.5)
    hs = np.empty((T, H, 1), dt)
    n = np.empty(H, dt)
    h = state[0].reshape(H)
    x = xs.reshape(T, G)
    w_t = w_scaled.T
    zero = np.zeros(H, dt)
    keeps = np.ones(T) if keep is None else keep.reshape(T)
    dot, add, subtract, multiply, tanh = np.dot, np.add, np.subtract, np.multiply, np.tanh
    for x_rz, x_n, h_new, k in zip(x[:, :2 * H], x[:, 2 * H:], hs.reshape(T, H), keeps):
        if not k:                                             # a document starts
            h = zero
        dot(h, w_t, gh)                                       # out= given by position
        add(rz, x_rz, rz)
        tanh(rz, rz)
        multiply(rz, half, rz)                                # tanh(x/2) -> sigmoid(x)
        add(rz, half, rz)
        add(gh_n, b_hn, gh_n)
        multiply(r, gh_n, n)
        add(n, x_n, n)
        tanh(n, n)
        subtract(h, n, h_new)                                 # h_t = n + z * (h_{t-1} - n)
        multiply(h_new, z, h_new)
        add(h_new, n, h_new)
        h = h_new
    return hs, (h.reshape(H, 1).copy(),)


def forward(xs, state, w_scaled, b_hh, w_hh, ws=FRESH, keep=None):
    """gru.forward at B = 1: infer's calls in infer's order on w_scaled, the folded W_hh in
    one_stream_order, keeping per step r, z and W_hn h + b_hn (gates (T, 3H)) and n (T, H)
    for backward, which takes W_hh itself (w_hh)."""
    T, G, _ = xs.shape
    H = G // 3
    dt = xs.dtype
    b_hn = b_hh[2 * H:]
    gates = ws.empty("gates", (T, G), dt)
    ns = ws.empty("ns", (T, H), dt)
    hs = ws.empty("hs", (T, H, 1), dt)
    half = dt.type(0.5)
    h0 = state[0].reshape(H)
    h = h0
    x = xs.reshape(T, G)
    w_t = w_scaled.T
    zero = np.zeros(H, dt)
    keeps = np.ones(T) if keep is None else keep.reshape(T)
    dot, add, subtract, multiply, tanh = np.dot, np.add, np.subtract, np.multiply, np.tanh
    for x_rz, x_n, gh, rz, r, z, gh_n, n, h_new, k in zip(
            x[:, :2 * H], x[:, 2 * H:], gates, gates[:, :2 * H], gates[:, :H],
            gates[:, H:2 * H], gates[:, 2 * H:], ns, hs.reshape(T, H), keeps):
        if not k:                                             # a document starts
            h = zero
        dot(h, w_t, gh)
        add(rz, x_rz, rz)
        tanh(rz, rz)
        multiply(rz, half, rz)
        add(rz, half, rz)
        add(gh_n, b_hn, gh_n)
        multiply(r, gh_n, n)
        add(n, x_n, n)
        tanh(n, n)
        subtract(h, n, h_new)
        multiply(h_new, z, h_new)
        add(h_new, n, h_new)
        h = h_new
    return hs, (h.reshape(H, 1).copy(),), (h0, gates, ns, hs, w_hh, keep)


def backward(dhs, dstate, cache, ws=FRESH):
    """gru.backward at B = 1, for forward's cache; the same returns, (T, 3H, 1) each.

    Every gate's gradient is dh_t times a factor that does not depend on dh: the factors are
    formed for the whole chunk at once ((T, H) stays in cache at one stream), leaving eight
    calls per step where gru.backward's per-step blocks take sixteen.
    """
    h0, gates, ns, hs, w_hh, keep = cache
    T, H = ns.shape
    dt = ns.dtype
    dgi = ws.empty("dgi", (T, 3 * H, 1), dt)                  # gradient of W_ih x + b_ih
    dgh = ws.empty("dgh", (T, 3 * H, 1), dt)                  # gradient of W_hh h + b_hh
    di, dg = dgi.reshape(T, 3 * H), dgh.reshape(T, 3 * H)
    r, z, gh_n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    prevs = ws.empty("prevs", (T, H), dt)                     # the h that entered each step
    prevs[0] = h0
    prevs[1:] = hs.reshape(T, H)[:-1]
    if keep is not None:
        prevs *= keep.reshape(T, 1)
    for_n, for_z, for_r = (ws.empty(name, (T, H), dt) for name in ("for_n", "for_z", "for_r"))
    np.subtract(1, z, out=for_n)                              # a_n: dh (1 - z) (1 - n^2)
    np.subtract(prevs, ns, out=for_z)                         # a_z: dh (1 - z) z (h_prev - n)
    for_z *= z
    for_z *= for_n
    np.multiply(ns, ns, out=for_r)
    np.subtract(1, for_r, out=for_r)
    for_n *= for_r
    np.subtract(1, r, out=for_r)                              # a_r: a_n gh_n r (1 - r)
    for_r *= r
    for_r *= gh_n
    keeps = np.ones(T) if keep is None else keep.reshape(T)
    dh_rec = dstate[0].reshape(H).copy()
    dh, tmp = np.empty(H, dt), np.empty(H, dt)
    add, multiply, dot = np.add, np.multiply, np.dot
    back = slice(None, None, -1)
    for dh_out, f_n, f_z, f_r, r_t, z_t, da_n, d_gh, da_r, da_z, dgh_n, k in zip(
            dhs.reshape(T, H)[back], for_n[back], for_z[back], for_r[back], r[back], z[back],
            di[back, 2 * H:], dg[back], dg[back, :H], dg[back, H:2 * H], dg[back, 2 * H:],
            keeps[back]):
        add(dh_out, dh_rec, dh)
        multiply(dh, f_n, da_n)
        multiply(dh, f_z, da_z)
        multiply(da_n, f_r, da_r)
        multiply(da_n, r_t, dgh_n)                            # the reset gate scales W_hn h
        dot(d_gh, w_hh, dh_rec)                               # W_hh^T d_gh
        multiply(dh, z_t, tmp)                                # the direct path z * h_{t-1}
        add(dh_rec, tmp, dh_rec)
        if not k:                                             # a restart passes nothing back
            dh_rec[...] = 0
    di[:, :2 * H] = dg[:, :2 * H]                             # r and z: the same in both
    return dgi, dgh, (dh_rec.reshape(H, 1),)
