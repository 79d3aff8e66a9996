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

Dimensions: V vocabulary, W beam width, L length. Each live hypothesis holds one (V,)
distribution; the texts share their common beginnings as a tree of characters, so a step
costs O(W) beyond the model, not O(W L).
"""

from dataclasses import dataclass

import numpy as np

from charlm.lm.sampling import best_ids, feed


class Node:
    """The last character of a continuation; its parent holds the one before."""

    __slots__ = ("char_id", "parent", "depth")

    def __init__(self, char_id=None, parent=None):
        self.char_id, self.parent = char_id, parent
        self.depth = 0 if parent is None else parent.depth + 1   # characters so far

    def ids(self, after=0):
        """The ids of the continuation from position `after` (0: all of it) to here."""
        out, node = [], self
        while node.depth > after:
            out.append(node.char_id)
            node = node.parent
        return out[::-1]

    def up(self, steps):
        node = self
        for _ in range(steps):
            node = node.parent
        return node


@dataclass
class Hypothesis:
    score: float               # the model's log-probability of the text given the prime
    node: Node                 # the continuation so far
    state: object = None       # the stepper's snapshot after it (None once finished)
    log_probs: np.ndarray | None = None   # (V,) float64 of the next character
    # its ancestor one past what every hypothesis shares (None: it ends there): while two
    # hypotheses differ in it, nothing more is certain, and that costs nothing to check
    branch: Node | None = None


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
    alive = [Hypothesis(0.0, Node(), stepper.snapshot(), log_probs)]
    allowed = None if form.allowed is None else np.flatnonzero(form.allowed)   # ids, ascending
    finished, shown, running = None, 0, alive
    for position in range(form.length):
        chosen = _extend(alive, form.forced.get(position), allowed, width)
        alive = []
        for parent, char_id, score in chosen:
            node = Node(char_id, parent.node)
            child = Hypothesis(score, node, branch=parent.branch or node)
            if stops and stops.ended(vocab.decode(node.ids(max(0, node.depth - stops.longest)))):
                if finished is None or score > finished.score:
                    finished = child
                continue
            if position + 1 < form.length:        # the last character is never fed back
                stepper.restore(parent.state)
                child.log_probs = log_softmax(stepper.step(char_id))
                child.state = stepper.snapshot()
            alive.append(child)
        if finished is not None:                  # a live one that cannot win is dropped
            alive = [h for h in alive if h.score > finished.score]
        running = alive + ([finished] if finished is not None else [])
        if all(h.branch is not None and h.branch is running[0].branch for h in running):
            certain = _common_ancestor([h.node for h in running])
            yield from certain.ids(shown)
            shown = certain.depth
            for h in running:
                h.branch = h.node.up(h.node.depth - shown - 1) if h.node.depth > shown else None
        if not alive:
            break
    best = max(running, key=lambda h: h.score)    # the first of equals: deterministic
    yield from best.node.ids(shown)
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


def _common_ancestor(nodes):
    """The longest beginning the continuations ending at nodes share."""
    depth = min(n.depth for n in nodes)
    nodes = [n.up(n.depth - depth) for n in nodes]
    while any(n is not nodes[0] for n in nodes):
        nodes = [n.parent for n in nodes]
    return nodes[0]
