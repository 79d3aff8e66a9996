"""Layer 0's input (one-hot or a learned embedding) and every layer's input projection
W_ih x + b_ih, folded as the cells want it (their gate pre-scale, the biases outside products).

Dimensions: T time steps, B batch, V vocabulary, E embedding, H hidden size, G gates.
Shared by training (charlm.nn.model) and inference (charlm.nn.inference).
"""

import numpy as np

from charlm.nn.layout import scale_rows
from charlm.nn.workspace import FRESH

SMALL_BATCH = 2        # below this many streams, per-chunk GEMMs beat per-step calls (measured)


def input_columns(params):
    """(V, G*H): what layer 0's input product W_ih x is for each id: a column of W_ih for a
    one-hot input, embed.weight @ W_ih^T with an embedding (the row the id selects, times W_ih)."""
    w_ih = params["rnn.weight_ih_l0"]
    if "embed.weight" in params:
        return params["embed.weight"] @ w_ih.T
    return w_ih.T


def fold_input_weights(cell, params, k, batch, ws=FRESH, by_id=True):
    """Layer k's input weights with the cell's folding applied: (w, bias) for project.

    fold_input is affine per gate, fold(W x + b) = scale * W x + fold(b), so it is folded into
    the weights. Layer 0 read by id (by_id: always for inference, for training without an
    embedding) gets a table of input_columns with the biases folded in: (V, G*H) at a batch
    below SMALL_BATCH, (G*H, V) from there on, and no bias. Any other layer gets the scaled
    (G*H, D) W_ih and its folded bias (G*H, 1). ws: where the scaled W_ih comes from.
    """
    w_ih, b_ih, b_hh = (params[f"rnn.{n}_l{k}"] for n in ("weight_ih", "bias_ih", "bias_hh"))
    if k == 0 and by_id:
        table = cell.fold_input(input_columns(params) + b_ih, b_hh)     # (V, G*H)
        return (table if batch < SMALL_BATCH else np.ascontiguousarray(table.T)), None
    bias = cell.fold_input(b_ih.copy(), b_hh)[:, None]
    w_folded = scale_rows(w_ih, cell.gate_scale(w_ih.shape[0] // cell.GATES, w_ih.dtype),
                          ws.empty(f"w_folded_{min(k, 1)}", w_ih.shape, w_ih.dtype))
    return w_folded, bias


def embedded(params, x, ws=FRESH):
    """The embedding's rows for the ids x (T, B), feature-major: (T, E, B) (a row gather)."""
    table = params["embed.weight"]                                     # (V, E)
    T, B = x.shape
    out = ws.empty("embedded", (T, table.shape[1], B), table.dtype)
    np.copyto(out, table[x].transpose(0, 2, 1))
    return out


def project(w, bias, x, inp, ws=FRESH):
    """A layer's folded input projection (T, G*H, B) from fold_input_weights' (w, bias).

    Without an input array (inp None) it gathers columns of the table w by the ids x (T, B);
    else it multiplies w by inp (T, D, B). At a small batch, whole-chunk operations beat one
    call per step. ws: where the (T, G*H, B) result comes from.
    """
    T, B = x.shape
    small = B < SMALL_BATCH
    if inp is None:
        if small:                                                   # w: (V, G*H)
            return np.ascontiguousarray(w[x].transpose(0, 2, 1))
        xs = ws.empty("xs", (T, w.shape[0], B), w.dtype)
        for t, ids in enumerate(x):            # per step: 4x faster than one gather + transpose
            np.take(w, ids, axis=1, out=xs[t], mode="clip")       # "raise" buffers out
        return xs
    G, D = w.shape                                                  # (G*H, D)
    if small:       # one stream: inp (T, D, 1) is (T, D) rows, so one GEMM against W^T
        xs = np.matmul(inp.reshape(T, D), w.T).reshape(T, G, B)
    else:
        xs = np.matmul(w, inp, out=ws.empty("xs", (T, G, B), inp.dtype))  # (T, G*H, B)
    xs += np.repeat(bias, B, axis=1)              # (G*H, B): broadcast over T only, not per row
    return xs
