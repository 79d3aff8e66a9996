"""The training loop: batches -> forward -> loss -> backward -> clip -> step -> eval -> save.

Stateful truncated BPTT: the training ids are cut into B parallel streams; step k takes the
next T characters of every stream, and the hidden state left by step k is the initial state
of step k + 1 (gradients stop at the chunk boundary). The state is carried across epochs and
is untouched by validation, which scores from its own zero state.

The library never prints: `Trainer.run()` yields event dicts that the CLI renders.
"""

import fcntl
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from charlm import bundle, evaluate, loss, model, optim
from charlm.checkpoint import NonFiniteStateError, remove_stale_temps
from charlm.errors import CorpusError, DivergedError, OutputError, UsageError
from charlm.workspace import Workspace


@dataclass
class TrainConfig:
    cell: str = "gru"               # the best validation loss per CPU-minute (README)
    activation: str = "tanh"
    layers: int = 2
    hidden: int = 128
    dropout: float = 0.0
    seq_len: int = 64
    batch_size: int = 32
    lr: float = 4e-3                # with warm-up and cosine decay; 2e-3 trains slower
    optimizer: str = "adam"
    lr_schedule: str = "cosine"
    warmup: float = 0.02            # fraction of the run spent ramping the rate up
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    clip_value: float = 0.0         # 0 = off
    steps: int = 0                  # 0 = no step limit
    epochs: float = 0.0
    time_budget: float = 0.0        # seconds; 0 = none
    eval_every: int = 0             # steps; 0 = ten evaluations over the run
    eval_seconds: float = 0.0       # seconds between evaluations; 0 = a fifth of a time budget
    eval_streams: int = 16          # see evaluate.py; within ~0.001 nats of 1 stream, far faster
    eval_chars: int = 0             # 0 = the whole validation split
    val_frac: float = 0.1
    seed: int = 1337
    patience: int = 0               # evaluations without improvement before stopping; 0 = off
    state_reset: float = 0.01       # chance per stream and step that its carried state restarts
    max_skips: int = 5
    explode_factor: float = 3.0     # diverged once the smoothed loss passes this x the first loss

    def model_config(self, vocab_size):
        return model.ModelConfig(cell=self.cell, vocab_size=vocab_size, hidden=self.hidden,
                                 layers=self.layers, activation=self.activation,
                                 dropout=self.dropout)


def prepare_out_dir(out, *, fresh, force):
    """Create and lock the run directory; a fresh run refuses one that holds checkpoints."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / ".charlm.lock", "a+")
    except OSError as exc:
        raise OutputError(f"cannot use output directory {out}: {exc.strerror}; "
                          "choose another --out") from None
    try:
        _lock_and_check(lock, out, fresh=fresh, force=force)
    except BaseException:
        lock.close()
        raise
    return lock


def _lock_and_check(lock, out, *, fresh, force):
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read(32).strip()
        by = f" (PID {holder})" if holder.isdigit() else ""
        raise OutputError(f"{out} is in use by another charlm train{by}; wait for it or choose "
                          "another --out") from None
    try:                                        # named in the error a second run gets
        os.ftruncate(lock.fileno(), 0)          # unbuffered: nothing left to fail at close()
        os.write(lock.fileno(), f"{os.getpid()}\n".encode())
    except OSError:
        pass                                    # only a nicety; the probe below reports a bad dir
    remove_stale_temps(out)
    existing = [name for name in ("last.npz", "best.npz") if (out / name).exists()]
    if fresh and existing and not force:
        raise UsageError(f"{out} already holds {', '.join(existing)}; continue it with "
                         f"--resume {out / existing[0]}, overwrite with --force, "
                         "or choose another --out")
    probe = out / ".charlm-probe.tmp"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror}; choose another --out") from None
    if fresh and force and (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()


# What resuming restores; every piece is needed for a bitwise-equal continuation.
RESUME_PIECES = ("params", "moments", "optimizer_step", "hidden_state", "rng", "position")


def steps_per_epoch(n, batch_size, seq_len):
    """Windows per pass over n training ids; a CorpusError saying what to change if none fit."""
    B, T = batch_size, seq_len
    windows = (n - 1) // B // T
    if windows < 1:
        fits = [f"--{name} {value}" for name, value in
                (("seq-len", (n - 1) // B), ("batch-size", (n - 1) // T)) if value >= 1]
        raise CorpusError(
            f"the training split has {n} characters but one batch needs {B * T + 1}; "
            f"use a smaller --batch-size (now {B}) or --seq-len (now {T})"
            + (f", e.g. {' or '.join(fits)}" if fits else "") + ", or a longer text")
    return windows


class Trainer:
    def __init__(self, tcfg, vocab, train_ids, val_ids, out_dir, data_info, resume=None):
        self.tcfg, self.vocab, self.out = tcfg, vocab, Path(out_dir)
        self.train_ids, self.val_ids, self.data_info = train_ids, val_ids, data_info
        if tcfg.eval_chars and len(val_ids) > tcfg.eval_chars:
            self.val_ids = val_ids[:tcfg.eval_chars]
        self.mcfg = tcfg.model_config(vocab.size)
        B, T = tcfg.batch_size, tcfg.seq_len
        stream_len = (len(train_ids) - 1) // B
        self.windows = steps_per_epoch(len(train_ids), B, T)
        # (T, B) offsets of one window; window w reads train_ids[base + w * T]
        self.base = np.arange(B)[None, :] * stream_len + np.arange(T)[:, None]
        self.rng = np.random.default_rng(tcfg.seed)
        self.flat, self.params = model.init_params(self.mcfg, self.rng)
        self.grad_flat, self.grads = model.allocate(model.param_shapes(self.mcfg))
        self.workspace = Workspace()                      # a step's large arrays, reused
        self.opt = optim.make_optimizer(tcfg.optimizer, self.flat, self.params,
                                        tcfg.weight_decay, model.matrix_size(self.mcfg))
        self.state = model.initial_state(self.mcfg, B)
        self.progress = {"step": 0, "epoch": 0, "window": 0, "elapsed": 0.0, "best_val": None,
                         "last_val": None, "skipped": 0, "consecutive_skips": 0,
                         "evals_since_best": 0, "optimizer_step": 0, "initial_loss": None,
                         "smoothed_loss": None, "budget_spent": None}
        if resume is not None:
            self._restore(resume)
        self.stop_signal = None                           # set by the CLI's signal handler
        self.last_finite = None                           # (step, loss) for the divergence report
        self.total_steps = self._total_steps()

    # -- setup ------------------------------------------------------------------------------

    def _total_steps(self):
        t = self.tcfg
        if t.steps:
            return t.steps
        if t.epochs:
            return max(1, math.ceil(t.epochs * self.windows))
        if t.time_budget:
            return 0
        return self.windows                               # one epoch when nothing is given

    def _restore(self, ckpt, pieces=RESUME_PIECES):
        """Everything an exact resume needs; `pieces` exists so a test can prove each matters."""
        params, moments, state = bundle.split_arrays(ckpt, self.mcfg)
        saved = dict(ckpt.config["progress"])
        if "params" in pieces:
            for name, value in params.items():
                self.params[name][...] = value
        if "moments" in pieces:
            for moment, views in moments.items():
                for name, value in views.items():
                    self.opt.moment_views[moment][name][...] = value
        if "optimizer_step" in pieces:
            self.opt.step_count = saved["optimizer_step"]
        if "hidden_state" in pieces:
            self.state = [tuple(a.copy() for a in layer) for layer in state]
        if "rng" in pieces:
            self.rng.bit_generator.state = saved["rng"]
        position = ("step", "epoch", "window", "elapsed")
        for key, value in saved.items():
            if key in self.progress and (key not in position or "position" in pieces):
                self.progress[key] = value

    def config_dict(self):
        progress = dict(self.progress, optimizer_step=self.opt.step_count,
                        rng=self.rng.bit_generator.state)
        return {"model": self.mcfg.to_dict(), "train": asdict(self.tcfg),
                "progress": progress, "data": self.data_info}

    def parameter_count(self):
        return int(self.flat.size)

    # -- the loop ---------------------------------------------------------------------------

    def run(self):
        """Train until the first stopping rule; yields event dicts for the CLI."""
        t, p = self.tcfg, self.progress
        if self._finished(p["elapsed"]):
            yield {"event": "complete", "step": p["step"]}
            return
        started = time.perf_counter() - p["elapsed"]
        eval_every = t.eval_every or max(1, (self.total_steps or 10**9) // 10)
        by_time = t.eval_seconds or (t.time_budget / 5 if t.time_budget and not t.eval_every
                                     else 0.0)
        eval_interval = by_time or math.inf
        next_eval_time = p["elapsed"] + eval_interval
        reserve = self._estimate_eval_seconds() if t.time_budget else 0.0
        chars_per_step = t.batch_size * t.seq_len
        train_sum, train_count, window_start = 0.0, 0, time.perf_counter()
        yield {"event": "start", "total_steps": self.total_steps, "parameters": self.flat.size,
               "steps_per_epoch": self.windows}
        while True:
            step_loss, norm = self.train_step()
            p["elapsed"] = time.perf_counter() - started
            if math.isfinite(step_loss):
                train_sum, train_count = train_sum + step_loss, train_count + 1
            rate = chars_per_step / max(time.perf_counter() - window_start, 1e-9)
            window_start = time.perf_counter()
            yield {"event": "step", "step": p["step"], "loss": step_loss, "grad_norm": norm,
                   "lr": self._lr(), "chars_per_s": rate, "elapsed": p["elapsed"],
                   "epoch": p["epoch"]}
            if self.stop_signal is not None:
                self._save("last.npz")
                yield {"event": "interrupted", "signal": self.stop_signal, "step": p["step"],
                       "path": str(self.out / "last.npz")}
                return
            done = self._finished(p["elapsed"] + reserve)
            if self._budget_reached(p["elapsed"] + reserve):
                p["budget_spent"] = t.time_budget            # saved with the final validation
            due = p["elapsed"] >= next_eval_time if by_time else p["step"] % eval_every == 0
            if due or done:
                eval_started = time.perf_counter()
                yield from self._evaluate_and_save(train_sum / max(train_count, 1))
                reserve = max(reserve, time.perf_counter() - eval_started)
                train_sum, train_count = 0.0, 0
                next_eval_time = p["elapsed"] + eval_interval
                window_start = time.perf_counter()
                if t.patience and p["evals_since_best"] >= t.patience:
                    yield {"event": "early_stop", "step": p["step"]}
                    done = True
            if done:
                break
        p["elapsed"] = time.perf_counter() - started
        yield {"event": "done", "step": p["step"], "elapsed": p["elapsed"],
               "best_val": p["best_val"], "last_val": p["last_val"],
               "parameters": int(self.flat.size), "skipped": p["skipped"]}

    def _finished(self, elapsed):
        if self.total_steps and self.progress["step"] >= self.total_steps:
            return True
        return self._budget_reached(elapsed)

    def _budget_reached(self, elapsed):
        """A time-budget run stops a final validation's length before its budget, so the
        elapsed time it saves falls short of it: it also saves the budget it spent."""
        t, p = self.tcfg, self.progress
        return bool(t.time_budget) and max(elapsed, p["budget_spent"] or 0) >= t.time_budget

    def _progress_fraction(self):
        t, p = self.tcfg, self.progress
        parts = []
        if self.total_steps:
            parts.append(p["step"] / self.total_steps)
        if t.time_budget:
            parts.append(p["elapsed"] / t.time_budget)
        return max(parts) if parts else 0.0

    def _lr(self):
        t = self.tcfg
        return t.lr * optim.schedule_factor(t.lr_schedule, self._progress_fraction(), t.warmup)

    def train_step(self):
        """One TBPTT step; returns (mean loss in nats, gradient norm before clipping)."""
        # a non-finite loss or gradient is handled below (skip; diverge after max_skips), so
        # numpy's overflow warnings would only flood the terminal
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._train_step()

    def _train_step(self):
        t, p = self.tcfg, self.progress
        idx = self.base + p["window"] * t.seq_len
        x, y = self.train_ids[idx], self.train_ids[idx + 1]          # (T, B) each
        dropout_rng = self.rng if t.dropout > 0 else None
        logits, new_state, cache = model.forward(self.params, self.mcfg, x, self.state,
                                                 dropout_rng, self.workspace)
        nll_sum, dlogits = loss.cross_entropy(logits, y.reshape(-1))
        step_loss = nll_sum / y.size
        model.backward(self.params, self.mcfg, dlogits, cache, self.grads, ws=self.workspace)
        norm = optim.global_norm(self.grad_flat)
        # Checked before clipping: an inf norm times a clip factor would become NaN weights.
        if math.isfinite(step_loss) and math.isfinite(norm):
            self._check_explosion(step_loss)
            if t.clip_value:
                optim.clip_by_value(self.grad_flat, t.clip_value)
                norm_after = optim.global_norm(self.grad_flat)
            else:
                norm_after = norm
            optim.clip_by_norm(self.grad_flat, norm_after, t.clip_norm)
            self.opt.step(self.grad_flat, self._lr())
            p["consecutive_skips"] = 0
            self.state = self._occasionally_reset(new_state)
            self.last_finite = (p["step"] + 1, step_loss)
        else:
            p["skipped"] += 1
            p["consecutive_skips"] += 1
            if p["consecutive_skips"] >= t.max_skips:
                last = ("no finite loss in this run" if self.last_finite is None else
                        f"last finite loss {self.last_finite[1]:.4g} at step {self.last_finite[0]}")
                raise DivergedError(
                    f"the loss diverged ({p['consecutive_skips']} steps in a row with a "
                    f"non-finite loss or gradient, step {p['step'] + 1}: loss {step_loss:g}, "
                    f"gradient norm {norm:g}; {last}); lower --lr (now {t.lr:g}) "
                    f"or --clip-norm; {self._kept()}")
            if all(np.isfinite(a).all() for layer in new_state for a in layer):
                self.state = new_state
            else:
                self.state = model.initial_state(self.mcfg, t.batch_size)
        p["step"] += 1
        p["window"] += 1
        if p["window"] == self.windows:
            p["window"] = 0
            p["epoch"] += 1
        return step_loss, norm

    def _check_explosion(self, step_loss):
        """char-rnn's rule: a smoothed loss above explode_factor x the first loss is divergence,
        even while every value is still finite (a huge --lr with tanh cells stays finite)."""
        t, p = self.tcfg, self.progress
        if not t.explode_factor:
            return
        if p["initial_loss"] is None:
            p["initial_loss"] = p["smoothed_loss"] = step_loss
            return
        p["smoothed_loss"] = 0.9 * p["smoothed_loss"] + 0.1 * step_loss
        if p["smoothed_loss"] > t.explode_factor * p["initial_loss"]:
            raise DivergedError(
                f"the loss is exploding (smoothed {p['smoothed_loss']:.4g} nats/char at step "
                f"{p['step'] + 1}, over {t.explode_factor:g} x the first {p['initial_loss']:.4g}); "
                f"lower --lr (now {t.lr:g}) or --clip-norm; {self._kept()}")

    def _kept(self):
        """The end of a divergence message: what the user still has."""
        if (self.out / "last.npz").exists():
            return f"the last good checkpoint, {self.out / 'last.npz'}, is intact"
        return f"no checkpoint was saved in {self.out}"

    def _occasionally_reset(self, state):
        """Restart a few streams' state from zero, so the model also learns to begin from the
        zero state that sampling and evaluation start from. A model that only ever continues
        carried state can come to rely on cell values built up over thousands of steps and
        then score far worse from a fresh start."""
        if self.tcfg.state_reset <= 0:
            return state
        restart = self.rng.random(self.tcfg.batch_size) < self.tcfg.state_reset
        if restart.any():
            for layer in state:
                for part in layer:
                    part[restart] = 0
        return state

    # -- evaluation and checkpoints ---------------------------------------------------------

    def validation_loss(self):
        """Mean nats/char on the validation split, by the code `eval perplexity` uses."""
        if len(self.val_ids) < 2:
            return None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # checked by caller
            nll, count = evaluate.score_ids(self.params, self.mcfg, self.val_ids,
                                            streams=self.tcfg.eval_streams)
        return nll / count

    def _estimate_eval_seconds(self):
        """Time a short validation slice and scale it up, to keep the final pass in budget."""
        if len(self.val_ids) < 2:
            return 0.0
        probe = self.val_ids[:min(len(self.val_ids), 2048)]
        started = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            evaluate.score_ids(self.params, self.mcfg, probe, streams=self.tcfg.eval_streams)
        seconds = time.perf_counter() - started
        return 1.5 * seconds * len(self.val_ids) / len(probe) + 0.5

    def _evaluate_and_save(self, train_loss):
        p = self.progress
        val = self.validation_loss()
        if val is not None and not math.isfinite(val):
            raise DivergedError(f"validation loss is {val} at step {p['step']}; lower --lr "
                                f"(now {self.tcfg.lr:g}); {self._kept()}")
        p["last_val"] = val
        improved = val is not None and (p["best_val"] is None or val < p["best_val"])
        if improved:
            p["best_val"] = val
            p["evals_since_best"] = 0
        elif val is not None:
            p["evals_since_best"] += 1
        self._save("last.npz")
        if improved:
            self._save("best.npz")
        record = {"step": p["step"], "epoch": p["epoch"], "elapsed": round(p["elapsed"], 3),
                  "train_loss": train_loss, "val_loss": val, "lr": self._lr(),
                  "skipped": p["skipped"]}
        self._append_metrics(record)
        yield {"event": "eval", **record, "best_val": p["best_val"], "improved": improved}

    def _save(self, name):
        try:
            bundle.save(self.out / name, self.config_dict(), self.params, self.vocab,
                        self.opt.moment_views, self.state)
        except NonFiniteStateError as exc:
            raise DivergedError(f"{exc}; lower --lr (now {self.tcfg.lr:g}); "
                                f"{self._kept()}") from None

    def _append_metrics(self, record):
        try:
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise OutputError(f"cannot append to {self.out / 'metrics.jsonl'}: "
                              f"{exc.strerror}") from None

