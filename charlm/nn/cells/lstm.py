"""LSTM over a whole chunk, forward and backward (BPTT) as a pair; torch.nn.LSTM's equations.

The fused 4H axis holds the gates in the order i, f, g, o:
    a = W_ih x + b_ih + W_hh h_{t-1} + b_hh
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o)     g = tanh(a_g)
    c_t = f * c_{t-1} + i * g                               h_t = o * tanh(c_t)
sigmoid(x) = (tanh(x / 2) + 1) / 2, so all four gates take one tanh call per step: the
sigmoid columns of the input and of W_hh are pre-scaled by 1/2 once per chunk.
Feature-major arrays (see charlm.nn.layout): xs (T, 4H, B), hs (T, H, B); state (h, c), each (H, B).
"""

import numpy as np

from charlm.nn.cells import lstm_stream
from charlm.nn.init import orthogonal_blocks
from charlm.nn.layout import one_stream_order, scale_rows
from charlm.nn.resets import carried
from charlm.nn.workspace import FRESH

GATES = 4
STATE = ("h", "c")
USES_ACTIVATION = False
SEPARATE_RECURRENT = False


def init_recurrent(w_hh, b_ih, rng, activation=None):
    """Orthogonal gate blocks and a forget-gate bias of 1 (in b_ih), so that the cell starts by
    keeping its memory (Gers et al., 2000; Jozefowicz et al., 2015)."""
    orthogonal_blocks(w_hh, rng)
    H = w_hh.shape[1]
    b_ih[H:2 * H] = 1.0


def gate_scale(H, dtype):
    """(4H,) the pre-scale of each gate row: 0.5 on the sigmoid gates i, f, o and 1 on g."""
    scale = np.full(4 * H, 0.5, dtype)
    scale[2 * H:3 * H] = 1
    return scale


def _sigmoid_maker(H, B, dtype):
    """A function a -> None that turns tanh(x/2) into tanh(x/2)/2 + 1/2 = sigmoid(x) on the
    i, f and o rows of a (4H, B) gate block, in place.

    From a few columns up, four scalar operations on the contiguous i-f and o blocks: a (4H, 1)
    scale broadcast over (4H, B) runs a short inner loop per row and is 2 to 3 times slower
    at B = 16 to 64. At one column the two broadcast calls are faster than four.
    """
    if B < 4:
        scale = gate_scale(H, dtype)[:, None]
        shift = 1 - scale

        def to_sigmoid(a):
            a *= scale
            a += shift
    else:
        def to_sigmoid(a):
            for block in (a[:2 * H], a[3 * H:]):
                block *= 0.5
                block += 0.5
    return to_sigmoid


def fold_input(xp, b_hh):
    """Adds b_hh (outside every nonlinearity) and applies the sigmoid pre-scale, in place.

    xp: (..., 4H), gates on the last axis.
    """
    xp += b_hh
    xp *= gate_scale(xp.shape[-1] // 4, xp.dtype)
    return xp


def fold_recurrent(w_hh, out=None):
    """W_hh with its sigmoid rows pre-scaled like the folded input, (4H, H).

    out: a (4H, H) array to write into (else a new one).
    """
    return scale_rows(w_hh, gate_scale(w_hh.shape[1], w_hh.dtype), out)


def forward(xs, state, w_hh, b_hh, activation=None, ws=FRESH, keep=None):
    """xs: (T, 4H, B) folded input; state (h, c), each (H, B); ws: where arrays come from;
    keep: None, or (T, 1, B) with 0 where the state entering a step restarts (charlm.nn.resets).

    Returns hs (T, H, B), the final (h, c) and the cache. Gates (4H, B) = W_hh @ h: BLAS is up
    to twice as fast in this orientation at small B, and every gate block is contiguous.
    """
    if xs.shape[2] == 1:
        w_scaled = one_stream_order(fold_recurrent(w_hh))
        scale = gate_scale(xs.shape[1] // 4, xs.dtype)
        return lstm_stream.forward(xs, state, w_scaled, scale, w_hh, ws, keep)
    h0, c0 = state
    T, G, B = xs.shape
    H = G // 4
    dt = xs.dtype
    w_scaled = fold_recurrent(w_hh, ws.empty("w_scaled", w_hh.shape, dt))
    to_sigmoid = _sigmoid_maker(H, B, dt)
    acts = ws.empty("acts", xs.shape, dt)                    # (T, 4H, B) gate values i, f, g, o
    cs = ws.empty("cs", (T, H, B), dt)
    tanh_cs = ws.empty("tanh_cs", (T, H, B), dt)
    hs = ws.empty("hs", (T, H, B), dt)
    ig = ws.empty("ig", (H, B), dt)
    if keep is not None:
        prev_h, prev_c = ws.empty("prev_h", (H, B), dt), ws.empty("prev_c", (H, B), dt)
    h, c = h0, c0
    for t in range(T):
        if keep is not None:
            h, c = carried(h, keep[t], prev_h), carried(c, keep[t], prev_c)
        a = acts[t]
        np.dot(w_scaled, h, out=a)
        a += xs[t]
        np.tanh(a, out=a)
        to_sigmoid(a)
        np.multiply(a[H:2 * H], c, out=cs[t])
        np.multiply(a[:H], a[2 * H:3 * H], out=ig)
        cs[t] += ig
        c = cs[t]
        np.tanh(c, out=tanh_cs[t])
        np.multiply(a[3 * H:], tanh_cs[t], out=hs[t])
        h = hs[t]
    cache = (h0, c0, acts, cs, tanh_cs, hs, w_hh, keep)
    return hs, (h.copy(), c.copy()), cache


def infer(xs, state, w_scaled, b_hh, activation=None, ws=FRESH, keep=None):
    """forward without the cache, for scoring text: the same numbers, less memory traffic.

    w_scaled: fold_recurrent(W_hh), made once for a whole text rather than once per chunk. At
    one stream the product is h @ w_scaled.T, so the caller picks the GEMV kernel by the
    memory order it gives w_scaled (charlm.nn.inference).
    """
    if xs.shape[2] == 1:
        return lstm_stream.infer(xs, state, w_scaled, gate_scale(xs.shape[1] // 4, xs.dtype),
                                 keep)
    h0, c0 = state
    T, G, B = xs.shape
    H = G // 4
    a = np.empty((G, B), xs.dtype)
    i, f, g, o = (a[k * H:(k + 1) * H] for k in range(4))
    to_sigmoid = _sigmoid_maker(H, B, xs.dtype)
    hs = ws.empty("hs", (T, H, B), xs.dtype)
    c = c0.copy()
    ig = np.empty((H, B), xs.dtype)
    prev_h = None if keep is None else np.empty((H, B), xs.dtype)
    h = h0
    for t in range(T):
        if keep is not None:
            h = carried(h, keep[t], prev_h)
            c *= keep[t]                                     # c is this function's own
        np.dot(w_scaled, h, out=a)
        a += xs[t]
        np.tanh(a, out=a)
        to_sigmoid(a)
        c *= f
        np.multiply(i, g, out=ig)
        c += ig
        h = hs[t]
        np.tanh(c, out=h)
        h *= o
    return hs, (h.copy(), c)


def backward(dhs, dstate, cache, ws=FRESH):
    """dhs: (T, H, B); dstate: gradient into the final (h, c), each (H, B).

    Returns the gradient of the input projection (T, 4H, B), that of W_hh h + b_hh (the same
    array for this cell) and the gradient for the initial (h0, c0).
    """
    if dhs.shape[2] == 1:
        return lstm_stream.backward(dhs, dstate, cache, ws)
    h0, c0, acts, cs, tanh_cs, hs, w_hh, keep = cache
    T, H, B = hs.shape
    dt = hs.dtype
    da = ws.empty("da", acts.shape, dt)                       # (T, 4H, B)
    dh_rec, dc = (s.copy() for s in dstate)
    dh, tmp, od = (ws.empty(name, (H, B), dt) for name in ("dh", "tmp", "od"))
    w_hh_t = ws.empty("w_hh_t", w_hh.T.shape, dt)            # (H, 4H), contiguous
    np.copyto(w_hh_t, w_hh.T)
    # Every factor is computed per step on (H, B) blocks that stay in cache; doing them for the
    # whole chunk at once costs more in memory traffic than it saves in calls. Products shared
    # between gates (o * dh, i * dc, f * dc) are formed once: 21 calls per step, not 24.
    for t in range(T - 1, -1, -1):
        a, d = acts[t], da[t]
        i, f, g, o = (a[k * H:(k + 1) * H] for k in range(4))
        da_i, da_f, da_g, da_o = (d[k * H:(k + 1) * H] for k in range(4))
        tanh_c = tanh_cs[t]
        c_prev = cs[t - 1] if t > 0 else c0
        if keep is not None:                                  # the c that entered step t
            c_prev = carried(c_prev, keep[t], ws.empty("prev_c", (H, B), dt))
        np.add(dhs[t], dh_rec, out=dh)                        # from the output and from t + 1
        np.multiply(o, dh, out=od)
        np.multiply(tanh_c, tanh_c, out=tmp)                  # dc += dh * o * (1 - tanh(c)^2)
        np.subtract(1, tmp, out=tmp)
        tmp *= od
        dc += tmp
        np.subtract(1, o, out=da_o)                           # a_o: dh * o * (1 - o) * tanh(c)
        da_o *= tanh_c
        da_o *= od
        np.multiply(i, dc, out=tmp)                           # i * dc, shared by a_i and a_g
        np.multiply(g, g, out=da_g)                           # a_g: i * dc * (1 - g^2)
        np.subtract(1, da_g, out=da_g)
        da_g *= tmp
        np.subtract(1, i, out=da_i)                           # a_i: i * dc * (1 - i) * g
        da_i *= g
        da_i *= tmp
        dc *= f                                               # f * dc: a_f's factor, and dc_{t-1}
        np.subtract(1, f, out=da_f)                           # a_f: f * dc * (1 - f) * c_prev
        da_f *= c_prev
        da_f *= dc
        np.dot(w_hh_t, d, out=dh_rec)
        if keep is not None:                                  # a restart passes no gradient back
            dh_rec *= keep[t]
            dc *= keep[t]
    return da, da, (dh_rec, dc)


def step_constants(b_hh, activation, dtype):
    """(scale, shift, scratch): tanh(x/2) * scale + shift is sigmoid(x) on i, f, o and tanh(x)
    on g, one tanh call for all four gates."""
    scale = gate_scale(len(b_hh) // 4, dtype)
    return scale, 1 - scale, np.empty(len(b_hh) // 4, dtype)


def step(a, xs, state, constants):
    """One step on plain vectors: a (4H,) = the folded W_hh h (+ W_ih x), scratch; (h, c)."""
    h, c = state
    scale, shift, ig = constants
    H = len(h)
    a += xs
    np.tanh(a, out=a)
    a *= scale
    a += shift
    c *= a[H:2 * H]                                   # c = f * c + i * g
    np.multiply(a[:H], a[2 * H:3 * H], out=ig)
    c += ig
    np.tanh(c, out=h)                                 # h = o * tanh(c)
    h *= a[3 * H:]
