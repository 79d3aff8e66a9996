"""A mixture of language models: p(c | h) = sum_i w_i(h) p_i(c | h), any kinds together.

Dimensions: K models, N characters scored, V vocabulary.

Vocabulary. Every model must know the same characters, in any order (a model with an adaptive
softmax ranks its ids by frequency, the n-gram and the full softmax sort them by code point).
The mixture's ids are its first model's; each other model reads them through a permutation.
Models whose characters differ are refused, naming what one knows and another lacks: a
character only some models know would need every model's whole distribution at every position
to renormalise, which scoring avoids (it never builds an (N, V) array).

Weights. Fixed weights (--mix-weights) are used as given, normalised. Otherwise they are
learnt online by EM for interpolation weights, from the text already scored only: each scored
position gives each model its responsibility r_i = w_i p_i / sum_j w_j p_j, and the weights are
the models' shares of the responsibilities so far (one pseudo-count each to start from, equal
weights), with old evidence fading by a factor 1 - f per character:

    a_i <- (1 - f) a_i + r_i(t)        w_i = a_i / sum_j a_j

The weights are updated every CHUNK characters (the positions of a chunk are predicted with
the weights of the chunks before it), in scoring and sampling alike. Unlike a Bayesian
posterior over "which model wrote this text", which soon puts all its weight on the better
model, these converge to the interpolation that predicts best, where two models that make
different mistakes are both kept: the point of mixing a recurrent model with the n-gram.
"""

import numpy as np

from charlm.errors import CheckpointError, UsageError
from charlm.io import mixture_file
from charlm.io.mixture import MAX_FORGETTING, MAX_MODELS
from charlm.names import MIX_FORGETTING, MIXTURE

FORGETTING = MIX_FORGETTING     # measured on a tiny Shakespeare training slice (README)
CHUNK = 16               # characters between two updates of the online weights


def align(models):
    """Per model, (V,) its id of each mixture id (the first model's ids); UsageError naming
    the characters if the models' vocabularies differ."""
    first = models[0].vocab
    maps = []
    for m in models:
        if not np.array_equal(np.sort(m.vocab.codepoints), np.sort(first.codepoints)):
            raise UsageError(_vocab_mismatch(models[0], m))
        ids, _ = m.vocab.encode_codepoints(first.codepoints)
        maps.append(ids.astype(np.int64))
    return maps


def _vocab_mismatch(a, b):
    only_a = np.setdiff1d(a.vocab.codepoints, b.vocab.codepoints)
    only_b = np.setdiff1d(b.vocab.codepoints, a.vocab.codepoints)

    def named(cps, path):
        shown = "".join(chr(c) for c in cps[:10]) + ("..." if len(cps) > 10 else "")
        return f"{len(cps)} only in {path} ({shown!r})" if len(cps) else ""
    parts = ", ".join(p for p in (named(only_a, a.path), named(only_b, b.path)) if p)
    return (f"cannot mix models with different vocabularies: {parts}; mix models trained on "
            "the same text (the same characters, in any order)")


def check_weights(weights, count):
    """The normalised (K,) float64 weights, or UsageError."""
    w = np.asarray(weights, np.float64)
    if w.shape != (count,):
        raise UsageError(f"--mix-weights gives {len(w)} weights for {count} models; give one "
                         "per model, the first for the main checkpoint")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise UsageError("--mix-weights must be finite numbers of 0 or more, not all 0")
    return w / w.sum()


def check_forgetting(forgetting):
    if not 0 <= forgetting <= MAX_FORGETTING:
        raise UsageError(f"the forgetting rate must lie in [0, {MAX_FORGETTING}], "
                         f"not {forgetting}")
    return float(forgetting)


def responsibilities(log_probs, weights):
    """(K, L) w_i p_i / sum_j w_j p_j of each position, from (K, L) log-probs and (K,) weights;
    the weights themselves where no model gives the character any probability."""
    top = log_probs.max(axis=0)
    finite = np.isfinite(top)
    with np.errstate(invalid="ignore", over="ignore"):
        e = weights[:, None] * np.exp(np.where(finite, log_probs - top, 0.0))
    r = e / e.sum(axis=0)
    return np.where(finite & np.isfinite(r), r, weights[:, None])


def online_weights(log_probs, forgetting):
    """(K, N) the weights each position is predicted with, from log_probs (K, N) of the
    positions before it only (module docstring)."""
    K, N = log_probs.shape
    d = 1.0 - forgetting
    out = np.empty((K, N), np.float64)
    evidence = np.ones(K)
    for t0 in range(0, N, CHUNK):
        piece = log_probs[:, t0:t0 + CHUNK]
        L = piece.shape[1]
        w = evidence / evidence.sum()
        out[:, t0:t0 + L] = w[:, None]
        fading = d ** np.arange(L - 1, -1, -1)                       # the last counts fully
        evidence = d ** L * evidence + (responsibilities(piece, w) * fading).sum(axis=1)
    return out


def mixed_log_probs(log_probs, weights):
    """(N,) log sum_i w_i p_i of each position, from (K, N) log-probs and weights. Taken from
    the best model's log p, so equal log-probs give exactly that log p."""
    top = log_probs.max(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shifted = np.where(np.isfinite(top), log_probs - top, 0.0)
        return np.log((weights * np.exp(shifted)).sum(axis=0)) + top


class MixtureLM:
    """K language models of any kinds behind the LanguageModel interface."""

    def __init__(self, models, weights=None, forgetting=FORGETTING, path=None, config=None,
                 format_version=None):
        if not 2 <= len(models) <= MAX_MODELS:
            raise UsageError(f"a mixture takes 2 to {MAX_MODELS} models, not {len(models)}")
        for m in models:                 # the bidirectional model has no left-to-right score
            if hasattr(m, "cloze_log_probs"):
                raise UsageError(f"{m.path} is a bidirectional (cloze) model: a mixture weighs "
                                 "left-to-right predictions; use `charlm eval cloze --compare`")
        self.models, self.maps = list(models), align(models)
        self.weights = None if weights is None else check_weights(weights, len(models))
        self.forgetting = check_forgetting(forgetting)
        self.vocab = models[0].vocab
        self.path = path or models[0].path
        self.config = config or mixture_config(self.models, self.weights, self.forgetting)
        self.format_version = format_version or max(m.format_version for m in models)
        self.parameters = sum(m.parameters for m in models)

    def describe(self):
        how = "online weights" if self.weights is None else \
            "weights " + "/".join(f"{w:.3g}" for w in self.weights)
        return "mixture of " + " + ".join(m.describe() for m in self.models) + f" ({how})"

    def log_probs(self, ids, streams=1):
        """(N - 1,) float64 log p of each prediction: each model's, weighted by what came
        before."""
        lp = np.stack([m.log_probs(ix[ids], streams) for m, ix in zip(self.models, self.maps)])
        return mixed_log_probs(lp, self.weights_for(lp))

    def weights_for(self, lp):
        """(K, N) the weights each position is predicted with, from lp (K, N)."""
        if self.weights is None:
            return online_weights(lp, self.forgetting)
        return np.broadcast_to(self.weights[:, None], lp.shape)

    def score(self, ids, streams=1):
        if len(ids) < 2:
            return 0.0, 0
        return float(-self.log_probs(ids, streams).sum()), len(ids) - 1

    def stepper(self):
        return MixtureStepper(self)


class MixtureStepper:
    """Each model's stepper, its log-probabilities in the mixture's ids, mixed with weights
    learnt from the characters fed so far exactly as scoring learns them (per CHUNK)."""

    def __init__(self, mixture):
        self.mixture = mixture
        self.steppers = [m.stepper() for m in mixture.models]
        self.reset()

    def reset(self):
        for s in self.steppers:
            s.reset()
        K = len(self.steppers)
        self.evidence, self.pending, self.seen = np.ones(K), np.zeros(K), 0
        self.weights = self.mixture.weights if self.mixture.weights is not None \
            else self.evidence / K
        self.previous = None                    # (K, V) the last step's log-probs

    def snapshot(self):
        return ([s.snapshot() for s in self.steppers], self.evidence.copy(),
                self.pending.copy(), self.seen, self.weights.copy(), self.previous)

    def restore(self, snapshot):
        inner, evidence, pending, seen, weights, previous = snapshot
        for s, saved in zip(self.steppers, inner):
            s.restore(saved)
        self.evidence, self.pending = evidence.copy(), pending.copy()
        self.seen, self.weights, self.previous = seen, weights.copy(), previous

    def step(self, char_id):
        mix = self.mixture
        if self.previous is not None and mix.weights is None:
            self._learn(self.previous[:, [char_id]])
        rows = []
        for stepper, ix in zip(self.steppers, mix.maps):
            logits = np.asarray(stepper.step(int(ix[char_id])), np.float64)
            rows.append(_log_softmax(logits)[ix])
        self.previous = np.stack(rows)                                     # (K, V)
        return mixed_log_probs(self.previous, self.weights[:, None])

    def _learn(self, log_probs):
        """The fed character was the last prediction's target: its responsibilities."""
        d = 1.0 - self.mixture.forgetting
        self.pending = d * self.pending + responsibilities(log_probs, self.weights)[:, 0]
        self.seen += 1
        if self.seen == CHUNK:
            self.evidence = d ** CHUNK * self.evidence + self.pending
            self.pending, self.seen = np.zeros_like(self.pending), 0
            self.weights = self.evidence / self.evidence.sum()


def _log_softmax(logits):
    top = logits.max()
    with np.errstate(divide="ignore"):
        return logits - (np.log(np.exp(logits - top).sum()) + top)


def with_mix(model, others, weights=None):
    """What --mix and --mix-weights make of a loaded model: itself, or mixed with others
    (online weights unless given); weights alone re-weigh a mixture checkpoint's models."""
    if others:
        return MixtureLM([model, *others], weights)
    if weights is None:
        return model
    if isinstance(model, MixtureLM):
        return MixtureLM(model.models, weights, model.forgetting, model.path)
    raise UsageError("--mix-weights weighs the models of --mix OTHER_CKPT (or of a mixture "
                     "checkpoint); give --mix too")


def from_loaded(loaded, from_checkpoint):
    """The MixtureLM of a loaded mixture checkpoint (charlm.io.mixture); from_checkpoint
    builds each model (charlm.lm.from_checkpoint)."""
    parts, (weights, forgetting) = mixture_file.mixture_parts(loaded)
    models = [from_checkpoint(part) for part in parts]
    try:
        return MixtureLM(models, weights, forgetting, loaded.path, loaded.config,
                         loaded.format_version)
    except UsageError as exc:
        raise CheckpointError(f"{loaded.path}: {exc}") from None


def mixture_config(models, weights, forgetting):
    """The config sections a mixture shows (info) and reads (--corpus --split): its settings,
    and the first model's train and data sections."""
    first = models[0].config
    return {"model": {"cell": MIXTURE, "vocab_size": models[0].vocab.size,
                      "models": [m.describe() for m in models],
                      "weights": None if weights is None else [float(w) for w in weights],
                      "forgetting": forgetting},
            "train": first.get("train"), "data": first.get("data")}
