"""The n-gram baseline as a charlm checkpoint, and its train/score/sample glue.

Key layout (format version 1): ngram/keys_{n}, ngram/counts_{n}, ngram/discounts_{n} for
n = 1..order (see ngram.py), meta/vocab (int32 code points), meta/config with
model = {"cell": "ngram", "vocab_size", "order", "sizes"}.
"""

import math
import time
from pathlib import Path

import numpy as np

from charlm import bundle, data, evaluate, ngram
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


def run_train_ngram(corpus_paths, given, order, out, force, encoding_errors, quiet):
    """Fit the Kneser-Ney baseline, report its validation score and save it like a model."""
    from rich.console import Console
    from rich.table import Table

    from charlm.train import prepare_out_dir
    ignored = sorted(k for k in given if k not in ("cell", "val_frac"))
    if ignored:
        raise UsageError(f"--cell ngram takes --order and --val-frac, not "
                         f"{', '.join('--' + k.replace('_', '-') for k in ignored)}")
    console = Console(stderr=True)
    corpus = data.read_corpus(corpus_paths, encoding_errors)
    val_frac = given.get("val_frac", 0.1)
    train_ids, val_ids = data.split_train_val(corpus.ids, val_frac)
    if len(train_ids) < 2:
        raise UsageError("the training split is too short to count n-grams; lower --val-frac")
    out = Path(out or Path("runs") / (Path(corpus_paths[0]).stem + "-ngram"))
    lock = prepare_out_dir(out, fresh=True, force=force)
    try:
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
                  "progress": {"step": 0, "best_val": val, "last_val": val,
                               "elapsed": fit_seconds},
                  "data": {"fingerprint": corpus.fingerprint, "train_chars": int(len(train_ids)),
                           "val_chars": int(len(val_ids))}}
        arrays = model.to_arrays() | {"meta/vocab": corpus.vocab.to_array()}
        for name in ("last.npz", "best.npz"):
            bundle.save_checkpoint(out / name, arrays, config, bundle.FORMAT_VERSION)
        (out / "metrics.jsonl").open("a").write(
            f'{{"step": 0, "val_loss": {val if val is not None else "null"}, '
            f'"elapsed": {fit_seconds:.3f}}}\n')
    finally:
        lock.close()
    table = Table(title=f"{order}-gram Kneser-Ney baseline", show_header=False)
    table.add_row("n-grams kept", f"{sum(model.sizes()):,}")
    table.add_row("fit time", f"{fit_seconds:.2f} s")
    if val is not None:
        summary = evaluate.summarize(val * (len(val_ids) - 1), len(val_ids) - 1)
        table.add_row("val", f"{val:.4f} nats/char, {summary['bits_per_char']:.4f} bits/char, "
                             f"perplexity {math.exp(val):.3f}")
    table.add_row("checkpoints", f"{out / 'last.npz'}, {out / 'best.npz'}")
    console.print(table)
