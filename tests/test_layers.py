"""The gathered input projection's gradient equals a dense one-hot reference."""

import numpy as np
import pytest

from charlm.layers import gather_rows_grad, recurrent_weight_grad


@pytest.mark.parametrize("num_rows,n", [(7, 50), (2000, 3000)])   # the loop and reduceat paths
def test_gather_rows_grad_matches_one_hot_matmul(num_rows, n):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, num_rows, n)
    d_rows = rng.standard_normal((n, 5))
    one_hot = np.zeros((n, num_rows))
    one_hot[np.arange(n), ids] = 1
    assert np.allclose(gather_rows_grad(ids, d_rows, num_rows), one_hot.T @ d_rows)


def test_recurrent_weight_grad_matches_a_loop():
    rng = np.random.default_rng(1)
    T, B, G, H = 4, 3, 8, 2
    da, hs = rng.standard_normal((T, B, G)), rng.standard_normal((T, B, H))
    h0 = rng.standard_normal((B, H))
    h_prev = np.concatenate([h0[None], hs[:-1]])
    expected = sum(da[t].T @ h_prev[t] for t in range(T))
    assert np.allclose(recurrent_weight_grad(da, hs, h0), expected)
