"""When a run validates and when it stops: one object for each rule.

A run stops at the first of: its step count (--steps, or --epochs as steps), its time budget,
or --patience validations without improvement. A time budget must hold the final validation
too, so the run stops a validation's length (the reserve) before the budget, and before what
runs after the last step (after_run: the run's mixture, charlm.train.mixture); the elapsed time
it saves then falls short of the budget, so it also records the budget as spent, and a resume
with the same budget is complete at once.
"""

import math
import time


def total_steps(tcfg, windows):
    """The run's step count: the first reached of --steps and --epochs (in steps), none (0)
    for a time budget alone, else one pass over the corpus."""
    limits = [tcfg.steps] if tcfg.steps else []
    if tcfg.epochs:
        limits.append(max(1, math.ceil(tcfg.epochs * windows)))
    if limits:
        return min(limits)
    if tcfg.time_budget:
        return 0
    return windows


class StoppingRule:
    def __init__(self, steps, time_budget, patience):
        self.steps, self.time_budget, self.patience = steps, time_budget, patience
        self.measured = 0.0                 # the longest validation seen (with its checkpoints)
        self.estimate = 0.0                 # the start-up guess, until one is measured
        self.after_run = lambda: 0.0        # seconds of work after the final validation

    @property
    def reserve(self):
        """Seconds the final validation is expected to take."""
        return self.measured or self.estimate

    def budget_reached(self, progress, reserve=0.0):
        return bool(self.time_budget) and max(progress.elapsed + reserve,
                                              progress.budget_spent or 0) >= self.time_budget

    def finished(self, progress, reserve=0.0):
        """Steps or budget spent (the budget less reserve seconds)."""
        if self.steps and progress.step >= self.steps:
            return True
        return self.budget_reached(progress, reserve)

    def after_step(self, progress, due=False):
        """Whether the step just taken was the last; records a budget that is now spent.

        due: a validation is due now anyway. It is the last one when another step and the
        final validation after it would not fit behind it: otherwise two validations would
        come a step apart at the end of the budget.
        """
        reserve = self.reserve * (2 if due else 1) + self.after_run()
        if self.budget_reached(progress, reserve):
            progress.budget_spent = self.time_budget          # saved with the final validation
        return self.finished(progress, reserve)

    def validated(self, seconds, progress=None):
        """A validation (with its checkpoints) took this long: the final one will take at
        least as long. Kept in progress, so a resumed run knows it from its start."""
        self.measured = max(self.measured, seconds)
        if progress is not None:
            progress.validation_seconds = max(progress.validation_seconds, self.measured)

    def estimated(self, seconds):
        """The reserve before any validation is measured (an estimate, or a resumed run's)."""
        self.estimate = seconds

    def out_of_patience(self, progress):
        return bool(self.patience) and progress.evals_since_best >= self.patience

    def fraction(self, progress):
        """How far through the run, in [0, 1]: what the learning-rate schedule follows."""
        parts = []
        if self.steps:
            parts.append(progress.step / self.steps)
        if self.time_budget:
            parts.append(progress.elapsed / self.time_budget)
        return max(parts) if parts else 0.0


CHEAP_EVALS = 50     # a validation costing under 1/50 of the gap before it is run more often
MAX_EVALS = 100      # of a time budget


class EvalSchedule:
    """Every --eval-every steps, or every --eval-seconds (default: a fifth of a time budget,
    or CHEAP_EVALS validations' time where that is shorter: a small corpus is memorised
    within seconds, and its best point must not fall between two validations), else ten
    times over the run. validation_seconds: what one validation takes (measured or
    estimated)."""

    def __init__(self, tcfg, steps, elapsed, validation_seconds=0.0):
        self.every = tcfg.eval_every or max(1, (steps or 10**9) // 10)
        self.seconds = tcfg.eval_seconds or (
            tcfg.time_budget / 5 if tcfg.time_budget and not tcfg.eval_every else 0.0)
        if self.seconds and not tcfg.eval_seconds and validation_seconds > 0:
            self.seconds = min(self.seconds, max(CHEAP_EVALS * validation_seconds,
                                                 tcfg.time_budget / MAX_EVALS))
        self.next_time = elapsed + (self.seconds or math.inf)

    def due(self, progress):
        if self.seconds:
            return progress.elapsed >= self.next_time
        return progress.step % self.every == 0

    def done(self, progress):
        self.next_time = progress.elapsed + (self.seconds or math.inf)


def eval_schedule(trainer):
    """The run's EvalSchedule; with a time budget, the stopping rule told what a validation
    will take (the longest so far, or an estimate)."""
    p, one_validation = trainer.progress, 0.0
    if trainer.tcfg.time_budget:
        one_validation = p.validation_seconds or time_validation(trainer.validation_loss,
                                                                 trainer.val_ids)
        trainer.stopping.estimated(p.validation_seconds or 1.5 * one_validation + 0.5)
    return EvalSchedule(trainer.tcfg, trainer.total_steps, p.elapsed, one_validation)


def time_validation(validation_loss, val_ids):
    """Seconds a validation should take: a short slice timed and scaled up. The stopping rule
    reserves 1.5 times this and half a second for the final pass."""
    if len(val_ids) < 2:
        return 0.0
    probe = val_ids[:min(len(val_ids), 2048)]
    started = time.perf_counter()
    validation_loss(probe)
    return (time.perf_counter() - started) * len(val_ids) / len(probe)
