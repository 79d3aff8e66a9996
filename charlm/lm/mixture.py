"""A mixture of language models: p(c | h) = sum_i w_i(h) p_i(c | h), any kinds together.

Dimensions: K models, N characters scored, V vocabulary.

Vocabulary. Every model must know the same characters, in any order (a model with an adaptive
softmax ranks its ids by frequency, the n-gram and the full softmax sort them by code point).
The mixture's ids are its first model's; each other model reads them through a permutation.
Models whose characters differ are refused, naming what one knows and another lacks: a
character only some models know would need every model's whole distribution at every position
to renormalise, which scoring avoids (it never builds an (N, V) array).

Weights. Fixed weights (--mix-weights) are used as given, normalised. Otherwise they adapt
online, a Bayesian mixture with a little forgetting: with s_i = log w_i up to a constant,

    s_i(0) = log(1 / K)          s_i(t + 1) = (1 - f) * (s_i(t) + log p_i(x_t | x_<t))

so the weights that predict x_t come from x_<t only: nothing is fitted on the text being scored.
f = 0 is the exact posterior over "which model made this text"; f > 0 forgets old evidence
geometrically, so the mixture can follow a text where the better model changes.
"""

import numpy as np

from charlm.errors import CheckpointError, UsageError
from charlm.io import checkpoint
from charlm.io.mixture import MAX_FORGETTING, MAX_MODELS
from charlm.names import MIX_FORGETTING, MIXTURE

FORGETTING = MIX_FORGETTING     # measured on a tiny Shakespeare training slice (README)
CHUNK = 256              # positions per vectorised weight update (bounds d^-k below e^27)


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


def online_weights(log_probs, forgetting):
    """(K, N) w_i used for each position, from log_probs (K, N) of the positions before it
    (module docstring). Vectorised per chunk: s(t0 + j) = d^j (s(t0) + sum_{k<j} d^-k l(t0+k))
    with d = 1 - f."""
    K, N = log_probs.shape
    d = 1.0 - forgetting
    out = np.empty((K, N), np.float64)
    s = np.full(K, -np.log(K))
    for t0 in range(0, N, CHUNK):
        piece = log_probs[:, t0:t0 + CHUNK]
        j = np.arange(piece.shape[1])
        running = np.cumsum(piece * d ** (-j), axis=1)                # (K, L) sum over k <= j
        before = np.zeros_like(running)                               # sum over k < j: only
        before[:, 1:] = running[:, :-1]                               # earlier positions
        out[:, t0:t0 + CHUNK] = d ** j * (s[:, None] + before)
        s = d ** len(j) * (s + running[:, -1])                        # s at the next chunk
        s -= s.max()                                                  # only differences count
    return normalised(out)


def normalised(log_w):
    """softmax over axis 0 of (K, ...) log-weights. Equal rows give exactly 1/K each, so
    a model mixed with itself scores exactly as itself (see mixed_log_probs)."""
    w = np.exp(log_w - log_w.max(axis=0))
    return w / w.sum(axis=0)


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
    """Each model's stepper, its log-probabilities in the mixture's ids, mixed with the
    weights of the characters fed so far (updated as in scoring)."""

    def __init__(self, mixture):
        self.mixture = mixture
        self.steppers = [m.stepper() for m in mixture.models]
        self.reset()

    def reset(self):
        for s in self.steppers:
            s.reset()
        K = len(self.steppers)
        self.s = np.full(K, -np.log(K))
        self.previous = None                    # (K, V) the last step's log-probs

    def step(self, char_id):
        mix = self.mixture
        if self.previous is not None and mix.weights is None:
            self.s = (1.0 - mix.forgetting) * (self.s + self.previous[:, char_id])
            self.s -= self.s.max()
        rows = []
        for stepper, ix in zip(self.steppers, mix.maps):
            logits = np.asarray(stepper.step(int(ix[char_id])), np.float64)
            rows.append(_log_softmax(logits)[ix])
        self.previous = np.stack(rows)                                     # (K, V)
        w = normalised(self.s) if mix.weights is None else mix.weights
        return mixed_log_probs(self.previous, w[:, None])


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
    parts, (weights, forgetting) = checkpoint.mixture_parts(loaded)
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
