"""Beam search for the most likely continuation of a prime, for any language model.

W hypotheses advance together. At each position every one offers its W best next characters
(the forced one, at a template's forced position; only allowed ones at a chosen position),
scored by the model's own log-probability (temperature 1) of the whole continuation; the W
best of these W * W survive. One stepper serves them all: before a hypothesis is extended its
state is restored from its snapshot, so the cost is W model steps per position. A hypothesis
that ends with a stop string is finished and keeps its score; since a score only falls as a
text grows, the search ends once no live hypothesis can beat the best finished one. Ties go to
the earlier hypothesis, then to the lower id, so the search is deterministic, and with W = 1
it takes the most likely allowed character at each step: greedy sampling.

Dimensions: V vocabulary, W beam width. Each live hypothesis holds one (V,) distribution.
"""

from dataclasses import dataclass

import numpy as np

from charlm.lm.sampling import best_ids, feed


@dataclass
class Hypothesis:
    score: float               # the model's log-probability of ids given the prime
    ids: list                  # the continuation so far
    state: object = None       # the stepper's snapshot after ids (None once finished)
    log_probs: np.ndarray | None = None   # (V,) float64 of the next character


def log_softmax(logits):
    """(V,) float64 log-probabilities of the stepper's logits."""
    z = logits.astype(np.float64)
    top = z.max()
    if not np.isfinite(top):
        raise FloatingPointError("model produced non-finite probabilities")
    z -= top
    z -= np.log(np.exp(z).sum())
    return z


def beam_search(stepper, prime_ids, form, width, stops=None, vocab=None, logits=None):
    """Yields the ids of the best continuation as they become certain (once every hypothesis
    still in the running shares them); returns its log-probability (the generator's value).
    stops and vocab as for charlm.lm.sampling.generate; logits: the stepper is already past
    the prime, these follow it."""
    log_probs = log_softmax(feed(stepper, prime_ids) if logits is None else logits)
    alive = [Hypothesis(0.0, [], stepper.snapshot(), log_probs)]
    allowed = None if form.allowed is None else np.flatnonzero(form.allowed)   # ids, ascending
    finished, shown, running = None, 0, alive
    for position in range(form.length):
        chosen = _extend(alive, form.forced.get(position), allowed, width)
        alive = []
        for parent, char_id, score in chosen:
            ids = parent.ids + [char_id]
            if stops and stops.ended(vocab.decode(ids[-stops.longest:])):
                if finished is None or score > finished.score:
                    finished = Hypothesis(score, ids)
                continue
            child = Hypothesis(score, ids)
            if position + 1 < form.length:        # the last character is never fed back
                stepper.restore(parent.state)
                child.log_probs = log_softmax(stepper.step(char_id))
                child.state = stepper.snapshot()
            alive.append(child)
        if finished is not None:                  # a live one that cannot win is dropped
            alive = [h for h in alive if h.score > finished.score]
        running = alive + ([finished] if finished is not None else [])
        certain = _common_prefix([h.ids for h in running])
        yield from running[0].ids[shown:certain]
        shown = max(shown, certain)
        if not alive:
            break
    best = max(running, key=lambda h: h.score)    # the first of equals: deterministic
    yield from best.ids[shown:]
    return best.score


def _extend(alive, forced, allowed, width):
    """The width best (parent, id, score) extensions of the live hypotheses, best first:
    each by the forced id, or by its width best ids among allowed (None: all)."""
    parents, ids, scores = [], [], []
    for h in alive:
        if forced is not None:
            options = np.array([forced])
        elif allowed is None:
            options = best_ids(h.log_probs, width)
        else:
            options = allowed[best_ids(h.log_probs[allowed], width)]
        parents.extend([h] * len(options))
        ids.extend(int(i) for i in options)
        scores.extend(h.score + h.log_probs[options])
    order = np.lexsort((np.arange(len(scores)), -np.array(scores)))[:width]
    return [(parents[i], ids[i], float(scores[i])) for i in order]


def _common_prefix(sequences):
    n = min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != sequences[0][i] for s in sequences):
            return i
    return n
