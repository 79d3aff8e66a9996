"""Float64 central differences and relative error, shared by the gradient-check tests."""

import numpy as np


def numeric_grad(f, x, eps=1e-6):
    """Central differences of f() with respect to every entry of x, which f reads in place."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def rel_error(a, b):
    """Largest difference relative to the larger norm, robust to tiny gradients."""
    scale = max(np.linalg.norm(a), np.linalg.norm(b), 1e-12)
    return float(np.linalg.norm(a - b) / scale)
