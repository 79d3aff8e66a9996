"""Layout helpers shared by the model and the cells: feature-major chunks and their gradients.

Inside a chunk the model keeps every per-step array feature-major, (T, F, B): the slice for one
step is a contiguous (F, B) block, and the recurrent matmul is W (G*H, H) @ h (H, B), the
orientation BLAS is fastest in at small batch. Weight gradients need the other grouping, all
T * B positions side by side; `feature_rows` makes it with one transposing copy.
"""

import numpy as np

ONE_HOT_MAX_COLS = 256          # a one-hot matrix of N x 256 float32 is 8 MB at N = 8192


def feature_rows(chunk, out=None):
    """(T, F, B) -> (F, T * B), contiguous; column t * B + b is position (t, b).

    out: an (F, T * B) array to write into (else a new one).
    """
    T, F, B = chunk.shape
    rows = np.empty((F, T * B), chunk.dtype) if out is None else out
    np.copyto(rows.reshape(F, T, B), chunk.transpose(1, 0, 2))
    return rows


def shifted_rows(h0, hs, out=None):
    """Rows of the previous outputs [h0, hs_0 .. hs_{T-2}]: (H, T * B).

    h0: (H, B) state before the chunk; hs: (T, H, B) outputs; out: an (H, T * B) array to write
    into (else a new one). The recurrent weight gradient is sum_t da_t h_{t-1}^T, a single
    matmul against these rows.
    """
    T, H, B = hs.shape
    rows = (np.empty((H, T * B), hs.dtype) if out is None else out).reshape(H, T, B)
    rows[:, 0] = h0
    rows[:, 1:] = hs[:-1].transpose(1, 0, 2)
    return rows.reshape(H, T * B)


def scale_rows(w, scale, out=None):
    """w (R, C) with row r multiplied by scale[r]: a cell's gate pre-scale folded into weights.

    out: an (R, C) array to write into (else a new one).
    """
    return np.multiply(w, scale[:, None], out=out)


def gather_columns_grad(ids, d_cols, num_cols, one_hot=None):
    """Gradient of table[:, ids] with respect to table: columns of d_cols summed by id.

    ids: (N,) ints; d_cols: (K, N). Returns (K, num_cols). A small vocabulary multiplies by a
    one-hot (N, num_cols) matrix: one GEMM, ten times faster than sorting columns. A large one
    sorts the columns by id once and sums each id's run, never building the one-hot matrix
    and never using np.add.at. one_hot: an (N, num_cols) array to build it in (else a new one).
    """
    n = len(ids)
    if num_cols <= ONE_HOT_MAX_COLS:
        if one_hot is None:
            one_hot = np.zeros((n, num_cols), d_cols.dtype)
        else:
            one_hot.fill(0)
        one_hot[np.arange(n), ids] = 1
        return d_cols @ one_hot
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out = np.zeros((d_cols.shape[0], num_cols), d_cols.dtype)
    sums = np.add.reduceat(np.take(d_cols, order, axis=1), starts, axis=1)
    out[:, sorted_ids[starts]] = sums
    return out


# OpenBLAS runs a float32 GEMV of this many weights on all threads
GEMV_THREADED_SIZE = 460_800


def one_stream_order(w):
    """w (R, C), stored for the one-stream GEMV h @ w.T (the cells' one-stream paths): column-
    major while the BLAS would run that GEMV on one thread, where the column-major kernel is up
    to 30% faster (LSTM, H 128-320); from GEMV_THREADED_SIZE up the row-major one is as fast or
    faster. Scoring and the one-stream training forward both take w from here, so they run
    the same kernel and give the same numbers bit for bit."""
    if w.size < GEMV_THREADED_SIZE:
        return np.asfortranarray(w)
    return w
