"""`charlm eval cloze`: how well a model guesses characters blanked one at a time.

A seeded random fraction of a text's positions (never its first or last character, so that
every model has context on the side it reads) is blanked one at a time, the rest of the text
left as it is. For each blank a model gives a distribution over the vocabulary:
- the bidirectional model: p(x_t | x_<t, x_>t), every blank from one pass over the text;
- a left-to-right model (any kind: recurrent, n-gram, a mixture), from the left context only:
  p(x_t | x_<t), one pass of its stepper over the text;
- the same with rescoring: p(c | the rest) proportional to the probability of the text with c
  at the blank, as `charlm fill` ranks candidates, over the `window` characters either side
  of the blank (every candidate of a blank scored as a parallel stream).
The figures: mean nats of the blanked characters, and how often the true one is the most
likely candidate (top-1) or among the five most likely (top-5, ties to the lower id).
"""

import time

import numpy as np

from charlm.lm import score_texts
from charlm.lm.fill import cloze_at, is_cloze

CLOZE, LEFT, RESCORED = "cloze", "left context", "rescored"
DEFAULT_WINDOW = 32


def blank_positions(n, fraction, seed):
    """Sorted positions 1 .. n - 2, round(fraction * (n - 2)) of them (at least one), drawn
    without replacement by a generator seeded with seed."""
    inner = max(n - 2, 0)
    if inner == 0:
        return np.zeros(0, np.int64)
    count = min(inner, max(1, round(fraction * inner)))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(inner, size=count, replace=False)) + 1


def method_of(model, rescore):
    return CLOZE if is_cloze(model) else RESCORED if rescore else LEFT


def evaluate(model, ids, positions, rescore=False, window=DEFAULT_WINDOW):
    """{"method", "blanks", "nats", "top1", "top5", "seconds"} of model on ids at positions."""
    started = time.perf_counter()
    method = method_of(model, rescore)
    if method == CLOZE:
        log_probs = cloze_at(model, ids[None, :], positions)[:, 0]
    elif method == LEFT:
        log_probs = _left_context(model, ids, positions)
    else:
        log_probs = _rescored(model, ids, positions, window)
    return {"method": method, **figures(log_probs, ids[positions]),
            "seconds": time.perf_counter() - started}


def figures(log_probs, truth):
    """Mean nats, top-1 and top-5 accuracy of the true ids truth (P,) under log_probs (P, V)."""
    true_lp = log_probs[np.arange(len(truth)), truth]
    # the rank of the truth: candidates scoring higher, and equal ones with a lower id
    higher = (log_probs > true_lp[:, None]).sum(axis=1)
    ties = ((log_probs == true_lp[:, None]) &
            (np.arange(log_probs.shape[1]) < truth[:, None])).sum(axis=1)
    rank = higher + ties
    return {"blanks": int(len(truth)), "nats": float(-true_lp.mean()),
            "top1": float((rank < 1).mean()), "top5": float((rank < 5).mean())}


def _left_context(model, ids, positions):
    """(P, V) log p(c | x_<t) at each position t, from the model's stepper over the text."""
    stepper = model.stepper()
    wanted = np.zeros(len(ids), bool)
    wanted[positions] = True
    out = []
    for t in range(1, int(positions[-1]) + 1):
        logits = stepper.step(int(ids[t - 1]))
        if wanted[t]:
            out.append(_log_softmax(np.asarray(logits, np.float64)))
    return np.stack(out)


def _rescored(model, ids, positions, window, streams=4096):
    """(P, V) log p(c | the window around t) at each position t, by scoring each completed
    window: 2 * window + 1 characters centred on t, shifted inwards at the text's ends so
    that every window has the same length and the blanks of many go in one call (about
    `streams` texts at a time)."""
    V, n = model.vocab.size, min(len(ids), 2 * window + 1)
    starts = np.clip(positions - window, 0, len(ids) - n)
    per_call = max(1, streams // V)
    out = []
    for g in range(0, len(positions), per_call):
        t, lo = positions[g:g + per_call], starts[g:g + per_call]
        texts = np.repeat(ids[lo[:, None] + np.arange(n)], V, axis=0)        # (k * V, n)
        texts[np.arange(len(texts)), np.repeat(t - lo, V)] = np.tile(np.arange(V), len(t))
        nats = score_texts(model, texts).reshape(len(t), V)
        out.extend(_log_softmax(-row) for row in nats)
    return np.stack(out)


def _log_softmax(scores):
    with np.errstate(divide="ignore", invalid="ignore"):
        shifted = scores - scores.max()
        return shifted - np.log(np.exp(shifted).sum())
