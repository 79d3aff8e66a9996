"""Divergence: what counts as it, and the error once recovering from it is no longer allowed.

A step with a non-finite loss or gradient, a loss that explodes while still finite, or a
non-finite validation raises Divergence. The trainer then rolls back to the last good state
(charlm.train.rollback), halves the learning rate and skips the batch that caused it; after
--max-rollbacks of these the next one ends the run with a DivergedError that says what to
change and what the user still has.
"""

import math

from charlm.errors import DivergedError
from charlm.train.rundir import kept


class Divergence(Exception):
    """The run diverged at a step. step: the step whose batch caused it (skipped after the
    rollback), or None when no single batch did (a validation)."""

    def __init__(self, message, step=None):
        super().__init__(message)
        self.message, self.step = message, step


class DivergenceGuard:
    def __init__(self, tcfg, out):
        self.tcfg, self.out = tcfg, out
        self.last_finite = None               # (step, loss), for the report

    def check_step(self, progress, step_loss, norm):
        """Before the update of step progress.step + 1: raises Divergence for a non-finite loss
        or gradient, or a loss exploding past its rule."""
        step = progress.step + 1
        if not (math.isfinite(step_loss) and math.isfinite(norm)):
            last = ("no finite loss in this run" if self.last_finite is None else
                    f"last finite loss {self.last_finite[1]:.4g} at step {self.last_finite[0]}")
            raise Divergence(f"the loss diverged (a non-finite loss or gradient at step {step}: "
                             f"loss {step_loss:g}, gradient norm {norm:g}; {last})", step)
        self._check_explosion(progress, step_loss)
        self.last_finite = (step, step_loss)

    def check_validation(self, progress, val):
        if val is not None and not math.isfinite(val):
            raise Divergence(f"validation loss is {val} at step {progress.step}")

    def good_state(self, progress, val):
        """Whether a validated state is one to roll back to: better than the untrained model
        (its first training loss). A large learning rate can wreck a model (saturated tanh
        units, say) while every value stays finite; returning there would not help."""
        initial = progress.initial_loss
        return val is None or initial is None or val < initial

    def final(self, divergence, progress):
        """The DivergedError ending the run: the divergence, what to lower, what is kept."""
        lr = f"--lr (now {self.tcfg.lr:g}"
        if progress.rollbacks:
            lr += (f"; {progress.rollbacks} rollbacks took it down to "
                   f"{self.tcfg.lr * progress.lr_scale:g}")
        hint = " or --clip-norm" if divergence.step is not None else ""
        return DivergedError(f"{divergence.message}; lower {lr}){hint}; {kept(self.out)}")

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
        smoothed = 0.9 * progress.smoothed_loss + 0.1 * step_loss
        if smoothed > factor * progress.initial_loss:
            raise Divergence(
                f"the loss is exploding (smoothed {smoothed:.4g} nats/char at step "
                f"{progress.step + 1}, over {factor:g} x the first "
                f"{progress.initial_loss:.4g})", progress.step + 1)
        progress.smoothed_loss = smoothed
