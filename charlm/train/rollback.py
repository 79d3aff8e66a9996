"""Rolling back to the last good state of a run, kept in memory, when training diverges.

Taken at the start and after every finite validation: the weights, the optimizer's moments
and update count, the carried state, the generator and the progress (position, step, best
loss, the explosion rule's running loss). Restoring it puts the run back exactly where it
was then, except for what must go on counting: the time spent, the rollbacks, the halved
learning rate and the batches to skip. Nothing is re-read from disk: last.npz may hold an
interrupted run's later state.
"""

import bisect
import copy

from charlm.train.rundir import append_metrics

# Progress fields that a rollback keeps from the present instead of the snapshot
KEPT = ("elapsed", "budget_spent", "validation_seconds", "rollbacks", "lr_scale", "skip_at")


class Snapshot:
    def __init__(self, trainer):
        """The trainer's state now. The batches to skip before it are behind for good."""
        trainer.progress.skip_at = [s for s in trainer.progress.skip_at
                                    if s > trainer.progress.step]
        self.flat = trainer.flat.copy()
        self.moments = {name: buf.copy() for name, buf in trainer.opt.moments.items()}
        self.step_count = trainer.opt.step_count
        self.state = [tuple(part.copy() for part in layer) for layer in trainer.state]
        self.rng = copy.deepcopy(trainer.rng.bit_generator.state)
        self.progress = copy.deepcopy(trainer.progress)

    def restore(self, trainer):
        """Put trainer back to this state, in place (the parameter views stay valid)."""
        trainer.flat[...] = self.flat
        for name, buf in trainer.opt.moments.items():
            buf[...] = self.moments[name]
        trainer.opt.step_count = self.step_count
        trainer.state = [tuple(part.copy() for part in layer) for layer in self.state]
        trainer.rng.bit_generator.state = copy.deepcopy(self.rng)
        progress = copy.deepcopy(self.progress)
        for name in KEPT:
            setattr(progress, name, getattr(trainer.progress, name))
        trainer.progress = progress


def roll_back(trainer, divergence):
    """Back to the last good state with half the learning rate, the batch that diverged to
    be skipped; a DivergedError once --max-rollbacks are spent. Returns the event."""
    p = trainer.progress
    if p.rollbacks >= trainer.tcfg.max_rollbacks:
        raise trainer.guard.final(divergence, p)
    at_step = p.step + (divergence.step is not None)
    p.rollbacks += 1
    p.lr_scale /= 2
    if divergence.step is not None and divergence.step not in p.skip_at:
        bisect.insort(p.skip_at, divergence.step)
    trainer.snapshot.restore(trainer)
    record = {"event": "rollback", "step": at_step, "to_step": trainer.progress.step,
              "reason": divergence.message, "lr": trainer.tcfg.lr * p.lr_scale,
              "skip_step": divergence.step, "rollbacks": p.rollbacks,
              "elapsed": round(p.elapsed, 3)}
    append_metrics(trainer.out, record)
    return record
