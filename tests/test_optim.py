"""Direct tests of charlm.nn.optim: updates, weight decay, clipping and schedules.

Each optimizer is checked against explicit float64 formulas written here and, where torch is
installed, against torch.optim. Updates are compared as displacements (p - p0) rather than
parameters, so a small error in a step stays visible next to large parameter values.
"""

import math

import numpy as np
import pytest

from charlm.nn.model import allocate
from charlm.nn.optim import (
    OPTIMIZERS,
    clip_by_norm,
    clip_by_value,
    global_norm,
    make_optimizer,
    schedule_factor,
)

SHAPES = {"W": (2, 3), "b": (3,)}   # a 2x3 matrix (6 leading entries, decayed), a bias of 3
N_MATRIX = 6
WD = 0.1
LRS = (0.01, 0.02, 0.005)           # a different learning rate each step
RNG = np.random.default_rng(0)
P0 = RNG.normal(size=9)             # (9,) initial parameters
# (3, 9): one gradient per step, magnitudes 1e-4..1 so eps and sqrt placement both show
GRADS = RNG.normal(size=(3, 9)) * np.logspace(-4, 0, 9)


def build(values=P0):
    """A float64 flat buffer holding `values` and its views {"W": (2, 3), "b": (3,)}."""
    flat, views = allocate(SHAPES, dtype=np.float64)
    flat[:] = values
    return flat, views


def reference(name, p, grads, lrs, wd, n):
    """p after the steps, from the textbook formulas (weight decay on p[:n] only)."""
    p = p.copy()
    s1, s2 = np.zeros_like(p), np.zeros_like(p)   # moment(s) / running squares
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = g.copy()
        if name != "adamw":
            g[:n] += wd * p[:n]                      # classic L2 decay, in the gradient
        if name == "sgd":
            p -= lr * g
        elif name == "adagrad":
            s1 += g * g
            p -= lr * g / (np.sqrt(s1) + 1e-10)
        elif name == "rmsprop":
            s1 = 0.95 * s1 + 0.05 * g * g
            p -= lr * g / (np.sqrt(s1) + 1e-8)
        else:
            s1 = 0.9 * s1 + 0.1 * g
            s2 = 0.999 * s2 + 0.001 * g * g
            m_hat, v_hat = s1 / (1 - 0.9**t), s2 / (1 - 0.999**t)
            if name == "adamw":
                p[:n] *= 1 - lr * wd                 # decoupled: shrink weights, not gradient
            p -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return p


def run(name, steps, wd=WD, grads=GRADS):
    flat, views = build()
    opt = make_optimizer(name, flat, views, weight_decay=wd, decay_size=N_MATRIX)
    for g, lr in zip(grads[:steps], LRS):
        opt.step(g.copy(), lr)                       # step may modify its gradient in place
    return opt, flat, views


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("steps", [1, 2])
def test_steps_match_the_formulas(name, steps):
    opt, flat, views = run(name, steps)
    want = reference(name, P0, GRADS[:steps], LRS, WD, N_MATRIX)
    np.testing.assert_allclose(flat - P0, want - P0, rtol=1e-10, atol=1e-15)
    assert opt.step_count == steps
    np.testing.assert_array_equal(views["W"], flat[:6].reshape(2, 3))   # views still alias
    for name_, buf in opt.moments.items():
        b = opt.moment_views[name_]["b"]
        assert np.shares_memory(b, buf) and np.array_equal(b, buf[6:])


def test_adam_first_step_is_lr_times_g_over_abs_g():
    """At t=1 the bias corrections cancel: the step is lr * g / (|g| + eps)."""
    _, flat, _ = run("adam", 1, wd=0.0)
    g, lr = GRADS[0], LRS[0]
    np.testing.assert_allclose(flat - P0, -lr * g / (np.abs(g) + 1e-8), rtol=1e-10)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_weight_decay_touches_only_the_matrix_prefix(name):
    _, flat, _ = run(name, 2, grads=np.zeros_like(GRADS))
    np.testing.assert_array_equal(flat[N_MATRIX:], P0[N_MATRIX:])     # biases: not decayed
    assert np.all(np.abs(flat[:N_MATRIX]) < np.abs(P0[:N_MATRIX]))    # weights shrink


TORCH_CASES = {"adam": ("Adam", {}), "adamw": ("AdamW", {}),
               # torch's RMSprop divides by square_avg.sqrt() + eps (eps outside the sqrt,
               # rmsprop.py _single_tensor_rmsprop), as char-rnn and charlm do
               "rmsprop": ("RMSprop", {"alpha": 0.95, "eps": 1e-8}),
               "adagrad": ("Adagrad", {}),   # defaults: eps 1e-10, lr_decay 0, accumulator 0
               "sgd": ("SGD", {})}


@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_three_steps_match_torch_optim(name):
    torch = pytest.importorskip("torch")
    cls, kwargs = TORCH_CASES[name]
    w = torch.tensor(P0[:6].reshape(2, 3), requires_grad=True)
    b = torch.tensor(P0[6:], requires_grad=True)
    groups = [{"params": [w], "weight_decay": WD}, {"params": [b], "weight_decay": 0.0}]
    topt = getattr(torch.optim, cls)(groups, lr=LRS[0], **kwargs)
    for g, lr in zip(GRADS, LRS):
        w.grad, b.grad = torch.tensor(g[:6].reshape(2, 3)), torch.tensor(g[6:])
        for group in topt.param_groups:
            group["lr"] = lr
        topt.step()
    want = np.concatenate([w.detach().numpy().ravel(), b.detach().numpy()])
    _, flat, _ = run(name, 3)
    np.testing.assert_allclose(flat - P0, want - P0, rtol=1e-6, atol=1e-12)


def test_constant_schedule_is_one_everywhere():
    for progress in (-1.0, 0.0, 0.05, 0.5, 1.0, 2.0):
        assert schedule_factor("constant", progress, warmup=0.1) == 1.0


def test_cosine_schedule_edges():
    f = lambda p, warmup=0.2: schedule_factor("cosine", p, warmup)   # noqa: E731
    assert f(0.0) == pytest.approx(0.0, abs=1e-6)
    assert f(0.1) == pytest.approx(0.5)                               # halfway up the ramp
    assert f(0.2) == pytest.approx(1.0)
    assert f(0.2 + 1e-9) == pytest.approx(1.0)
    assert f(0.6) == pytest.approx(0.55)                              # halfway down
    assert f(1.0) == pytest.approx(0.1)
    assert f(0.5, warmup=0.0) == pytest.approx(0.55)
    assert f(-3.0) == f(0.0) and f(7.0) == f(1.0)                     # progress clamped


def test_step_schedule_edges():
    f = lambda p: schedule_factor("step", p, warmup=0.0)              # noqa: E731
    assert f(0.0) == f(0.33) == 1.0
    assert f(1 / 3) == f(0.5) == 0.5
    assert f(2 / 3) == f(0.9) == 0.25
    assert f(1.0) == f(5.0) == 0.125
    assert f(-1.0) == 1.0
    # 0.3 / 0.1 is 2.9999999999999996 in float: still the third decay
    assert schedule_factor("step", 0.3, 0.0, decay_every=0.1) == 0.125


def test_unknown_schedule_raises():
    with pytest.raises(ValueError, match="linear"):
        schedule_factor("linear", 0.5, 0.0)


def test_clip_by_norm():
    g = np.array([6.0, 0.0, -8.0], np.float32)                        # norm 10
    clip_by_norm(g, 10.0, 5.0)
    np.testing.assert_allclose(g, [3.0, 0.0, -4.0], rtol=1e-6)
    assert math.isclose(float(np.linalg.norm(g)), 5.0, rel_tol=1e-6)
    for max_norm in (20.0, 0.0, -1.0):                                # under the limit, off
        g = np.array([6.0, 0.0, -8.0], np.float32)
        clip_by_norm(g, 10.0, max_norm)
        np.testing.assert_array_equal(g, [6.0, 0.0, -8.0])


def test_clip_by_value_clamps_each_entry_in_place():
    g = np.array([-5.0, -0.5, 0.0, 0.5, 5.0], np.float32)
    clip_by_value(g, 1.0)
    np.testing.assert_array_equal(g, [-1.0, -0.5, 0.0, 0.5, 1.0])


def test_global_norm():
    g = RNG.normal(size=1000).astype(np.float32)
    assert math.isclose(global_norm(g), np.linalg.norm(g.astype(np.float64)), rel_tol=1e-6)
    assert math.isclose(global_norm(GRADS[0]), np.linalg.norm(GRADS[0]), rel_tol=1e-12)
    huge = np.array([3e20, 0.0, -4e20], np.float32)                   # squares overflow float32
    assert math.isclose(global_norm(huge), 5e20, rel_tol=1e-6)
