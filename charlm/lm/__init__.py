"""Language models as the commands see them: one small interface for every kind.

A model of any kind (the recurrent network, the Kneser-Ney n-gram, and later mixtures and
adapted models) offers the LanguageModel protocol below. `sample`, `eval perplexity`, `info`
and `--compare` use nothing else, so a new kind lands in one module here plus a branch in
`load`.
"""

import math
from pathlib import Path
from typing import Protocol

from charlm.data.vocab import Vocab
from charlm.io import checkpoint
from charlm.names import MIXTURE, NGRAM
from charlm.nn import loss


class Stepper(Protocol):
    def step(self, char_id: int):
        """Feed one id; the logits (V,) of the next character (log-probabilities up to a
        constant; a reused buffer, valid until the next call)."""

    def reset(self) -> None:
        """Back to the state before any character."""


class LanguageModel(Protocol):
    path: Path          # the checkpoint it came from
    config: dict        # the checkpoint's config sections (model, train, progress, data)
    vocab: Vocab
    parameters: int     # trained numbers: weights, or n-gram counts kept
    format_version: int  # of the checkpoint file (charlm.io.checkpoint)

    def describe(self) -> str:
        """How a user names it in a table: "2x128 GRU", "6-gram Kneser-Ney"."""

    def score(self, ids, streams: int = 1) -> tuple[float, int]:
        """(summed nats, predictions) of ids (N,) from the start state: N - 1 predictions."""

    def log_probs(self, ids, streams: int = 1):
        """(N - 1,) float64 log p of each prediction of ids (N,), in text order: the terms of
        score's sum, each computed as score computes it (a mixture weighs models by them)."""

    def stepper(self) -> Stepper:
        """A fresh one-character-at-a-time runner for sampling."""


def load(path) -> LanguageModel:
    """The model in a checkpoint of any kind (validated by charlm.io.checkpoint)."""
    return from_checkpoint(checkpoint.load(path))


def from_checkpoint(loaded) -> LanguageModel:
    """The model of a validated checkpoint (charlm.io.checkpoint.Loaded) of any kind."""
    if loaded.kind == MIXTURE:
        from charlm.lm.mixture import from_loaded
        return from_loaded(loaded, from_checkpoint)
    if loaded.kind == NGRAM:
        from charlm.lm.ngram import NGramLM
        return NGramLM(loaded)
    from charlm.lm.neural import NeuralLM
    return NeuralLM(loaded)


def summarize(nll_sum, count):
    """The figures a user reads: predictions, nats/char, bits/char, perplexity."""
    nats = nll_sum / count if count else math.nan
    return {"chars": int(count), "nats_per_char": nats,
            "bits_per_char": loss.bits_per_char(nats), "perplexity": loss.perplexity(nats)}
