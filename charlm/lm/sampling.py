"""Autoregressive sampling for any language model: draw a character from the stepper's
logits, feed it back in, repeat.

Dimensions: V vocabulary. One stream, so every array is a vector.
"""

import numpy as np


def draw(logits, rng, temperature=1.0, top_k=0, top_p=1.0):
    """One id from softmax(logits / temperature), optionally restricted to the top k ids or the
    smallest set whose probability reaches top_p. temperature 0 is greedy (argmax)."""
    top = float(logits.max())                                # NaN if any logit is NaN
    if not np.isfinite(top):
        raise FloatingPointError("model produced non-finite probabilities")
    if temperature == 0:
        return int(np.argmax(logits))
    # Shift before dividing: z <= 0, so a tiny temperature (1e-300, 1e-320) can only overflow
    # to -inf, whose exp is 0, while the maximum stays exp(0) = 1: greedy in the limit.
    with np.errstate(over="ignore"):
        z = (logits.astype(np.float64) - top) / temperature
    p = np.exp(z)
    if top_k and top_k < len(p):
        cutoff = np.partition(p, -top_k)[-top_k]
        p[p < cutoff] = 0
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cumulative = np.cumsum(p[order])
        keep = np.searchsorted(cumulative, top_p * cumulative[-1]) + 1
        p[order[keep:]] = 0
    cdf = np.cumsum(p)
    if not np.isfinite(cdf[-1]) or cdf[-1] <= 0:
        raise FloatingPointError("model produced non-finite probabilities")
    return int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))


def generate(stepper, prime_ids, length, rng, temperature=1.0, top_k=0, top_p=1.0):
    """Yields `length` ids, each fed back in as the next input. prime_ids must be non-empty."""
    for char_id in prime_ids[:-1]:
        stepper.step(char_id)
    logits = stepper.step(prime_ids[-1])
    for produced in range(1, length + 1):
        next_id = draw(logits, rng, temperature, top_k, top_p)
        yield next_id
        if produced < length:                     # the last character is never fed back
            logits = stepper.step(next_id)
