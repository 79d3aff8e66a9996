"""The training loop: batches -> forward -> loss -> backward -> clip -> step -> eval -> save.

Stateful truncated BPTT (charlm.data.batching): the hidden state left by step k is the
initial state of step k + 1, carried across epochs and untouched by validation, which scores
from its own zero state. The library never prints: `Trainer.run()` yields event dicts that the
CLI renders.
"""

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from charlm.data.batching import Windows
from charlm.io import checkpoint
from charlm.io.npz import NonFiniteStateError
from charlm.io.progress import Progress
from charlm.nn import bidirectional, model, optim, output, resets
from charlm.nn.inference import score_ids
from charlm.nn.workspace import Workspace
from charlm.train.finetune import copy_weights
from charlm.train.guard import Divergence, DivergenceGuard
from charlm.train.rollback import Snapshot, roll_back
from charlm.train.rundir import append_metrics, validation_record
from charlm.train.stopping import StoppingRule, eval_schedule, total_steps
from charlm.train.watch import sample_at_validation

# numpy's warnings about overflow are noise here: non-finite values are handled (skipped or
# reported as divergence) by the code that sees them
QUIET = {"over": "ignore", "invalid": "ignore", "divide": "ignore"}


def model_config(tcfg, vocab_size):
    adaptive = tcfg.softmax == output.ADAPTIVE
    return model.ModelConfig(cell=tcfg.cell, vocab_size=vocab_size, hidden=tcfg.hidden,
                             layers=tcfg.layers, activation=tcfg.activation,
                             dropout=tcfg.dropout, embed=tcfg.embed, softmax=tcfg.softmax,
                             cutoffs=parse_cutoffs(tcfg.cutoffs) if adaptive else (),
                             div_value=tcfg.div_value, reset_at=tcfg.reset_at,
                             bidirectional=tcfg.bidirectional)


def parse_cutoffs(text):
    """"500,2000" -> (500, 2000); ValueError if it is not a list of integers."""
    return tuple(int(part) for part in text.split(","))


class Trainer:
    def __init__(self, tcfg, vocab, train_ids, val_ids, out_dir, data_info, resume=None,
                 base=None):
        """resume: a loaded checkpoint (charlm.io.checkpoint.load) to continue exactly; base:
        one whose weights a new run starts from (charlm.train.finetune)."""
        self.tcfg, self.vocab, self.out = tcfg, vocab, Path(out_dir)
        self.train_ids, self.data_info = train_ids, data_info
        self.val_ids = val_ids[:tcfg.eval_chars] if tcfg.eval_chars else val_ids
        self.mcfg = model_config(tcfg, vocab.size)
        self.batches = Windows(train_ids, tcfg.batch_size, tcfg.seq_len)
        self.reset_ids, self.restart = documents(tcfg.reset_at, vocab, train_ids)
        self.windows = self.batches.count
        self.rng = np.random.default_rng(tcfg.seed)
        self.flat, self.params = model.init_params(self.mcfg, self.rng)
        if base is not None:
            copy_weights(self.params, checkpoint.neural_arrays(base, self.mcfg)[0])
        self.grad_flat, self.grads = model.allocate(model.param_shapes(self.mcfg))
        self.workspace = Workspace()                      # a step's large arrays, reused
        self.opt = optim.make_optimizer(tcfg.optimizer, self.flat, self.params,
                                        tcfg.weight_decay, model.matrix_size(self.mcfg))
        self.state = model.initial_state(self.mcfg, tcfg.batch_size)
        self.progress = Progress()
        if resume is not None:
            restore(self, resume)
        self.stop_signal = None                           # set by the CLI's signal handler
        self.auto_size = None                             # what auto-size chose and predicted
        self.validations = 0                              # in this process, for --sample-every
        self.step_seconds = 0.0                           # a step's seconds, smoothed
        self.guard = DivergenceGuard(tcfg, self.out)
        self.total_steps = total_steps(tcfg, self.windows)
        self.stopping = StoppingRule(self.total_steps, tcfg.time_budget, tcfg.patience)

    def run(self):
        """Train until the stopping rule says so; yields event dicts for the CLI."""
        p, stop = self.progress, self.stopping
        # a new run always takes a step and saves a model, even when auto-size's probes
        # spent a tiny budget on a busy machine
        if stop.finished(p) and p.step > 0:
            yield {"event": "complete", "step": p.step}
            return
        started = time.perf_counter() - p.elapsed
        schedule = eval_schedule(self)
        chars_per_step = self.tcfg.batch_size * self.tcfg.seq_len
        train_losses, window_start = [], time.perf_counter()
        self.snapshot = Snapshot(self)
        append_metrics(self.out, {"event": "start", "at_step": p.step, "elapsed": p.elapsed,
                                  "parameters": self.flat.size, "auto_size": self.auto_size})
        yield {"event": "start", "total_steps": self.total_steps, "parameters": self.flat.size,
               "steps_per_epoch": self.windows}
        while True:
            try:
                step_loss, norm = self.train_step()
                p.elapsed = time.perf_counter() - started
                if math.isfinite(step_loss):
                    train_losses.append(step_loss)
                step_seconds = max(time.perf_counter() - window_start, 1e-9)
                self.step_seconds = 0.9 * (self.step_seconds or step_seconds) + 0.1 * step_seconds
                rate = chars_per_step / step_seconds
                window_start = time.perf_counter()
                yield {"event": "step", "step": p.step, "loss": step_loss, "grad_norm": norm,
                       "lr": self._lr(), "chars_per_s": rate, "elapsed": p.elapsed,
                       "epoch": p.epoch, "skipped": math.isnan(norm)}
                if self.stop_signal is not None:
                    save(self, "last.npz")
                    yield {"event": "interrupted", "signal": self.stop_signal, "step": p.step,
                           "path": str(self.out / "last.npz")}
                    return
                due = schedule.due(p)
                done = stop.after_step(p, due)
                if done or due:
                    yield self._evaluate_and_save(sum(train_losses) / max(len(train_losses), 1))
            except Divergence as divergence:
                p.elapsed = time.perf_counter() - started
                yield roll_back(self, divergence)
                p, done, due = self.progress, False, True     # due: the schedule starts over
            if done or due:
                train_losses, window_start = [], time.perf_counter()
                schedule.done(p)
            if (done or due) and stop.out_of_patience(p):
                yield {"event": "early_stop", "step": p.step}
                done = True
            if done:
                break
        p.elapsed = time.perf_counter() - started
        yield {"event": "done", "step": p.step, "elapsed": p.elapsed, "best_val": p.best_val,
               "last_val": p.last_val, "parameters": int(self.flat.size), "skipped": p.skipped,
               "rollbacks": p.rollbacks}

    def _lr(self):
        t = self.tcfg
        factor = optim.schedule_factor(t.lr_schedule, self.stopping.fraction(self.progress),
                                       t.warmup)
        return t.lr * self.progress.lr_scale * factor

    def train_step(self):
        """One TBPTT step; returns (mean loss in nats, gradient norm before clipping), NaNs for
        a batch skipped after a rollback. Raises Divergence (before any update) when the loss
        or gradient is not finite or the loss explodes."""
        t, p = self.tcfg, self.progress
        if p.step + 1 in p.skip_at:                            # its batch diverged before
            p.skipped += 1
            advance(p, self.windows)
            return math.nan, math.nan
        x, y = self.batches[p.window]                                 # (T, B) each
        keep = window_keep(self.restart, self.batches, p.window, self.flat.dtype)
        with np.errstate(**QUIET):
            nll_sum, new_state, _ = loss_and_grads(self.mcfg)(
                self.params, self.mcfg, x, y, self.state, self.grads,
                self.rng if t.dropout > 0 else None, ws=self.workspace, keep=keep)
            step_loss = nll_sum / y.size
            norm = optim.global_norm(self.grad_flat)
            # Checked before clipping: an inf norm times a clip factor would become NaN weights
            self.guard.check_step(p, step_loss, norm)
            clip_and_step(self.grad_flat, norm, self.opt, self._lr(), t)
            self.state = restart_some(new_state, self.rng, t.state_reset)
        advance(p, self.windows)
        return step_loss, norm

    def validation_loss(self, ids=None):
        """Mean nats/char on the validation split (or ids), by the code `eval perplexity` uses
        (a bidirectional model: the cloze score of `eval cloze`, every character blanked)."""
        ids = self.val_ids if ids is None else ids
        if len(ids) < 2:
            return None
        with np.errstate(**QUIET):                    # a non-finite score is the caller's to see
            nll, count = score(self.params, self.mcfg, ids, self.tcfg.eval_streams,
                               self.reset_ids)
        return nll / count

    def _evaluate_and_save(self, train_loss):
        p, started = self.progress, time.perf_counter()
        val = self.validation_loss()
        self.guard.check_validation(p, val)
        improved = p.record_validation(val)
        sample = sample_at_validation(self)
        if self.guard.good_state(p, val):
            self.snapshot = Snapshot(self)
        # measured times only go into the checkpoint (the start-up estimate may be far off);
        # this one without its saves, which the next checkpoint then counts too
        self.stopping.validated(time.perf_counter() - started, p)
        save(self, "last.npz")
        if improved:
            save(self, "best.npz")
        self.stopping.validated(time.perf_counter() - started, p)
        record = validation_record(p, self.tcfg, train_loss, val, self._lr())
        if sample is not None:
            record["sample"] = sample
        append_metrics(self.out, record)
        return {"event": "eval", **record, "best_val": p.best_val, "improved": improved}



def sections(trainer):
    """The checkpoint's config sections for the run as it stands."""
    t = trainer
    t.progress.optimizer_step = t.opt.step_count
    t.progress.rng = t.rng.bit_generator.state
    return {"model": t.mcfg.to_dict(), "train": asdict(t.tcfg), "progress": t.progress.to_dict(),
            "data": t.data_info}


def save(trainer, name):
    """last.npz: all a resume needs; best.npz: the weights alone (what users keep)."""
    t = trainer
    try:
        if name == "best.npz":
            checkpoint.save_weights(t.out / name, sections(t), t.params, t.vocab)
            return
        checkpoint.save_neural(t.out / name, sections(t), t.params, t.vocab,
                               t.opt.moment_views, t.state)
    except NonFiniteStateError as exc:
        raise t.guard.unsaveable(exc) from None


def advance(progress, windows):
    """One step on: the next window, or the first of the next pass."""
    progress.step += 1
    progress.window += 1
    if progress.window == windows:
        progress.window = 0
        progress.epoch += 1


def documents(reset_at, vocab, train_ids):
    """--reset-at: (the separator's ids, (N_train,) bool where the state restarts or None)."""
    reset_ids = vocab.encode(reset_at)[0]
    return reset_ids, resets.restarts(train_ids, reset_ids) if reset_at else None


def window_keep(restart, batches, window, dtype):
    """The cells' keep mask (T, 1, B) for a window (charlm.nn.resets), None if nothing restarts."""
    if restart is None:
        return None
    return resets.keep_mask(restart[batches.positions(window)], dtype)


def loss_and_grads(mcfg):
    """One training chunk's loss and gradients for this kind of model."""
    return bidirectional.loss_and_grads if mcfg.bidirectional else model.loss_and_grads


def score(params, mcfg, ids, streams, reset_ids=()):
    """Validation: the left-to-right score, or the bidirectional cloze score (at streams)."""
    if mcfg.bidirectional:
        return bidirectional.score_ids(params, mcfg, ids, streams)
    return score_ids(params, mcfg, ids, streams, reset_ids=reset_ids)


def restart_some(state, rng, chance):
    """Restart a few streams' state from zero, so the model also learns to begin from the
    zero state that sampling and evaluation start from. A model that only ever continues
    carried state can come to rely on cell values built up over thousands of steps and then
    score far worse from a fresh start. state: per layer, (B, H) arrays, changed in place."""
    if chance <= 0:
        return state
    restart = rng.random(len(state[0][0])) < chance
    if restart.any():
        for layer in state:
            for part in layer:
                part[restart] = 0
    return state


def restore(trainer, loaded):
    """Everything an exact resume needs: weights, moments, the update count, the carried
    state, the generator and the position (tests/test_resume.py proves each matters)."""
    params, moments, state = checkpoint.neural_arrays(loaded, trainer.mcfg)
    for name, value in params.items():
        trainer.params[name][...] = value
    for moment, views in moments.items():
        for name, value in views.items():
            trainer.opt.moment_views[moment][name][...] = value
    trainer.progress = Progress.from_dict(loaded.config["progress"])
    trainer.opt.step_count = trainer.progress.optimizer_step
    trainer.state = [tuple(a.copy() for a in layer) for layer in state]
    if trainer.progress.rng is not None:
        trainer.rng.bit_generator.state = trainer.progress.rng


def clip_and_step(grad_flat, norm, opt, lr, tcfg):
    """Clip (by value, then by the global norm) and take the optimizer's step."""
    if tcfg.clip_value:
        optim.clip_by_value(grad_flat, tcfg.clip_value)
        norm = optim.global_norm(grad_flat)
    optim.clip_by_norm(grad_flat, norm, tcfg.clip_norm)
    opt.step(grad_flat, lr)
