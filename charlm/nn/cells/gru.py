"""GRU over a whole chunk, forward and backward (BPTT) as a pair; torch.nn.GRU's equations.

The fused 3H axis holds the gates in the order r, z, n. b_hn stays inside the reset product:
    gi = W_ih x + b_ih            gh = W_hh h_{t-1} + b_hh
    r = sigmoid(gi_r + gh_r)      z = sigmoid(gi_z + gh_z)
    n = tanh(gi_n + r * gh_n)     h_t = (1 - z) * n + z * h_{t-1}
sigmoid(x) = (tanh(x / 2) + 1) / 2; the r and z columns are pre-scaled by 1/2 once per chunk.
Feature-major arrays (see charlm.nn.layout): xs (T, 3H, B), hs (T, H, B); state (h,), h (H, B).
"""

import numpy as np

from charlm.nn.cells import gru_stream
from charlm.nn.init import orthogonal_blocks
from charlm.nn.layout import one_stream_order, scale_rows
from charlm.nn.resets import carried
from charlm.nn.workspace import FRESH

GATES = 3
STATE = ("h",)
USES_ACTIVATION = False
SEPARATE_RECURRENT = True       # the reset gate scales W_hn h + b_hn on its own


def init_recurrent(w_hh, b_ih, rng, activation=None):
    """Orthogonal gate blocks; the biases stay zero."""
    orthogonal_blocks(w_hh, rng)


def gate_scale(H, dtype):
    """(3H,) the pre-scale of each gate row: 0.5 on the sigmoid gates r, z and 1 on n."""
    scale = np.ones(3 * H, dtype)
    scale[:2 * H] = 0.5
    return scale


def fold_input(xp, b_hh):
    """Adds b_hr and b_hz (outside the reset product), pre-scales r and z; in place.

    xp: (..., 3H), gates on the last axis.
    """
    H = xp.shape[-1] // 3
    xp[..., :2 * H] += b_hh[:2 * H]
    xp *= gate_scale(H, xp.dtype)
    return xp


def fold_recurrent(w_hh, out=None):
    """W_hh with its sigmoid rows pre-scaled like the folded input, (3H, H).

    out: a (3H, H) array to write into (else a new one).
    """
    return scale_rows(w_hh, gate_scale(w_hh.shape[1], w_hh.dtype), out)


def forward(xs, state, w_hh, b_hh, activation=None, ws=FRESH, keep=None):
    """xs: (T, 3H, B) folded input; state (h,), h (H, B); ws: where arrays come from; keep:
    None, or (T, 1, B) with 0 where the state entering a step restarts (charlm.nn.resets).

    Returns hs (T, H, B), the final state and the cache.
    """
    if xs.shape[2] == 1:
        w_scaled = one_stream_order(fold_recurrent(w_hh))
        return gru_stream.forward(xs, state, w_scaled, b_hh, w_hh, ws, keep)
    (h0,) = state
    T, G, B = xs.shape
    H = G // 3
    dt = xs.dtype
    w_scaled = fold_recurrent(w_hh, ws.empty("w_scaled", w_hh.shape, dt))
    b_hn = np.repeat(b_hh[2 * H:, None], B, axis=1)         # (H, B): no per-row broadcast
    rz = ws.empty("rz", (T, 2 * H, B), dt)                   # r and z values
    gh_n = ws.empty("gh_n", (T, H, B), dt)                   # W_hn h + b_hn, needed for dr
    ns = ws.empty("ns", (T, H, B), dt)
    hs = ws.empty("hs", (T, H, B), dt)
    gh = ws.empty("gh", (G, B), dt)
    prev = None if keep is None else ws.empty("prev_h", (H, B), dt)
    h = h0
    for t in range(T):
        if keep is not None:
            h = carried(h, keep[t], prev)
        np.dot(w_scaled, h, out=gh)
        np.add(gh[:2 * H], xs[t, :2 * H], out=rz[t])
        np.tanh(rz[t], out=rz[t])
        rz[t] *= 0.5
        rz[t] += 0.5
        np.add(gh[2 * H:], b_hn, out=gh_n[t])
        n = ns[t]
        np.multiply(rz[t, :H], gh_n[t], out=n)
        n += xs[t, 2 * H:]
        np.tanh(n, out=n)
        h_new = hs[t]
        np.subtract(h, n, out=h_new)                         # h_t = n + z * (h_{t-1} - n)
        h_new *= rz[t, H:]
        h_new += n
        h = h_new
    return hs, (h.copy(),), (h0, rz, ns, gh_n, hs, w_hh, keep)


def infer(xs, state, w_scaled, b_hh, activation=None, ws=FRESH, keep=None):
    """forward without the cache, for scoring text: the same numbers, less memory traffic.

    w_scaled: fold_recurrent(W_hh), made once for a whole text rather than once per chunk. At
    one stream the product is h @ w_scaled.T, so the caller picks the GEMV kernel by the
    memory order it gives w_scaled (charlm.nn.inference).
    """
    if xs.shape[2] == 1:
        return gru_stream.infer(xs, state, w_scaled, b_hh, keep)
    (h0,) = state
    T, G, B = xs.shape
    H = G // 3
    b_hn = np.repeat(b_hh[2 * H:, None], B, axis=1)         # (H, B): no per-row broadcast
    gh = np.empty((G, B), xs.dtype)
    rz, gh_n = gh[:2 * H], gh[2 * H:]
    r, z = gh[:H], gh[H:2 * H]
    hs = ws.empty("hs", (T, H, B), xs.dtype)
    n = np.empty((H, B), xs.dtype)
    prev = None if keep is None else np.empty((H, B), xs.dtype)
    h = h0
    for t in range(T):
        if keep is not None:
            h = carried(h, keep[t], prev)
        np.dot(w_scaled, h, out=gh)
        rz += xs[t, :2 * H]
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5
        gh_n += b_hn
        np.multiply(r, gh_n, out=n)
        n += xs[t, 2 * H:]
        np.tanh(n, out=n)
        h_new = hs[t]
        np.subtract(h, n, out=h_new)                         # h_t = n + z * (h_{t-1} - n)
        h_new *= z
        h_new += n
        h = h_new
    return hs, (h.copy(),)


def backward(dhs, dstate, cache, ws=FRESH):
    """dhs: (T, H, B); dstate: gradient into the final (h,), (H, B).

    Returns the gradient of the input projection W_ih x + b_ih (T, 3H, B), that of
    W_hh h + b_hh (T, 3H, B) and the gradient for the initial state.
    """
    if dhs.shape[2] == 1:
        return gru_stream.backward(dhs, dstate, cache, ws)
    h0, rz, ns, gh_n, hs, w_hh, keep = cache
    T, H, B = hs.shape
    dt = hs.dtype
    dgi = ws.empty("dgi", (T, 3 * H, B), dt)                  # gradient of W_ih x + b_ih
    dgh = ws.empty("dgh", (T, 3 * H, B), dt)                  # gradient of W_hh h + b_hh
    (dh_rec,) = (s.copy() for s in dstate)
    dh, tmp, zd = (ws.empty(name, (H, B), dt) for name in ("dh", "tmp", "zd"))
    w_hh_t = ws.empty("w_hh_t", w_hh.T.shape, dt)            # (H, 3H), contiguous
    np.copyto(w_hh_t, w_hh.T)
    # Factors are computed per step on (H, B) blocks that stay in cache (see lstm.backward);
    # (1 - z) * dh is shared by a_n and a_z.
    for t in range(T - 1, -1, -1):
        r, z, n = rz[t, :H], rz[t, H:], ns[t]
        h_prev = hs[t - 1] if t > 0 else h0
        if keep is not None:                                  # the h that entered step t
            h_prev = carried(h_prev, keep[t], ws.empty("prev_h", (H, B), dt))
        da_r, da_z, da_n = dgi[t, :H], dgi[t, H:2 * H], dgi[t, 2 * H:]
        np.add(dhs[t], dh_rec, out=dh)
        np.subtract(1, z, out=zd)
        zd *= dh
        np.multiply(n, n, out=da_n)                           # a_n: dh * (1 - z) * (1 - n^2)
        np.subtract(1, da_n, out=da_n)
        da_n *= zd
        np.subtract(h_prev, n, out=da_z)                      # a_z: dh * (1 - z) * z * (h_prev - n)
        da_z *= z
        da_z *= zd
        np.subtract(1, r, out=da_r)                           # a_r: da_n * gh_n * r (1 - r)
        da_r *= r
        da_r *= gh_n[t]
        da_r *= da_n
        dgh[t, :2 * H] = dgi[t, :2 * H]
        np.multiply(da_n, r, out=dgh[t, 2 * H:])              # the reset gate scales W_hn h + b_hn
        np.dot(w_hh_t, dgh[t], out=dh_rec)
        np.multiply(dh, z, out=tmp)                           # the direct path z * h_{t-1}
        dh_rec += tmp
        if keep is not None:                                  # a restart passes no gradient back
            dh_rec *= keep[t]
    return dgi, dgh, (dh_rec,)


def step_constants(b_hh, activation, dtype):
    """b_hn (H,): the one bias that stays inside the reset product."""
    return b_hh[2 * (len(b_hh) // 3):].copy()


def step(a, xs, state, b_hn):
    """One step on plain vectors: a (3H,) = the folded W_hh h, scratch; xs (3H,) the folded
    input projection (W_ih x on its own: the reset gate scales only W_hn h + b_hn)."""
    (h,) = state
    H = len(h)
    rz = a[:2 * H]
    rz += xs[:2 * H]
    np.tanh(rz, out=rz)
    rz *= 0.5                                         # tanh(x/2) -> sigmoid(x)
    rz += 0.5
    n = a[2 * H:]
    n += b_hn
    n *= rz[:H]
    n += xs[2 * H:]
    np.tanh(n, out=n)
    h -= n                                            # h' = n + z * (h - n)
    h *= rz[H:]
    h += n
