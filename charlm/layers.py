"""Pieces shared by the cells and the model: gathered input projection and its gradient."""

import numpy as np


def recurrent_weight_grad(da, hs, h0):
    """sum_t da_t^T h_{t-1}: (G*H, H), as two matmuls without building the shifted sequence.

    da: (T, B, G*H) pre-activation gradients; hs: (T, B, H) outputs; h0: (B, H) initial state.
    """
    T, B, GH = da.shape
    H = hs.shape[2]
    dw = da[0].T @ h0
    if T > 1:
        dw += da[1:].reshape(-1, GH).T @ hs[:-1].reshape(-1, H)
    return dw


def gather_rows_grad(ids, d_rows, num_rows):
    """Gradient of table[ids] with respect to table: rows of d_rows summed by id.

    ids: (N,) ints; d_rows: (N, K). Returns (num_rows, K). Rows are sorted by id once, then each
    id's contiguous run is summed; this never builds a one-hot matrix and avoids np.add.at.
    With few distinct ids a Python loop of row-block sums beats np.add.reduceat, whose
    axis-0 reduction walks memory column by column.
    """
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    sorted_rows = d_rows[order]                                # (N, K)
    out = np.zeros((num_rows, d_rows.shape[1]), d_rows.dtype)
    if len(starts) > 512:
        out[sorted_ids[starts]] = np.add.reduceat(sorted_rows, starts, axis=0)
        return out
    ends = np.r_[starts[1:], len(ids)]
    for row, start, end in zip(sorted_ids[starts].tolist(), starts.tolist(), ends.tolist()):
        np.sum(sorted_rows[start:end], axis=0, out=out[row])
    return out
