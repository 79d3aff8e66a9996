"""The character language model: one-hot input -> L stacked recurrent layers -> softmax head.

Dimensions: T time steps, B batch, V vocabulary, H hidden size, G gates, N = T * B.
Parameters use the names and shapes of PyTorch's state_dict for nn.RNN/LSTM/GRU (attribute
`rnn`) plus nn.Linear (attribute `head`), so a PyTorch user can load them as they are:
    rnn.weight_ih_l{k} (G*H, V or H)   rnn.weight_hh_l{k} (G*H, H)
    rnn.bias_ih_l{k} (G*H,)            rnn.bias_hh_l{k} (G*H,)
    head.weight (V, H)                 head.bias (V,)
All parameters are views into one flat buffer, and so are their gradients, which makes clipping
and the optimizer a few whole-buffer operations.
"""

from dataclasses import asdict, dataclass

import numpy as np

from charlm.cells import CELLS, GATES
from charlm.layers import gather_rows_grad

CELL_NAMES = tuple(CELLS)


@dataclass(frozen=True)
class ModelConfig:
    cell: str
    vocab_size: int
    hidden: int
    layers: int
    activation: str = "tanh"       # rnn only: tanh or relu
    dropout: float = 0.0           # between layers and before the head, training only

    def to_dict(self):
        return asdict(self)


def param_shapes(cfg):
    """Name -> shape, matrices first, then biases (the optimizer decays the matrix prefix)."""
    G, H, V = GATES[cfg.cell], cfg.hidden, cfg.vocab_size
    matrices, biases = {}, {}
    for k in range(cfg.layers):
        matrices[f"rnn.weight_ih_l{k}"] = (G * H, V if k == 0 else H)
        matrices[f"rnn.weight_hh_l{k}"] = (G * H, H)
        biases[f"rnn.bias_ih_l{k}"] = (G * H,)
        biases[f"rnn.bias_hh_l{k}"] = (G * H,)
    matrices["head.weight"] = (V, H)
    biases["head.bias"] = (V,)
    return matrices | biases


def allocate(shapes, dtype=np.float32):
    """One zeroed flat buffer and a dict of named views into it."""
    sizes = [int(np.prod(s)) for s in shapes.values()]
    flat = np.zeros(sum(sizes), dtype)
    views, offset = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes):
        views[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    return flat, views


def matrix_size(cfg):
    """Number of leading flat entries that are weight matrices (not biases)."""
    return sum(int(np.prod(s)) for s in param_shapes(cfg).values() if len(s) == 2)


def init_params(cfg, rng, dtype=np.float32):
    """Xavier-uniform input and head weights, orthogonal recurrent gate blocks, zero biases
    except an LSTM forget-gate bias of 1 (in bias_ih). Returns (flat, params)."""
    flat, params = allocate(param_shapes(cfg), dtype)
    G, H, V = GATES[cfg.cell], cfg.hidden, cfg.vocab_size
    for k in range(cfg.layers):
        D = V if k == 0 else H
        bound = np.sqrt(6.0 / (D + H))
        params[f"rnn.weight_ih_l{k}"][...] = rng.uniform(-bound, bound, (G * H, D))
        for g in range(G):
            q, r = np.linalg.qr(rng.standard_normal((H, H)))
            q *= np.sign(np.diag(r))               # a uniformly random orthogonal matrix
            params[f"rnn.weight_hh_l{k}"][g * H:(g + 1) * H] = q
        if cfg.cell == "lstm":
            params[f"rnn.bias_ih_l{k}"][H:2 * H] = 1.0
    bound = np.sqrt(6.0 / (H + V))
    params["head.weight"][...] = rng.uniform(-bound, bound, (V, H))
    return flat, params


def initial_state(cfg, batch, dtype=np.float32):
    """Zero state: per layer (h,) or (h, c) for the LSTM, each (B, H)."""
    parts = 2 if cfg.cell == "lstm" else 1
    return [tuple(np.zeros((batch, cfg.hidden), dtype) for _ in range(parts))
            for _ in range(cfg.layers)]


def forward(params, cfg, x, state, dropout_rng=None):
    """x: (T, B) ids, time-major. Returns logits (T*B, V), the final state and the cache.

    With a dropout_rng and cfg.dropout > 0, each layer's output is dropped (inverted dropout)
    before it feeds the next layer or the head.
    """
    cell = CELLS[cfg.cell]
    T, B = x.shape
    H = cfg.hidden
    drop = cfg.dropout if dropout_rng is not None else 0.0
    inp = None                                             # (T, B, H) input to layer k >= 1
    layer_caches, new_state = [], []
    for k in range(cfg.layers):
        w_ih, w_hh = params[f"rnn.weight_ih_l{k}"], params[f"rnn.weight_hh_l{k}"]
        b_ih, b_hh = params[f"rnn.bias_ih_l{k}"], params[f"rnn.bias_hh_l{k}"]
        if k == 0:
            # A one-hot input times W_ih is a column of W_ih: fold the biases into the (V, G*H)
            # table once, then one gather gives the whole chunk's input projection.
            table = cell.fold_input(w_ih.T + b_ih, b_hh)
            xs = table[x]                                  # (T, B, G*H)
        else:
            xp = inp.reshape(T * B, H) @ w_ih.T            # (N, G*H)
            xp += b_ih
            xs = cell.fold_input(xp.reshape(T, B, -1), b_hh)
        if cfg.cell == "rnn":
            hs, layer_state, cell_cache = cell.forward(xs, state[k], w_hh, b_hh, cfg.activation)
        else:
            hs, layer_state, cell_cache = cell.forward(xs, state[k], w_hh, b_hh)
        mask = None
        if drop > 0:
            keep = dropout_rng.random(hs.shape, dtype=np.float32) >= drop
            mask = keep.astype(hs.dtype) * hs.dtype.type(1.0 / (1.0 - drop))
            hs = hs * mask
        layer_caches.append((inp, cell_cache, mask))
        new_state.append(layer_state)
        inp = hs
    top = inp.reshape(T * B, H)                            # (N, H)
    logits = top @ params["head.weight"].T                 # (N, V)
    logits += params["head.bias"]
    return logits, new_state, (x, top, layer_caches)


def infer(params, cfg, x, state):
    """forward for scoring: no dropout, no cache. Returns logits (T*B, V) and the state.

    Runs feature-major, (T, features, B), so that every matmul has the weights first (see
    lstm.infer); the biases and the sigmoid pre-scale are folded into the weights once.
    """
    cell = CELLS[cfg.cell]
    T, B = x.shape
    G = GATES[cfg.cell] * cfg.hidden
    inp, new_state = None, []
    for k in range(cfg.layers):
        w_ih, w_hh = params[f"rnn.weight_ih_l{k}"], params[f"rnn.weight_hh_l{k}"]
        b_ih, b_hh = params[f"rnn.bias_ih_l{k}"], params[f"rnn.bias_hh_l{k}"]
        if k == 0:
            table = cell.fold_input(w_ih.T + b_ih, b_hh)            # (V, G)
            xs = np.take(table.T, x, axis=1).transpose(1, 0, 2)     # (T, G, B) view
        else:
            # fold_input is affine per gate: fold(W x + b) = scale * W x + fold(b)
            scale = cell.fold_input(np.ones((1, G), w_ih.dtype), np.zeros_like(b_hh))[0]
            bias = cell.fold_input(b_ih[None].copy(), b_hh)[0]
            xs = np.matmul(w_ih * scale[:, None], inp)              # (T, G, B)
            xs += bias[:, None]
        extra = (cfg.activation,) if cfg.cell == "rnn" else ()
        inp, layer_state = cell.infer(xs, state[k], w_hh, b_hh, *extra)   # (T, H, B)
        new_state.append(layer_state)
    logits = np.matmul(params["head.weight"], inp)                  # (T, V, B)
    logits += params["head.bias"][:, None]
    return logits.transpose(0, 2, 1).reshape(T * B, -1), new_state


def backward(params, cfg, dlogits, cache, grads, dstate=None):
    """Writes d loss / d param into grads (views keyed like params).

    dlogits: (N, V). dstate is the gradient flowing into the final state (zero in truncated
    BPTT, where gradients stop at the chunk boundary). Returns the gradient for the initial
    state, per layer, in the same structure as the state.
    """
    cell = CELLS[cfg.cell]
    x, top, layer_caches = cache
    T, B = x.shape
    H, V = cfg.hidden, cfg.vocab_size
    np.matmul(dlogits.T, top, out=grads["head.weight"])
    np.sum(dlogits, axis=0, out=grads["head.bias"])
    dhs = (dlogits @ params["head.weight"]).reshape(T, B, H)
    dstate0 = [None] * cfg.layers
    for k in range(cfg.layers - 1, -1, -1):
        inp, cell_cache, mask = layer_caches[k]
        if mask is not None:
            dhs *= mask
        if dstate is None:
            parts = 2 if cfg.cell == "lstm" else 1
            d_final = tuple(np.zeros((B, H), dhs.dtype) for _ in range(parts))
        else:
            d_final = dstate[k]
        dxp, dw_hh, db_hh, dstate0[k] = cell.backward(dhs, d_final, cell_cache)
        dxp_flat = dxp.reshape(T * B, -1)                  # (N, G*H)
        grads[f"rnn.weight_hh_l{k}"][...] = dw_hh
        grads[f"rnn.bias_hh_l{k}"][...] = db_hh
        np.sum(dxp_flat, axis=0, out=grads[f"rnn.bias_ih_l{k}"])
        if k == 0:
            d_table = gather_rows_grad(x.reshape(-1), dxp_flat, V)   # (V, G*H)
            grads["rnn.weight_ih_l0"][...] = d_table.T
        else:
            w_ih = params[f"rnn.weight_ih_l{k}"]
            np.matmul(dxp_flat.T, inp.reshape(T * B, H), out=grads[f"rnn.weight_ih_l{k}"])
            dhs = (dxp_flat @ w_ih).reshape(T, B, H)
    return dstate0
