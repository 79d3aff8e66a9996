"""What a neural run leaves beside best.npz: the Kneser-Ney n-gram of its training split
(ngram.npz) and the mixture of the two (mix.npz), scored on validation like the model; mix.npz's
recurrent model also holds the gradient RMS that dynamic evaluation needs.

The n-gram is fitted, scored on validation and saved before training starts (its order chosen
on a slice of the training split, charlm.train.ngram.choose_and_fit) and its seconds are
charged to the run's clock, so a --time-budget covers it. The mixture is scored when the run
ends: one more pass of the best model over the validation split (per-position log-probabilities
for the online weights, beside the n-gram's kept from the start), the gradient RMS on 30
training windows and the save, a few seconds that the stopping rule keeps inside the budget.
"""

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from charlm import lm
from charlm.io import checkpoint, mixture_file
from charlm.lm.adapt import STATS_WINDOWS, training_rms
from charlm.lm.mixture import FORGETTING, MixtureLM, mixed_log_probs, online_weights
from charlm.nn import kneser_ney
from charlm.train import ngram
from charlm.train.rundir import append_metrics

NGRAM_FILE, MIX_FILE = "ngram.npz", "mix.npz"


class RunMixture:
    """The n-gram of a run's training split, fitted before its Trainer exists (so that
    auto-size plans with the seconds left), and later the mixture with best.npz."""

    def __init__(self, train_ids, val_ids, vocab, out, val_frac, data_info):
        started = time.perf_counter()
        self.trainer, self.val_ids = None, val_ids
        model, _ = ngram.choose_and_fit(train_ids, vocab.size)
        self.ngram_val, self.ngram_log_probs = None, None
        if len(val_ids) >= 2:            # kept for the mixture: (N - 1,) per position
            self.ngram_log_probs = kneser_ney.log_prob_stream(model, val_ids)
            self.ngram_val = float(-self.ngram_log_probs.mean())
        self.order = model.order
        self.fit_seconds = time.perf_counter() - started
        sections = ngram.ngram_sections(model, val_frac, self.ngram_val, self.fit_seconds,
                                        data_info.get("fingerprint"), len(train_ids),
                                        len(val_ids))
        # saved and read back now, so that the budget covers both (seconds for a large text)
        path = Path(out) / NGRAM_FILE
        checkpoint.save_ngram(path, sections, model, vocab)
        self.ngram_part = checkpoint.load(path)
        self.fit_seconds = time.perf_counter() - started

    @classmethod
    def of_plan(cls, plan):
        """The n-gram of a charlm.train.session.Plan's training split."""
        return cls(plan.train_ids, plan.val_ids, plan.corpus.vocab, plan.out,
                   plan.tcfg.val_frac, plan.data_info)

    def attach(self, trainer):
        """The run's Trainer: its clock pays for the n-gram, its stopping rule for finish."""
        self.trainer = trainer
        trainer.progress.elapsed += self.fit_seconds      # the budget covers the n-gram too
        trainer.stopping.after_run = self.expected_seconds
        return self

    def expected_seconds(self):
        """What finish will take, for the stopping rule to keep inside the budget: one more
        pass of the model over validation (a validation's time) and the gradient RMS's
        STATS_WINDOWS forward-backward passes (about a training step's time each). A 300 s run
        on 4M characters of manual pages overran its budget by 60 s without this reserve."""
        stopping = self.trainer.stopping
        return stopping.reserve + STATS_WINDOWS * self.trainer.step_seconds

    def finish(self):
        """After training: the mixture of best.npz and the n-gram, scored on validation and
        saved as mix.npz; its figures (also appended to metrics.jsonl), or None without a
        best.npz or a validation split."""
        out = Path(self.trainer.out)
        if self.ngram_val is None or not (out / "best.npz").exists():
            return None
        started = time.perf_counter()
        parts = [self._with_gradient_rms(checkpoint.load(out / "best.npz")), self.ngram_part]
        rms_seconds = time.perf_counter() - started
        models = [lm.from_checkpoint(part) for part in parts]
        MixtureLM(models)                                 # the vocabularies agree
        lps = np.stack([models[0].log_probs(self.val_ids, self.trainer.tcfg.eval_streams),
                        self.ngram_log_probs])                                   # (2, N - 1)
        mixed = mixed_log_probs(lps, online_weights(lps, FORGETTING))
        nats = [float(-lps[0].mean()), float(-mixed.mean())]
        mixture_file.save_mixture(out / MIX_FILE, parts, None, FORGETTING)
        record = {"event": "mixture", "model_val": nats[0], "ngram_val": self.ngram_val,
                  "mix_val": nats[1], "ngram_order": self.order,
                  "ngram_seconds": round(self.fit_seconds, 3),
                  "adapt_rms_seconds": round(rms_seconds, 3),
                  "mix_seconds": round(time.perf_counter() - started - rms_seconds, 3),
                  "ngram": str(out / NGRAM_FILE), "mix": str(out / MIX_FILE)}
        append_metrics(out, record)
        return record

    def _with_gradient_rms(self, best):
        """best.npz's Loaded with the gradient RMS of its weights on training windows, which
        `--adapt` and `--adapt-on` read from mix.npz's recurrent model (charlm.lm.adapt);
        best.npz itself stays the plain model."""
        rms, info = training_rms(lm.from_checkpoint(best), self.trainer.train_ids)
        return replace(best, config=best.config | {"adapt_rms": info},
                       arrays=best.arrays | {"adapt/rms": rms})
