"""Divergence: a step with a non-finite loss or gradient is skipped; too many in a row, a loss
that explodes while still finite, or a non-finite validation ends the run with a DivergedError
that says what to change and what the user still has."""

import math

from charlm.errors import DivergedError
from charlm.train.rundir import kept


class DivergenceGuard:
    def __init__(self, tcfg, out):
        self.tcfg, self.out = tcfg, out
        self.last_finite = None               # (step, loss), for the report

    def finite_step(self, progress, step_loss):
        """A step whose loss and gradient were finite; raises if the loss is exploding."""
        self._check_explosion(progress, step_loss)
        progress.consecutive_skips = 0
        self.last_finite = (progress.step + 1, step_loss)

    def skipped_step(self, progress, step_loss, norm):
        """A step whose update was skipped; raises after max_skips of them in a row."""
        progress.skipped += 1
        progress.consecutive_skips += 1
        if progress.consecutive_skips >= self.tcfg.max_skips:
            last = ("no finite loss in this run" if self.last_finite is None else
                    f"last finite loss {self.last_finite[1]:.4g} at step {self.last_finite[0]}")
            raise DivergedError(
                f"the loss diverged ({progress.consecutive_skips} steps in a row with a "
                f"non-finite loss or gradient, step {progress.step + 1}: loss {step_loss:g}, "
                f"gradient norm {norm:g}; {last}); lower --lr (now {self.tcfg.lr:g}) "
                f"or --clip-norm; {kept(self.out)}")

    def check_validation(self, progress, val):
        if val is not None and not math.isfinite(val):
            raise DivergedError(f"validation loss is {val} at step {progress.step}; lower --lr "
                                f"(now {self.tcfg.lr:g}); {kept(self.out)}")

    def unsaveable(self, exc):
        """The error for a checkpoint that refused non-finite weights."""
        return DivergedError(f"{exc}; lower --lr (now {self.tcfg.lr:g}); {kept(self.out)}")

    def _check_explosion(self, progress, step_loss):
        """char-rnn's rule: a smoothed loss above explode_factor x the first loss is divergence,
        even while every value is still finite (a huge --lr with tanh cells stays finite)."""
        factor = self.tcfg.explode_factor
        if not factor:
            return
        if progress.initial_loss is None:
            progress.initial_loss = progress.smoothed_loss = step_loss
            return
        progress.smoothed_loss = 0.9 * progress.smoothed_loss + 0.1 * step_loss
        if progress.smoothed_loss > factor * progress.initial_loss:
            raise DivergedError(
                f"the loss is exploding (smoothed {progress.smoothed_loss:.4g} nats/char at step "
                f"{progress.step + 1}, over {factor:g} x the first {progress.initial_loss:.4g}); "
                f"lower --lr (now {self.tcfg.lr:g}) or --clip-norm; {kept(self.out)}")
