"""Optimizers, gradient clipping and learning-rate schedules over one flat parameter buffer.

The optimizer sees the whole model as a single vector, so each update is a handful of
whole-buffer operations whatever the number of layers. Moments are views keyed like the
parameters (for the checkpoint) and live in flat buffers of their own.
"""

import math

import numpy as np

from charlm import names


def global_norm(grad_flat):
    """L2 norm of all gradients. float32 first (fast); float64 when float32 overflows."""
    with np.errstate(over="ignore"):             # an overflow is what the fallback is for
        norm = math.sqrt(float(np.dot(grad_flat, grad_flat)))
    if not math.isfinite(norm) and np.isfinite(grad_flat).all():
        norm = float(np.linalg.norm(grad_flat.astype(np.float64)))
    return norm


def clip_by_norm(grad_flat, norm, max_norm):
    """Scale all gradients together to a global norm of at most max_norm (keeps direction).

    norm must be finite: an inf norm would turn into a 0 * inf = NaN scale factor, so the
    caller checks it first.
    """
    if max_norm > 0 and norm > max_norm:
        grad_flat *= grad_flat.dtype.type(max_norm / (norm + 1e-6))


def clip_by_value(grad_flat, limit):
    """Clamp each gradient entry to [-limit, limit] (char-rnn's --grad_clip)."""
    np.clip(grad_flat, -limit, limit, out=grad_flat)


def schedule_factor(kind, progress, warmup, decay_every=1 / 3, decay_rate=0.5, floor=0.1):
    """Multiplier of the base learning rate at progress in [0, 1] of the run.

    kind is one of charlm.names.SCHEDULES. warmup is a fraction of the run with a linear
    ramp from 0 (none for constant); cosine decays to `floor` of the base rate at the end;
    step multiplies by decay_rate at every decay_every.
    """
    if kind not in names.SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {kind!r}")
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return (progress + 1e-9) / warmup if kind != "constant" else 1.0
    if kind == "cosine":
        span = (progress - warmup) / max(1.0 - warmup, 1e-9)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * span))
    if kind == "step":
        return decay_rate ** math.floor(progress / decay_every + 1e-9)
    return 1.0


class Optimizer:
    """Base: holds the flat params, the moment buffers and the update count."""

    moment_names = ()

    def __init__(self, flat, views, weight_decay=0.0, decay_size=0):
        self.flat = flat
        self.weight_decay = weight_decay
        self.decay_size = decay_size          # leading entries that are matrices, not biases
        self.step_count = 0
        self.moments = {}
        self.moment_views = {}
        for name in self.moment_names:
            buf = np.zeros_like(flat)
            self.moments[name] = buf
            self.moment_views[name] = {
                key: buf[_offset(flat, v):_offset(flat, v) + v.size].reshape(v.shape)
                for key, v in views.items()}
        self._tmp = np.empty_like(flat)

    def step(self, grad, lr):
        self.step_count += 1
        self._update(grad, lr)

    def _decay_in_gradient(self, grad):
        """L2 regularisation added to the gradient (classic weight decay, not AdamW's)."""
        if self.weight_decay > 0:
            n = self.decay_size
            grad[:n] += self.weight_decay * self.flat[:n]


def _offset(flat, view):
    start = view.__array_interface__["data"][0] - flat.__array_interface__["data"][0]
    return start // flat.itemsize


class SGD(Optimizer):
    """Plain gradient descent, p -= lr * g."""

    def _update(self, grad, lr):
        self._decay_in_gradient(grad)
        np.multiply(grad, lr, out=self._tmp)
        self.flat -= self._tmp


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011): lr * g / (sqrt(sum of g^2) + 1e-10)."""

    moment_names = ("sum_sq",)

    def _update(self, grad, lr):
        self._decay_in_gradient(grad)
        acc, tmp = self.moments["sum_sq"], self._tmp
        np.multiply(grad, grad, out=tmp)
        acc += tmp
        np.sqrt(acc, out=tmp)
        tmp += 1e-10
        np.divide(grad, tmp, out=tmp)
        tmp *= lr
        self.flat -= tmp


class RMSprop(Optimizer):
    """As char-rnn: a running mean of squared gradients with alpha 0.95."""

    moment_names = ("square_avg",)
    alpha, eps = 0.95, 1e-8

    def _update(self, grad, lr):
        self._decay_in_gradient(grad)
        avg, tmp = self.moments["square_avg"], self._tmp
        avg *= self.alpha
        np.multiply(grad, grad, out=tmp)
        tmp *= 1 - self.alpha
        avg += tmp
        np.sqrt(avg, out=tmp)
        tmp += self.eps
        np.divide(grad, tmp, out=tmp)
        tmp *= lr
        self.flat -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015); with decoupled=True, AdamW (Loshchilov & Hutter, 2019)."""

    moment_names = ("exp_avg", "exp_avg_sq")
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    decoupled = False

    def _update(self, grad, lr):
        if not self.decoupled:
            self._decay_in_gradient(grad)
        m, v, tmp = self.moments["exp_avg"], self.moments["exp_avg_sq"], self._tmp
        t = self.step_count
        m *= self.beta1
        np.multiply(grad, 1 - self.beta1, out=tmp)
        m += tmp
        v *= self.beta2
        np.multiply(grad, grad, out=tmp)
        tmp *= 1 - self.beta2
        v += tmp
        bias1 = 1 - self.beta1 ** t
        bias2 = 1 - self.beta2 ** t
        np.sqrt(v, out=tmp)
        tmp *= 1 / math.sqrt(bias2)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= lr / bias1
        if self.decoupled and self.weight_decay > 0:
            n = self.decay_size
            self.flat[:n] *= 1 - lr * self.weight_decay
        self.flat -= tmp


class AdamW(Adam):
    decoupled = True


# name (charlm.names.OPTIMIZERS) -> class; its moment_names are the checkpoint's optim/ keys
OPTIMIZERS = {"adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad, "sgd": SGD}
assert tuple(OPTIMIZERS) == names.OPTIMIZERS


def make_optimizer(name, flat, views, weight_decay=0.0, decay_size=0):
    return OPTIMIZERS[name](flat, views, weight_decay, decay_size)
