"""Softmax cross-entropy over the vocabulary, fused with its gradient; unit conversions.

Dimensions: N scored positions, V vocabulary size.
"""

import math

import numpy as np


def cross_entropy(logits, targets, want_grad=True, log_probs=None):
    """Summed negative log-likelihood in nats (float64) and, if asked, d(mean nll)/d logits.

    logits: (N, V), overwritten in place (it becomes the gradient); targets: (N,) ids.
    log_probs: None, or an (N,) float64 array to receive log p(target) of each row, the
    numbers token_log_probs gives bit for bit (the same operations in the same order).
    """
    n = logits.shape[0]
    rows = np.arange(n)
    logits -= logits.max(axis=1, keepdims=True)    # exp() cannot overflow
    target_logit = logits[rows, targets].astype(np.float64)
    np.exp(logits, out=logits)
    total = logits.sum(axis=1, dtype=np.float64)   # (N,) partition function of each row
    nll_sum = float(np.log(total).sum() - target_logit.sum())
    if log_probs is not None:
        np.subtract(target_logit, np.log(total), out=log_probs)
    if not want_grad:
        return nll_sum, None
    logits /= total.astype(logits.dtype)[:, None]  # softmax
    logits[rows, targets] -= 1
    logits *= logits.dtype.type(1.0 / n)
    return nll_sum, logits


def token_log_probs(logits, targets):
    """log p(target) for each row, float64; logits: (N, V) (left untouched)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(shifted).sum(axis=1, dtype=np.float64))
    return shifted[np.arange(len(targets)), targets].astype(np.float64) - log_total


def bits_per_char(nats):
    return nats / math.log(2)


def perplexity(nats):
    return math.exp(nats) if nats < 700 else math.inf
