"""Dynamic evaluation (charlm.nn.dynamic) behind the language-model interface: `eval
perplexity --adapt` scores with an AdaptedLM, `sample --adapt-on FILE` samples from the
weights adapted to FILE.

The gradient RMS comes from training data only: stored in best.npz by `charlm train`
(adapt/rms), or measured here on the training split of --corpus (training_rms).
"""

import copy
from dataclasses import dataclass

import numpy as np

from charlm.errors import CheckpointError, UsageError
from charlm.names import ADAPT_DEFAULTS
from charlm.nn import dynamic
from charlm.nn.model import initial_state

STATS_WINDOWS = 30      # training windows of 32 x 64 characters for the gradient RMS


@dataclass(frozen=True)
class Settings:
    """--adapt-lr, --adapt-decay, --adapt-seg; the defaults measured on tiny Shakespeare
    (README, "Dynamic evaluation"), never on the text being scored."""

    lr: float = ADAPT_DEFAULTS[0]
    decay: float = ADAPT_DEFAULTS[1]
    seg: int = ADAPT_DEFAULTS[2]

    def check(self):
        if not (np.isfinite(self.lr) and self.lr >= 0 and np.isfinite(self.decay)
                and self.decay >= 0 and self.seg >= 1):
            raise UsageError("--adapt-lr and --adapt-decay must be finite and 0 or more, "
                             "--adapt-seg 1 or more")
        return self


def training_rms(neural, train_ids, windows=STATS_WINDOWS, batch=32, seq_len=64):
    """(rms (P,), how it was measured) from up to `windows` windows of train_ids (N,) in the
    model's ids; the batch shrinks for a short text."""
    from charlm.data.batching import Windows
    batch = max(1, min(batch, (len(train_ids) - 1) // seq_len))
    if (len(train_ids) - 1) // seq_len < 1:
        raise UsageError("the training text is too short to measure gradients for --adapt")
    w = Windows(train_ids, batch, seq_len)
    count = min(windows, w.count)
    rms = dynamic.gradient_rms(neural.params, neural.model_config, w, count)
    return rms, {"windows": int(count), "batch_size": int(batch), "seq_len": int(seq_len)}


class AdaptedLM:
    """A recurrent model scored with dynamic evaluation."""

    def __init__(self, neural, settings, rms):
        self.base, self.settings, self.rms = neural, settings.check(), rms
        if rms is None or rms.shape != (neural.parameters,) or np.any(rms < 0):
            raise CheckpointError(f"{neural.path}: its gradient RMS (adapt/rms) is invalid")
        self.path, self.config, self.vocab = neural.path, neural.config, neural.vocab
        self.parameters, self.format_version = neural.parameters, neural.format_version

    def describe(self):
        s = self.settings
        return f"{self.base.describe()}, adapted (lr {s.lr:g}, decay {s.decay:g}, seg {s.seg})"

    def log_probs(self, ids, streams=1):
        s = self.settings
        return dynamic.adapted_log_probs(self.base.params, self.base.model_config, ids,
                                         self.rms, s.lr, s.decay, s.seg, streams)

    def score(self, ids, streams=1):
        """Summed segment by segment, as score_ids sums its chunks."""
        lp = self.log_probs(ids, streams)
        seg = self.settings.seg
        return -sum(float(lp[t:t + seg].sum()) for t in range(0, len(lp), seg)), len(lp)

    def stepper(self):
        return self.base.stepper()


def adapted_to(neural, ids, settings, rms):
    """A copy of the NeuralLM neural whose weights have adapted to ids (N,) (sample
    --adapt-on); its stepper samples from them."""
    settings.check()
    adapter = dynamic.Adapter(neural.params, neural.model_config, rms, settings.lr,
                              settings.decay)
    state = initial_state(neural.model_config, 1, adapter.flat.dtype)
    for t0 in range(0, len(ids) - 1, settings.seg):
        _, state = adapter.segment(ids[t0:t0 + settings.seg + 1], state)
    adapted = copy.copy(neural)                   # the same model, other weights
    adapted.params = adapter.params
    return adapted


def with_adapt(model, settings, rms_of):
    """model with every recurrent model in it adapted (a mixture's too); rms_of(neural) gives
    the gradient RMS of a model whose checkpoint holds none."""
    from charlm.lm.mixture import MixtureLM
    from charlm.lm.neural import NeuralLM
    if isinstance(model, NeuralLM):
        rms = model.adapt_rms if model.adapt_rms is not None else rms_of(model)
        return AdaptedLM(model, settings, rms)
    if isinstance(model, MixtureLM):
        parts = [with_adapt(m, settings, rms_of) if _has_neural(m) else m
                 for m in model.models]
        if parts == model.models:
            raise UsageError("--adapt adapts recurrent models, and this mixture holds none")
        return MixtureLM(parts, model.weights, model.forgetting, model.path)
    raise UsageError(f"--adapt adapts recurrent models; {model.path} is a "
                     f"{model.describe()}")


def _has_neural(model):
    from charlm.lm.mixture import MixtureLM
    from charlm.lm.neural import NeuralLM
    if isinstance(model, MixtureLM):
        return any(_has_neural(m) for m in model.models)
    return isinstance(model, NeuralLM)



def adapt_file(model, path, settings):
    """sample --adapt-on: the recurrent model adapted to the text in path (its characters
    outside the vocabulary skipped); the gradient RMS from the checkpoint, else from that
    text itself, which is never scored."""
    from charlm.data import text
    from charlm.lm.mixture import MixtureLM
    from charlm.lm.neural import NeuralLM
    if isinstance(model, MixtureLM) and _has_neural(model):
        parts = [adapt_file(m, path, settings) if _has_neural(m) else m for m in model.models]
        return MixtureLM(parts, model.weights, model.forgetting, model.path)
    if not isinstance(model, NeuralLM):
        raise UsageError(f"--adapt-on adapts recurrent models; {model.path} is a "
                         f"{model.describe()}")
    ids, _ = text.encode_file(path, model.vocab, unknown="skip")
    if len(ids) < 2:
        raise UsageError(f"--adapt-on {path} has fewer than two characters of the model's "
                         "vocabulary")
    rms = model.adapt_rms if model.adapt_rms is not None else training_rms(model, ids)[0]
    return adapted_to(model, ids, settings, rms)
