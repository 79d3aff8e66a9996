"""Per character of a text: how surprised a model was (nats) and what it expected instead.

Runs any LanguageModel's stepper over the text once, one distribution (V,) at a time, so a
long text never needs an (N, V) array: the memory is the top-k table, (N, k). The first
character is context only, as in the score (charlm.nn.inference): N characters give N - 1
predictions, and their nats sum to the model's score of the text.
"""

from dataclasses import dataclass

import numpy as np

TOP = 5


@dataclass
class Surprise:
    nats: np.ndarray        # (N - 1,) float64: -log p(ids[t + 1] | ids[: t + 1])
    top_ids: np.ndarray     # (N - 1, k) int64: the k most likely next ids, most likely first
    top_probs: np.ndarray   # (N - 1, k) float64: their probabilities


def surprise(model, ids, top=TOP) -> Surprise:
    """The Surprise of ids (N,) under model, from its start state."""
    n = max(len(ids) - 1, 0)
    k = min(top, model.vocab.size)
    nats = np.empty(n)
    top_ids = np.empty((n, k), np.int64)
    top_probs = np.empty((n, k))
    stepper = model.stepper()
    with np.errstate(all="ignore"):             # a non-finite model shows as non-finite nats
        for t in range(n):
            scores = stepper.step(int(ids[t])).astype(np.float64)   # a copy: the buffer is reused
            peak = scores.max()
            log_total = peak + np.log(np.exp(scores - peak).sum())
            nats[t] = log_total - scores[ids[t + 1]]
            # every id tied with the k-th score is a candidate, so ties go to the lower id
            kth = -np.partition(-scores, k - 1)[k - 1]
            best = np.flatnonzero(scores >= kth)
            best = best[np.lexsort((best, -scores[best]))][:k]  # most likely first
            top_ids[t] = best
            top_probs[t] = np.exp(scores[best] - log_total)
    return Surprise(nats, top_ids, top_probs)
