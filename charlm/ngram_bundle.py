"""The n-gram baseline as a charlm checkpoint, and its train/score/sample glue.

Key layout (format version 1): ngram/keys_{n}, ngram/counts_{n}, ngram/discounts_{n} for
n = 1..order (see ngram.py), meta/vocab (int32 code points), meta/config with
model = {"cell": "ngram", "vocab_size", "order", "sizes"}.
"""

import json
import time
from pathlib import Path

import numpy as np

from charlm import bundle, data, ngram
from charlm.checkpoint import save_checkpoint
from charlm.errors import CheckpointError, UsageError

MAX_ORDER = 12


def schema(config):
    m = config["model"]
    vocab_size = bundle._field(m, "vocab_size", int, 2, bundle.MAX_VOCAB)
    order = bundle._field(m, "order", int, 1, MAX_ORDER)
    sizes = m.get("sizes")
    if not isinstance(sizes, list) or len(sizes) != order or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 1 << 40 for s in sizes):
        raise CheckpointError("config field 'sizes' is invalid")
    return ngram.schema(vocab_size, order, sizes) | {"meta/vocab": ("<i4", (vocab_size,))}


class NGramWrapper:
    """The same face as commands.NeuralWrapper: score ids, step one character at a time."""

    def __init__(self, ckpt, vocab):
        self.path, self.config, self.vocab = ckpt.path, ckpt.config, vocab
        m = ckpt.config["model"]
        arrays = {k: v for k, v in ckpt.arrays.items() if k.startswith("ngram/")}
        try:
            self.model = ngram.NGramModel.from_arrays(arrays, m["vocab_size"], m["order"])
        except ValueError as exc:
            raise CheckpointError(f"{ckpt.path}: invalid n-gram tables ({exc})") from None
        self.parameters = int(sum(m["sizes"]))

    def score(self, ids, streams=1):
        """The n-gram's context is finite, so streams change nothing: the exact score."""
        if len(ids) < 2:
            return 0.0, 0
        log_probs = ngram.log_prob_stream(self.model, ids)
        return float(-log_probs.sum()), len(ids) - 1

    def stepper(self):
        return NGramStepper(self.model)


class NGramStepper:
    """Keeps the last order - 1 ids; step() returns log-probabilities usable as logits."""

    def __init__(self, model):
        self.model, self.context = model, []

    def step(self, char_id):
        keep = self.model.order - 1                    # the context an order-n model uses
        context = self.context + [char_id]
        self.context = context[max(0, len(context) - keep):] if keep else []
        with np.errstate(divide="ignore"):
            return np.log(ngram.next_distribution(self.model, np.array(self.context, np.int64)))


def train_and_save(corpus, val_frac, order, out):
    """Fit the Kneser-Ney baseline on the training split, score the validation split and save
    it as last.npz and best.npz in out. Returns (model, val nats or None, fit seconds)."""
    train_ids, val_ids = data.split_train_val(corpus.ids, val_frac)
    if len(train_ids) < 2:
        raise UsageError("the training split is too short to count n-grams; lower --val-frac")
    started = time.perf_counter()
    model = ngram.fit_kneser_ney(train_ids, corpus.vocab.size, order)
    fit_seconds = time.perf_counter() - started
    val = None
    if len(val_ids) >= 2:
        val = float(-ngram.log_prob_stream(model, val_ids).mean())
    config = {"kind": bundle.KIND, "charlm_version": bundle.__version__,
              "model": {"cell": "ngram", "vocab_size": corpus.vocab.size, "order": order,
                        "sizes": [int(s) for s in model.sizes()]},
              "train": {"cell": "ngram", "order": order, "val_frac": val_frac},
              "progress": {"step": 0, "best_val": val, "last_val": val, "elapsed": fit_seconds},
              "data": {"fingerprint": corpus.fingerprint, "train_chars": int(len(train_ids)),
                       "val_chars": int(len(val_ids))}}
    arrays = model.to_arrays() | {"meta/vocab": corpus.vocab.to_array()}
    for name in ("last.npz", "best.npz"):
        save_checkpoint(Path(out) / name, arrays, config, bundle.FORMAT_VERSION)
    record = {"step": 0, "val_loss": val, "elapsed": round(fit_seconds, 3)}
    with open(Path(out) / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return model, val, fit_seconds
