"""A short sample of what the model writes now, shown at validations so a user watches it learn.

Drawn with the same seed every time (--seed), from the same start as `charlm sample` without a
prime, so that one line differs from the last only by what the model learnt in between.
"""

import numpy as np

from charlm.lm.sampling import generate
from charlm.nn.inference import Stepper

SAMPLE_CHARS = 80           # one line on a terminal


def sample_text(params, mcfg, vocab, seed, reset_ids=(), length=SAMPLE_CHARS):
    """length characters drawn at temperature 1 from the zero state after a newline (else a
    space, else the first character), the state restarting after each reset_ids (--reset-at)
    as in `charlm sample`; "" when the model produces non-finite probabilities."""
    start = next((c for c in ("\n", " ") if vocab.index(c) is not None), vocab.char(0))
    rng = np.random.default_rng(seed)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            ids = [i for i, _ in generate(Stepper(params, mcfg, reset_ids), [vocab.index(start)],
                                          length, rng)]
    except FloatingPointError:
        return ""
    return "".join(vocab.char(i) for i in ids)


def sample_at_validation(trainer):
    """A sample at every --sample-every'th validation of this process, else None (always for
    the bidirectional model, which cannot write left to right)."""
    trainer.validations += 1
    every = trainer.tcfg.sample_every
    if every and not trainer.mcfg.bidirectional and (trainer.validations - 1) % every == 0:
        return sample_text(trainer.params, trainer.mcfg, trainer.vocab, trainer.tcfg.seed,
                           trainer.reset_ids)
    return None
