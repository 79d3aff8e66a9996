"""Choices and checks shared by the commands' options. No numpy: `charlm --help` stays fast.

Every list of names comes from charlm.names, every default of `charlm train` from
charlm.train.config.TrainConfig.
"""

import math
from enum import Enum

import typer

from charlm import names
from charlm.train.config import DEFAULTS


def _choices(name, values):
    return Enum(name, {v: v for v in values}, type=str)


Cell = _choices("Cell", names.MODEL_KINDS)
Activation = _choices("Activation", names.ACTIVATIONS)
Softmax = _choices("Softmax", names.SOFTMAXES)
OptimizerName = _choices("OptimizerName", names.OPTIMIZERS)
Schedule = _choices("Schedule", names.SCHEDULES)
Unknown = _choices("Unknown", ("error", "skip"))
EncodingErrors = _choices("EncodingErrors", ("strict", "replace"))
CorpusName = _choices("CorpusName", ("shakespeare", "tinyshakespeare"))
SynthKind = _choices("SynthKind", ("markov", "copy"))
Split = _choices("Split", ("train", "val", "all"))


def default(name):
    """TrainConfig's default for a setting, as --help shows it."""
    value = getattr(DEFAULTS, name)
    return f"{value:g}" if isinstance(value, float) else str(value)


def finite(value):
    """click's FloatRange lets nan and inf through; refuse them explicitly."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, not {value}")
    return value


def positive(value):
    finite(value)
    if value is not None and value <= 0:
        raise typer.BadParameter(f"must be greater than 0, not {value}")
    return value


def non_negative(value):
    finite(value)
    if value is not None and value < 0:
        raise typer.BadParameter(f"must be 0 or more, not {value}")
    return value


def fraction(value):
    finite(value)
    if value is not None and not 0 <= value < 1:
        raise typer.BadParameter(f"must be at least 0 and below 1, not {value}")
    return value


def top_p(value):
    finite(value)
    if not 0 < value <= 1:
        raise typer.BadParameter(f"must be above 0 and at most 1, not {value}")
    return value


def mix_weights(value):
    """--mix-weights "0.7,0.3" -> [0.7, 0.3] (checked against the models by charlm.lm.mixture)."""
    if value is None:
        return None
    try:
        weights = [float(part) for part in value.split(",")]
    except ValueError:
        raise typer.BadParameter(f"must be numbers separated by commas, like 0.7,0.3, "
                                 f"not {value!r}") from None
    for w in weights:
        non_negative(w)
    return weights
