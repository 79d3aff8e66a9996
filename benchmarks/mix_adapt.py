"""Mixtures and dynamic evaluation of a trained run, on its corpus's validation split.

For the run directory of `charlm train CORPUS` (best.npz, ngram.npz): the defaults of
--adapt-lr/--adapt-decay/--adapt-seg and the mixture's forgetting rate are chosen on the last
20,000 characters of the *training* split (never on validation), then validation (one stream,
full pass) is scored five ways: the n-gram, the model, their mixture, the adapted model, and
the adapted model mixed with the n-gram. Costs are CPU seconds (process time, steadier than
wall time on a shared machine): the mixture's extra over a plain scoring pass of the model,
and --adapt's total against that pass.

    python benchmarks/mix_adapt.py RUN_DIR [--corpus PATH] [--no-tune] [--out PATH]
"""

import argparse
import itertools
import platform
import time
from pathlib import Path

import numpy as np

from charlm import lm
from charlm.cli import render
from charlm.data import text
from charlm.lm import adapt
from charlm.lm.mixture import mixed_log_probs, online_weights
from charlm.names import ADAPT_DEFAULTS

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parents[1] / "shared" / "corpora" / "tinyshakespeare.txt"
TUNE_CHARS = 20_000
FORGETTINGS = (0.0, 1e-4, 1e-3, 1e-2)


def timed(fn, *args):
    started = time.process_time()
    result = fn(*args)
    return result, time.process_time() - started


def mix_nats(lps, forgetting):
    lps = np.stack(lps)
    return float(-mixed_log_probs(lps, online_weights(lps, forgetting)).mean())


def tune(neural, ngram, ids, rms):
    """(lr, decay, seg) and forgetting chosen on ids (a slice of the training split)."""
    static = float(-neural.log_probs(ids).mean())
    ngram_lp = ngram.log_probs(ids)
    forgetting = min(FORGETTINGS,
                     key=lambda f: mix_nats([neural.log_probs(ids), ngram_lp], f))
    results = {}
    for lr, decay, seg in itertools.chain(
            ((lr, 0.01, 256) for lr in (3e-5, 1e-4, 3e-4, 1e-3)),
            ((1e-4, d, 256) for d in (0.0, 0.003, 0.03)),
            ((1e-4, 0.01, s) for s in (64, 128))):
        model = adapt.AdaptedLM(neural, adapt.Settings(lr, decay, seg), rms)
        results[(lr, decay, seg)] = float(-model.log_probs(ids).mean())
        print(f"  tune lr {lr:g} decay {decay:g} seg {seg}: {results[(lr, decay, seg)]:.4f} "
              f"(static {static:.4f})", flush=True)
    return min(results, key=results.get), forgetting, results, static


def fit_ngram(run, neural, train_cps, fingerprint):
    """RUN/ngram.npz as `charlm train` now leaves it."""
    from charlm.io import checkpoint
    from charlm.train.ngram import choose_and_fit, ngram_sections
    ids = neural.vocab.encode_codepoints(train_cps)[0]
    model, _ = choose_and_fit(ids, neural.vocab.size)
    sections = ngram_sections(model, 0.1, None, 0.0, fingerprint, len(ids), 0)
    checkpoint.save_ngram(run / "ngram.npz", sections, model, neural.vocab)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--no-tune", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "MIX_ADAPT.md")
    args = parser.parse_args()
    neural = lm.load(args.run / "best.npz")
    corpus = render.read_corpus([args.corpus], "strict")
    train_ids, val_ids = text.split_train_val(corpus.ids, 0.1)
    cps = corpus.vocab.codepoints
    if not (args.run / "ngram.npz").exists():          # a run from before charlm fitted one
        fit_ngram(args.run, neural, cps[train_ids], corpus.fingerprint)
    ngram = lm.load(args.run / "ngram.npz")
    val = neural.vocab.encode_codepoints(cps[val_ids])[0]
    tune_ids = neural.vocab.encode_codepoints(cps[train_ids[-TUNE_CHARS:]])[0]
    rms = neural.adapt_rms
    if rms is None:
        rms = adapt.training_rms(neural, neural.vocab.encode_codepoints(cps[train_ids])[0])[0]
    settings, forgetting = adapt.Settings(*ADAPT_DEFAULTS), 1e-3
    lines = []
    if not args.no_tune:
        (lr, decay, seg), forgetting, grid, static = tune(neural, ngram, tune_ids, rms)
        settings = adapt.Settings(lr, decay, seg)
        lines += [f"Chosen on the training slice: lr {lr:g}, decay {decay:g}, seg {seg}, "
                  f"forgetting {forgetting:g} (slice static {static:.4f}, adapted "
                  f"{grid[(lr, decay, seg)]:.4f}).", ""]
    adapted = adapt.AdaptedLM(neural, settings, rms)
    model_lp, model_s = timed(neural.log_probs, val)
    _, static_s = timed(neural.score, val)
    ngram_lp, ngram_s = timed(ngram.log_probs, val)
    mixed, mixing_s = timed(mix_nats, [model_lp, ngram_lp], forgetting)
    adapted_lp, adapt_s = timed(adapted.log_probs, val)
    rows = {"n-gram": float(-ngram_lp.mean()), "model": float(-model_lp.mean()),
            "model + n-gram": mixed, "model --adapt": float(-adapted_lp.mean()),
            "model --adapt + n-gram": mix_nats([adapted_lp, ngram_lp], forgetting)}
    lines += ["| scored | val nats/char |", "|---|---:|"]
    lines += [f"| {name} ({ngram.describe() if name == 'n-gram' else neural.describe()}) "
              f"| {nats:.4f} |" for name, nats in rows.items()]
    lines += ["", f"CPU seconds, one stream, {len(val) - 1:,} predictions: static pass "
              f"{static_s:.2f}; mixing adds the n-gram pass {ngram_s:.2f} and the weights "
              f"{mixing_s:.2f}, {100 * (ngram_s + mixing_s) / static_s:.1f}% of the static pass; "
              f"--adapt {adapt_s:.2f}, {adapt_s / static_s:.2f}x the static pass."]
    header = (f"# Mixtures and dynamic evaluation\n\nGenerated by `benchmarks/mix_adapt.py "
              f"{args.run}` on {time.strftime('%Y-%m-%d')}: {platform.machine()}, "
              f"corpus `{args.corpus.name}` (last 10% validation, one stream, full pass).\n")
    report = header + "\n" + "\n".join(lines) + "\n"
    print(report)
    args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
