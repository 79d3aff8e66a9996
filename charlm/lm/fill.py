"""`charlm fill`: the characters a text is missing, where `_` marks each one.

Two ways to rank a blank's candidates, by the kind of model:
- the bidirectional cloze model reads both sides at once: p(c | x_<t, x_>t) for every
  candidate c comes from one pass over the text (cloze_log_probs);
- any other model (left to right, n-gram, a mixture) scores each completed text: the
  candidates of a blank are the texts with c at the blank, scored as many parallel streams
  (lm.score_texts), and p(c | the rest) is their softmax over c, since the rest is common.
Several blanks are filled left to right by beam search. A hypothesis' score is the log
probability of the text up to the next blank (the whole text after the last one); for the
cloze model, the sum over its blanks of log p(c | the filled text left of the blank, the text
up to the next blank right of it), the reversed network starting from zero at that next blank
as it does at a training chunk's end. With one blank both are exact.

Each blank's candidates are then reported as p(c | every other character of the best
completion): for a single blank, exactly the ranking above.
"""

from dataclasses import dataclass

import numpy as np

from charlm.data.vocab import codepoints_of
from charlm.errors import CorpusError, UsageError
from charlm.lm import score_texts

BLANK = "_"
DEFAULT_BEAM = 8


@dataclass
class Filled:
    text: str                    # the best completion
    ids: np.ndarray              # its ids
    blanks: list                 # per blank: (position, [(character, probability)], top K)
    log_prob: float              # the best hypothesis' score (see the module's docstring)
    skipped: int                 # characters dropped by --unknown skip


def encode(text, vocab, unknown="error"):
    """(ids with -1 at each blank, blank positions, characters skipped) of text, checked."""
    if not text:
        raise CorpusError("the text is empty; give a text with _ where characters are missing")
    if BLANK not in text:
        raise CorpusError("the text has no _; mark each missing character with _")
    cps = codepoints_of(text)
    blank = cps == ord(BLANK)
    stand_in = np.where(blank, vocab.codepoints[0], cps)      # a blank is no unknown character
    vocab.encode_codepoints(stand_in, unknown, what="the text")      # the one unknown error
    known = [c == BLANK or vocab.index(c) is not None for c in text]
    ids = np.array([-1 if c == BLANK else vocab.index(c) for c, k in zip(text, known) if k],
                   np.int64)
    return ids, np.flatnonzero(ids < 0), len(text) - int(sum(known))


def check_edges(model, ids, blanks):
    """A blank nothing can predict: the first character (no model predicts the first one of a
    text), and for the cloze model the last one too (nothing to its right)."""
    if blanks[0] == 0:
        raise CorpusError("the text starts with _: no model predicts a text's first character; "
                          "give the text before the blank")
    if is_cloze(model) and blanks[-1] == len(ids) - 1:
        raise CorpusError(f"the text ends with _: {model.path} is a bidirectional model and "
                          "needs text on both sides of a blank; give the text after it, or "
                          "use a left-to-right model")


def is_cloze(model):
    """Whether model predicts a character from both sides (the bidirectional model)."""
    return hasattr(model, "cloze_log_probs")


def fill(model, ids, blanks, top=5, beam=DEFAULT_BEAM, skipped=0):
    """The best completion of ids (-1 at blanks) by model and each blank's top candidates."""
    if top < 1 or beam < 1:
        raise UsageError("--top and --beam must be at least 1")
    check_edges(model, ids, blanks)
    scorer = _cloze_scores if is_cloze(model) else _text_scores
    hyps, scores = ids[None, :].copy(), np.zeros(1)
    V = model.vocab.size
    last = None
    for i, pos in enumerate(blanks):
        end = int(blanks[i + 1]) if i + 1 < len(blanks) else len(ids)
        total = scorer(model, hyps, int(pos), end, scores)                    # (beam, V)
        last = total
        best = np.argsort(-total.ravel(), kind="stable")[:beam]
        hyps = hyps[best // V].copy()
        hyps[:, pos] = best % V
        scores = total.ravel()[best]
    if len(blanks) == 1:                   # the ranking itself: p(c | the rest), exactly
        per_blank = [_softmax(last[0])]
    else:
        per_blank = candidates_given_the_rest(model, hyps[0], blanks)
    report = []
    for pos, probs in zip(blanks, per_blank):
        order = np.argsort(-probs, kind="stable")[:top]
        report.append((int(pos), [(model.vocab.char(int(c)), float(probs[c])) for c in order]))
    return Filled(model.vocab.decode(hyps[0]), hyps[0], report, float(scores[0]), skipped)


def candidates_given_the_rest(model, ids, blanks):
    """Per blank, (V,) p(c | every other character of ids)."""
    if is_cloze(model):
        return [np.exp(lp) for lp in cloze_at(model, ids[None, :], blanks)[:, 0]]
    V = model.vocab.size
    out = []
    for pos in blanks:
        texts = np.repeat(ids[None, :], V, axis=0)
        texts[:, pos] = np.arange(V)
        out.append(_softmax(-score_texts(model, texts)))
    return out


def cloze_at(model, texts, positions):
    """(P, B, V) log p(c | the rest of each text) of the cloze model at positions (sorted)."""
    positions = np.asarray(positions)
    picked = []
    for start, log_probs in model.cloze_log_probs(texts):
        inside = positions[(positions >= start) & (positions < start + len(log_probs))]
        picked.append(log_probs[inside - start])
    return np.concatenate(picked)


def _cloze_scores(model, hyps, pos, end, scores):
    """(beam, V): each hypothesis' score plus log p(c | its text left of pos, up to end)."""
    texts = hyps[:, :end].copy()
    texts[:, pos] = 0                   # a stand-in: position pos's prediction never reads it
    return scores[:, None] + cloze_at(model, texts, [pos])[0]


def _text_scores(model, hyps, pos, end, scores):
    """(beam, V): log p(text[:end]) of each hypothesis with each candidate c at pos."""
    beam, V = len(hyps), model.vocab.size
    texts = np.repeat(hyps[:, :end], V, axis=0)
    texts[:, pos] = np.tile(np.arange(V), beam)
    return -score_texts(model, texts).reshape(beam, V)


def _softmax(log_scores):
    shifted = np.exp(log_scores - log_scores.max())
    return shifted / shifted.sum()
