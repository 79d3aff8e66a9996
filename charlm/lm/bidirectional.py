"""The bidirectional cloze model (charlm.nn.bidirectional) behind the language-model interface.

It predicts each character from both sides, so it has no left-to-right probability of a text:
score and stepper (what `eval perplexity` and `sample` use) refuse it with one line that
points to what it does, `charlm fill` and `charlm eval cloze`, which use cloze_log_probs.
"""

import numpy as np

from charlm.errors import UsageError
from charlm.lm.neural import NeuralLM
from charlm.nn import bidirectional


class BidirectionalLM(NeuralLM):
    def score(self, ids, streams=1):
        raise self._left_to_right("score text left to right (eval perplexity)")

    def log_probs(self, ids, streams=1):
        raise self._left_to_right("score text left to right")

    def score_batch(self, texts):
        raise self._left_to_right("score text left to right")

    def stepper(self):
        raise self._left_to_right("sample")

    def _left_to_right(self, what):
        return UsageError(f"{self.path} is a bidirectional (cloze) model: it predicts each "
                          f"character from both sides and cannot {what}; use `charlm fill` "
                          "or `charlm eval cloze`")

    def cloze_log_probs(self, texts, chunk_len=256):
        """Yields (start, (n, B, V) float64): log p(x_t | every other character of its text)
        for positions start .. start + n - 1 of the equal-length texts (B, N)."""
        yield from bidirectional.cloze_log_probs(self.params, self.model_config,
                                                 np.asarray(texts, np.int64), chunk_len)
