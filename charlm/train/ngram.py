"""Training the Kneser-Ney baseline: count the training split, score the validation split,
save it in the run directory like any model (last.npz and best.npz, metrics.jsonl)."""

import time
from pathlib import Path

import numpy as np

from charlm.data import text
from charlm.errors import UsageError
from charlm.io import checkpoint
from charlm.names import NGRAM
from charlm.nn import kneser_ney
from charlm.train.rundir import CHECKPOINTS, append_metrics, check_not_corpus

DEFAULT_ORDER = 6       # --cell ngram's --order, and a run's n-gram when no slice can choose
SEARCH_ORDER = 8        # a run's n-gram tries orders 1..8 (none above 7 won on the corpora)


def plan_out(corpus_paths, given, out, resume=None):
    """The run directory of an n-gram run; refuses options that mean nothing to it."""
    if resume is not None:
        raise UsageError("an n-gram is fitted in seconds and has nothing to resume; drop "
                         "--resume (and use --force to refit into the same --out)")
    ignored = sorted(k for k in given if k not in ("cell", "val_frac"))
    if ignored:
        raise UsageError(f"--cell ngram takes --order and --val-frac, not "
                         f"{', '.join('--' + k.replace('_', '-') for k in ignored)}")
    out = Path(out or Path("runs") / (Path(corpus_paths[0]).stem + "-ngram"))
    check_not_corpus(out, corpus_paths)
    return out


def fit_and_save(corpus, val_frac, order, out):
    """Fit on the training split, score the validation split and save in out.
    Returns (model, val nats or None, fit seconds)."""
    train_ids, val_ids = text.split_train_val(corpus.ids, val_frac)
    if len(train_ids) < 2:
        raise UsageError("the training split is too short to count n-grams; lower --val-frac")
    started = time.perf_counter()
    model = kneser_ney.fit_kneser_ney(train_ids, corpus.vocab.size, order)
    fit_seconds = time.perf_counter() - started
    val = None
    if len(val_ids) >= 2:
        val = float(-kneser_ney.log_prob_stream(model, val_ids).mean())
    sections = ngram_sections(model, val_frac, val, fit_seconds, corpus.fingerprint,
                              len(train_ids), len(val_ids))
    for name in CHECKPOINTS:
        checkpoint.save_ngram(Path(out) / name, sections, model, corpus.vocab)
    append_metrics(out, {"step": 0, "val_loss": val, "elapsed": round(fit_seconds, 3)})
    return model, val, fit_seconds


def ngram_sections(model, val_frac, val, fit_seconds, fingerprint, train_chars, val_chars):
    """An n-gram checkpoint's config sections."""
    return {"model": {"cell": NGRAM, "vocab_size": model.vocab_size, "order": model.order,
                      "sizes": [int(s) for s in model.sizes()]},
            "train": {"cell": NGRAM, "order": model.order, "val_frac": val_frac},
            # what a fit has of a run's progress (no passes, no optimizer, no generator)
            "progress": {"step": 0, "best_val": val, "last_val": val, "elapsed": fit_seconds},
            "data": {"fingerprint": fingerprint, "train_chars": int(train_chars),
                     "val_chars": int(val_chars)}}


def choose_and_fit(train_ids, vocab_size, max_order=SEARCH_ORDER):
    """(model, {order: nats}): the order that scores best on the last tenth of the training
    split when fitted on the rest (never on validation), refitted on the whole split."""
    cut = len(train_ids) - len(train_ids) // 10
    fit_part, held = train_ids[:cut], train_ids[cut:]
    scores = {}
    if cut >= 2 and len(held) >= 2:
        for model in kneser_ney.fit_kneser_ney_orders(fit_part, vocab_size, max_order):
            with np.errstate(divide="ignore"):      # order 1 can give an unseen character 0
                scores[model.order] = float(-kneser_ney.log_prob_stream(model, held).mean())
    order = min(scores, key=scores.get) if scores else DEFAULT_ORDER
    return kneser_ney.fit_kneser_ney(train_ids, vocab_size, order), scores
