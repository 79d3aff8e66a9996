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

    ids: (N,) ints; d_rows: (N, K). Returns (num_rows, K). Sorting once and reducing
    contiguous runs is much faster than np.add.at and never builds a one-hot matrix.
    """
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((num_rows, d_rows.shape[1]), d_rows.dtype)
    out[sorted_ids[starts]] = np.add.reduceat(d_rows[order], starts, axis=0)
    return out
