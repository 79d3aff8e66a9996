"""The adaptive softmax (charlm.nn.adaptive): float64 finite differences, a proper
distribution, and torch.nn.AdaptiveLogSoftmaxWithLoss's numbers with the same weights."""

import numpy as np
import pytest
from gradcheck import numeric_grad, rel_error

from charlm.nn import adaptive
from charlm.nn.model import allocate

V, H, CUTOFFS = 20, 8, (5, 10, 15)


def _setup(rng, N=12, targets=None):
    flat, params = allocate(adaptive.param_shapes(V, H, CUTOFFS, div_value=2.0), np.float64)
    flat[:] = rng.standard_normal(flat.shape) * 0.5
    x = rng.standard_normal((N, H))
    if targets is None:     # the shortlist and clusters 0 and 2; cluster 1 is never reached
        targets = rng.choice([0, 1, 3, 4, 5, 7, 9, 15, 16, 19], N)
    return flat, params, x, np.asarray(targets)


def test_shapes_follow_pytorch():
    shapes = adaptive.param_shapes(6000, 256, (500, 2000), div_value=4.0)
    assert shapes == {"head.weight": (502, 256),
                      "tail.0.0.weight": (64, 256), "tail.0.1.weight": (1500, 64),
                      "tail.1.0.weight": (16, 256), "tail.1.1.weight": (4000, 16)}


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    flat, params, x, targets = _setup(rng)
    N = len(x)

    def objective():
        return adaptive.loss_forward(params, x, targets, CUTOFFS)[0] / N

    _, cache = adaptive.loss_forward(params, x, targets, CUTOFFS)
    _, grads = allocate(adaptive.param_shapes(V, H, CUTOFFS, 2.0), np.float64)
    grads["tail.1.0.weight"][...] = 7.0                  # stale: must be cleared, not kept
    dx = adaptive.loss_backward(params, cache, grads, scale=1.0 / N)
    for name in params:
        assert rel_error(grads[name], numeric_grad(objective, params[name])) < 1e-6, name
    assert not grads["tail.1.0.weight"].any() and not grads["tail.1.1.weight"].any()
    assert rel_error(dx, numeric_grad(objective, x)) < 1e-6


def test_log_prob_is_a_distribution_that_agrees_with_the_loss():
    rng = np.random.default_rng(1)
    _, params, x, targets = _setup(rng)
    logp = adaptive.log_prob(params, x, CUTOFFS, V)
    assert logp.shape == (len(x), V)
    assert np.allclose(np.exp(logp).sum(axis=1), 1.0, atol=1e-12)
    total, _ = adaptive.loss_forward(params, x, targets, CUTOFFS)
    assert total == pytest.approx(-logp[np.arange(len(x)), targets].sum(), rel=1e-12)


def test_cutoffs_are_checked_and_chosen_by_frequency():
    assert adaptive.check_cutoffs([5, 10], 20) == (5, 10)
    for bad in ([], [0, 5], [10, 5], [5, 5], [5, 20]):
        with pytest.raises(ValueError, match="cutoffs"):
            adaptive.check_cutoffs(bad, 20)
    zipf = 1.0 / np.arange(1, 6001)                      # counts of a Zipf-like vocabulary
    cuts = adaptive.frequency_cutoffs(zipf)
    assert list(cuts) == sorted(set(cuts)) and 0 < cuts[0] and cuts[-1] < 5999
    covered = np.cumsum(zipf) / zipf.sum()
    assert covered[cuts[0] - 1] >= 0.8 > covered[cuts[0] - 2]
    assert adaptive.frequency_cutoffs(np.ones(3)) == (1,)


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("N", [1, 3, 6, 40])
def test_matches_torch_adaptive_log_softmax_float64(N):
    rng = np.random.default_rng(2)
    _, params, x, targets = _setup(rng, N=N, targets=rng.integers(0, V, N))
    ref = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, list(CUTOFFS), div_value=2.0,
                                              dtype=torch.float64)
    ref.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    t_x = torch.from_numpy(x.copy()).requires_grad_()
    t_out = ref(t_x, torch.from_numpy(targets.astype(np.int64)))
    t_out.loss.backward()

    total, cache = adaptive.loss_forward(params, x, targets, CUTOFFS)
    _, grads = allocate(adaptive.param_shapes(V, H, CUTOFFS, 2.0), np.float64)
    dx = adaptive.loss_backward(params, cache, grads, scale=1.0 / N)

    def close(ours, theirs):
        theirs = theirs.detach().numpy()
        return np.linalg.norm(ours - theirs) <= 1e-8 * max(np.linalg.norm(theirs), 1e-30)

    assert abs(total / N - t_out.loss.item()) <= 1e-8 * abs(t_out.loss.item())
    assert close(adaptive.log_prob(params, x, CUTOFFS, V), ref.log_prob(t_x))
    for name, p in ref.named_parameters():
        assert close(grads[name], p.grad if p.grad is not None else torch.zeros_like(p)), name
    assert close(dx, t_x.grad)
