"""The layout helpers equal plain references: a dense one-hot matmul and a loop over steps."""

import numpy as np
import pytest

from charlm.nn.layout import feature_rows, gather_columns_grad, shifted_rows


@pytest.mark.parametrize("num_cols,n", [(7, 50), (2000, 3000)])   # few and many distinct ids
def test_gather_columns_grad_matches_one_hot_matmul(num_cols, n):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, num_cols, n)
    d_cols = rng.standard_normal((5, n))
    one_hot = np.zeros((n, num_cols))
    one_hot[np.arange(n), ids] = 1
    assert np.allclose(gather_columns_grad(ids, d_cols, num_cols), d_cols @ one_hot)


def test_recurrent_weight_grad_from_rows_matches_a_loop():
    rng = np.random.default_rng(1)
    T, B, G, H = 4, 3, 8, 2
    da, hs = rng.standard_normal((T, G, B)), rng.standard_normal((T, H, B))
    h0 = rng.standard_normal((H, B))
    h_prev = np.concatenate([h0[None], hs[:-1]])
    expected = sum(da[t] @ h_prev[t].T for t in range(T))
    assert np.allclose(feature_rows(da) @ shifted_rows(h0, hs).T, expected)
    assert feature_rows(hs)[:, B * 2 + 1].tolist() == hs[2, :, 1].tolist()
