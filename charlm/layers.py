"""Layout helpers shared by the model and the cells: feature-major chunks and their gradients.

Inside a chunk the model keeps every per-step array feature-major, (T, F, B): the slice for one
step is a contiguous (F, B) block, and the recurrent matmul is W (G*H, H) @ h (H, B), the
orientation BLAS is fastest in at small batch. Weight gradients need the other grouping, all
T * B positions side by side; `feature_rows` makes it with one transposing copy.
"""

import numpy as np

ONE_HOT_MAX_COLS = 256          # a one-hot matrix of N x 256 float32 is 8 MB at N = 8192


def feature_rows(chunk):
    """(T, F, B) -> (F, T * B), contiguous; column t * B + b is position (t, b)."""
    T, F, B = chunk.shape
    return np.ascontiguousarray(chunk.transpose(1, 0, 2)).reshape(F, T * B)


def shifted_rows(h0, hs):
    """Rows of the previous outputs [h0, hs_0 .. hs_{T-2}]: (H, T * B).

    h0: (H, B) state before the chunk; hs: (T, H, B) outputs. The recurrent weight gradient is
    sum_t da_t h_{t-1}^T, a single matmul against these rows.
    """
    T, H, B = hs.shape
    rows = np.empty((H, T, B), hs.dtype)
    rows[:, 0] = h0
    rows[:, 1:] = hs[:-1].transpose(1, 0, 2)
    return rows.reshape(H, T * B)


def gather_columns_grad(ids, d_cols, num_cols):
    """Gradient of table[:, ids] with respect to table: columns of d_cols summed by id.

    ids: (N,) ints; d_cols: (K, N). Returns (K, num_cols). A small vocabulary multiplies by a
    one-hot (N, num_cols) matrix: one GEMM, ten times faster than sorting columns. A large one
    sorts the columns by id once and sums each id's run, never building the one-hot matrix
    and never using np.add.at.
    """
    n = len(ids)
    if num_cols <= ONE_HOT_MAX_COLS:
        one_hot = np.zeros((n, num_cols), d_cols.dtype)
        one_hot[np.arange(n), ids] = 1
        return d_cols @ one_hot
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((d_cols.shape[0], num_cols), d_cols.dtype)
    sums = np.add.reduceat(np.take(d_cols, order, axis=1), starts, axis=1)
    out[:, sorted_ids[starts]] = sums
    return out
