"""Autoregressive sampling for any language model: draw a character from the stepper's
logits, feed it back in, repeat; each character with the log-probability it was drawn with.

Dimensions: V vocabulary. One stream, so every array is a vector.
"""

import numpy as np

from charlm.lm.template import Form


def distribution(logits, temperature=1.0, top_k=0, top_p=1.0, allowed=None):
    """The (V,) float64 probabilities a character is drawn from: the ids outside allowed
    (a (V,) mask; None: all) removed, then softmax(logits / temperature), restricted to the
    top k ids or the smallest set whose probability reaches top_p, renormalised.
    temperature 0 is greedy: all the mass on the most likely (allowed) id, the lowest on a tie."""
    p = _weights(logits, temperature, top_k, top_p, allowed)
    return p / _checked(p.sum())


def draw(logits, rng, temperature=1.0, top_k=0, top_p=1.0, allowed=None):
    """(one id drawn from distribution(...), the natural log of its probability there).
    Greedy draws no random number."""
    p = _weights(logits, temperature, top_k, top_p, allowed)
    if temperature == 0:
        return int(np.argmax(p)), 0.0
    cdf = np.cumsum(p)                      # unnormalised: one pass fewer per character
    total = _checked(cdf[-1])
    char_id = int(np.searchsorted(cdf, rng.random() * total, side="right"))
    if char_id == len(p):                   # rounding put the draw past the end
        char_id = int(np.flatnonzero(p)[-1])
    return char_id, float(np.log(p[char_id] / total))


def _checked(total):
    if not np.isfinite(total) or total <= 0:
        raise FloatingPointError("model produced non-finite probabilities")
    return total


def _weights(logits, temperature, top_k, top_p, allowed):
    """distribution(...) up to a positive factor."""
    if allowed is not None:
        logits = np.where(allowed, logits, -np.inf)
    top = float(logits.max())                                # NaN if any logit is NaN
    if not np.isfinite(top):
        raise FloatingPointError("model produced non-finite probabilities")
    if temperature == 0:
        p = np.zeros(len(logits))
        p[int(np.argmax(logits))] = 1.0
        return p
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
    return p


def best_ids(values, k):
    """The ids of the k largest values, best first, ties to the lower id (exact, O(V))."""
    if k < len(values):
        kth = np.partition(values, -k)[-k]
        ids = np.flatnonzero(values >= kth)
    else:
        ids = np.arange(len(values))
    return ids[np.lexsort((ids, -values[ids]))][:k]


def feed(stepper, prime_ids):
    """Run the prime (non-empty) through the stepper; the logits that follow it (a copy)."""
    for char_id in prime_ids[:-1]:
        stepper.step(char_id)
    return np.array(stepper.step(prime_ids[-1]))


def generate(stepper, prime_ids, form, rng, temperature=1.0, top_k=0, top_p=1.0,
             stops=None, vocab=None, logits=None):
    """Yields (id, log-probability it was drawn with) for each position of form (a Form, or an
    int: that many free characters), each fed back in as the next input; a forced id is
    certain (log-probability 0). Ends early once the text ends with one of stops (vocab
    decodes ids for them). logits: the stepper is already past the prime, these follow it."""
    if isinstance(form, int):
        form = Form.free(form)
    if logits is None:
        logits = feed(stepper, prime_ids)
    tail, forced_at, allowed, last = "", form.forced, form.allowed, form.length - 1
    for position in range(form.length):
        forced = forced_at.get(position) if forced_at else None
        if forced is None:
            char_id, log_prob = draw(logits, rng, temperature, top_k, top_p, allowed)
        else:
            char_id, log_prob = forced, 0.0
        yield char_id, log_prob
        if stops:                                  # a Stops, or None
            tail = (tail + vocab.char(char_id))[-stops.longest:]
            if stops.ended(tail):
                return
        if position < last:                       # the last character is never fed back
            logits = stepper.step(char_id)
