"""How far a training run has got: the checkpoint's progress section, one field per entry.

The fields of Progress are the section: the trainer updates them, the checkpoint stores
`to_dict()` as JSON and a resume reads `from_dict()` back, which checks every field it finds
(type and range) and leaves missing ones at their defaults, so that checkpoints written before
a field existed still load.
"""

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from charlm.errors import CheckpointError

_COUNT = (int, 0, 1 << 62, False)
_SECONDS = ((int, float), 0.0, 1e12, False)
_LOSS = ((int, float), -1e30, 1e30, True)            # the last entry: None allowed
_SPENT = ((int, float), 0.0, 1e12, True)
_SCALE = ((int, float), 1e-300, 1.0, False)


def _checked(check):
    return field(default=None if check[3] else 0, metadata={"check": check})


@dataclass
class Progress:
    step: int = _checked(_COUNT)                  # training steps taken
    epoch: int = _checked(_COUNT)                 # whole passes over the training split
    window: int = _checked(_COUNT)                # the next window within the pass
    elapsed: float = field(default=0.0, metadata={"check": _SECONDS})   # seconds, probes too
    best_val: float | None = _checked(_LOSS)      # nats/char, None before a validation
    last_val: float | None = _checked(_LOSS)
    skipped: int = _checked(_COUNT)               # batches skipped after a rollback
    rollbacks: int = _checked(_COUNT)             # returns to the last good state (divergence)
    lr_scale: float = field(default=1.0, metadata={"check": _SCALE})   # halved at each rollback
    skip_at: list = field(default_factory=list)   # steps whose batch is skipped (they diverged)
    evals_since_best: int = _checked(_COUNT)      # for --patience
    optimizer_step: int = _checked(_COUNT)        # the optimizer's update count (bias correction)
    initial_loss: float | None = _checked(_LOSS)  # for the explosion rule
    smoothed_loss: float | None = _checked(_LOSS)
    budget_spent: float | None = _checked(_SPENT)  # the time budget a finished run spent
    validation_seconds: float = field(default=0.0, metadata={"check": _SECONDS})  # the longest
    rng: dict | None = None                       # the training generator's state (PCG64)

    def record_validation(self, val):
        """Note a validation loss (None: no validation split); True if it is the best yet."""
        self.last_val = val
        improved = val is not None and (self.best_val is None or val < self.best_val)
        if improved:
            self.best_val, self.evals_since_best = val, 0
        elif val is not None:
            self.evals_since_best += 1
        return improved

    def to_dict(self):
        """The section as JSON-ready values; no rng entry until a generator is recorded."""
        section = asdict(self)
        if section["rng"] is None:
            del section["rng"]
        return section

    @classmethod
    def from_dict(cls, section):
        """A Progress from a checkpoint's section, each field checked; CheckpointError naming
        the first bad one."""
        if not isinstance(section, dict):
            raise CheckpointError("config is missing 'progress'")
        values = {}
        for f in fields(cls):
            if f.name not in section:
                continue
            value = section[f.name]
            if f.name == "rng":
                _check_rng(value)
            elif f.name == "skip_at":
                _check_steps(value)
            elif not (value is None and f.metadata["check"][3]):
                check_field(section, f.name, *f.metadata["check"][:3])
            values[f.name] = value
        return cls(**values)


def check_field(section, key, kind, lo=None, hi=None, choices=None):
    """A config field with its type and range checked; raises CheckpointError naming it."""
    if not isinstance(section, dict) or key not in section:
        raise CheckpointError(f"config is missing {key!r}")
    value = section[key]
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if ok and choices is not None:
        ok = value in choices
    if ok and lo is not None:
        ok = lo <= value <= hi
    if not ok:
        raise CheckpointError(f"config field {key!r} has an invalid value {str(value)[:40]!r}")
    return value


def _check_steps(steps):
    if not (isinstance(steps, list) and len(steps) <= 1000 and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s < 1 << 62 for s in steps)):
        raise CheckpointError("config field 'skip_at' has an invalid value")


def _check_rng(state):
    try:
        np.random.PCG64().state = state
    except (TypeError, ValueError, KeyError, OverflowError):
        raise CheckpointError("config field 'rng' has an invalid value") from None
