"""The Kneser-Ney n-gram (charlm.nn.kneser_ney) behind the language-model interface."""

import numpy as np

from charlm.io import checkpoint
from charlm.nn import kneser_ney


class NGramLM:
    def __init__(self, loaded):
        self.path, self.config, self.vocab = loaded.path, loaded.config, loaded.vocab
        self.format_version = loaded.format_version
        self.model = checkpoint.ngram_model(loaded)
        self.parameters = int(sum(self.model.sizes()))

    def describe(self):
        return f"{self.model.order}-gram Kneser-Ney"

    def score(self, ids, streams=1):
        """The n-gram's context is finite, so streams change nothing: the exact score."""
        if len(ids) < 2:
            return 0.0, 0
        log_probs = kneser_ney.log_prob_stream(self.model, ids)
        return float(-log_probs.sum()), len(ids) - 1

    def log_probs(self, ids, streams=1):
        if len(ids) < 2:
            return np.zeros(0, np.float64)
        return kneser_ney.log_prob_stream(self.model, ids)

    def stepper(self):
        return NGramStepper(self.model)


class NGramStepper:
    """Keeps the last order - 1 ids; step() returns log-probabilities usable as logits."""

    def __init__(self, model):
        self.model, self.context = model, []

    def reset(self):
        self.context = []

    def step(self, char_id):
        keep = self.model.order - 1                    # the context an order-n model uses
        context = self.context + [char_id]
        self.context = context[max(0, len(context) - keep):] if keep else []
        with np.errstate(divide="ignore"):
            return np.log(kneser_ney.next_distribution(self.model,
                                                       np.array(self.context, np.int64)))
